"""Position embeddings side by side: the model's own table, 1D and 2D sinusoidal (brief §4).

For the loaded model's patch grid and width this module gives each kind's (N, D) table, the
ViT paper's Figure 7 (centre) — the cosine similarity of one patch's embedding to every patch —
one embedding dimension laid over the grid (the slides' intensity maps), and the whole N×D
matrix, all as uint8 RGB pictures. It also reads how accurate the models trained with each kind
turned out, from their checkpoints' metrics.json. No Gradio here.
"""

import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from vitviz.app.i18n import DEFAULT, text
from vitviz.model.posembed import KINDS
from vitviz.model.vit import SegmentationViT
from vitviz.views.pictures import COOLWARM, colourise, grid_map_image, outline_patch, signed_to_unit

SHOWN_KINDS = tuple(name for name, kind in KINDS.items() if kind.has_table)  # "none" has nothing to show

CHECKPOINTS_DIR = Path(__file__).resolve().parents[2] / "checkpoints"
# The runs that differ only in their position embedding (the learned one is the seed-small preset).
ACCURACY_RUNS = {"learned": "seed-small", "sin1d": "pos-sin1d", "sin2d": "pos-sin2d", "none": "pos-none"}

ColourRange = Literal["fixed", "stretch"]
SIMILARITY_SIDE = 256  # pixels: about the size of one kind's clickable similarity map


@dataclass
class EmbeddingTables:
    grid: tuple[int, int]
    dim: int
    model_kind: str  # the kind the model was built with: learned, sin1d, sin2d or none
    tables: dict[str, torch.Tensor]  # kind → (N, D); "learned" only when the model has one
    missing: dict[str, str] = field(default_factory=dict)  # kind → why there is no table
    _similarities: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def similarities(self, kind: str) -> torch.Tensor:
        """`cosine_similarity_maps` of the table of `kind`, kept: every click reads it."""
        if kind not in self._similarities:
            self._similarities[kind] = cosine_similarity_maps(self.tables[kind], self.grid)
        return self._similarities[kind]

    def model_note(self, lang: str = DEFAULT) -> str:
        """Which table the model itself adds to its patches, and what that table's similarities show
        (`table_structure`), in `lang`."""
        if self.model_kind == "none":
            return text("positions.model_uses_none", lang)
        uses = text("positions.model_uses", lang, kind=kind_name(self.model_kind, lang), code=self.model_kind)
        if self.model_kind not in self.tables:  # a width its formula cannot use: nothing was measured
            return uses
        kind, numbers = table_structure(self.similarities(self.model_kind), self.grid)
        return f"{uses} {text(f'positions.structure_{kind}', lang, **numbers)}"


def kind_name(kind: str, lang: str = DEFAULT) -> str:
    """The name of a kind of position embedding ("learned", "1D sinusoidal", …) in `lang`."""
    return text(f"positions.kind_{kind}", lang)


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → {grid: its EmbeddingTables}


def embedding_tables(model: SegmentationViT, grid: tuple[int, int]) -> EmbeddingTables:
    """The learned table from the model (when it learned one), and both sinusoidal tables computed
    for the same grid and width; kept for as long as the model is (every click reads them)."""
    per_grid = _TABLES.setdefault(model, {})
    if tuple(grid) not in per_grid:
        per_grid[tuple(grid)] = _compute_tables(model, grid)
    return per_grid[tuple(grid)]


def _compute_tables(model: SegmentationViT, grid: tuple[int, int]) -> EmbeddingTables:
    dim = model.cfg.embed_dim
    tables: dict[str, torch.Tensor] = {}
    missing: dict[str, str] = {}
    for name in SHOWN_KINDS:
        if KINDS[name].learned and model.pos_embed.kind != name:
            missing[name] = text("positions.no_learned", kind=kind_name(model.pos_embed.kind))
        elif KINDS[name].learned:
            with torch.no_grad():
                tables[name] = model.pos_embed.table(grid).detach().float().cpu()
        else:
            try:
                tables[name] = KINDS[name].formula(grid, dim)
            except ValueError as e:  # a width the formula cannot use (odd, or not divisible by 4)
                missing[name] = str(e)
    return EmbeddingTables(tuple(grid), dim, model.pos_embed.kind, tables, missing)


def cosine_similarity_maps(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, rows, cols): map i is the cosine similarity of patch i's embedding to every patch's."""
    rows, cols = grid
    if table.shape[0] != rows * cols:
        raise ValueError(f"table has {table.shape[0]} rows but the grid {rows}x{cols} has {rows * cols} patches")
    unit = F.normalize(table.double(), dim=1)
    return (unit @ unit.T).reshape(-1, rows, cols).float()


# What a table's cosine similarities are said to show: neighbours "alike" when they close this
# share of the gap between far patches' similarity and 1; a "ring" when the edge patches are this
# much more alike among themselves than to the inner patches.
NEIGHBOURS_AHEAD_BY = 0.2
RING_AHEAD_BY = 0.3


def table_structure(similarities: torch.Tensor, grid: tuple[int, int]) -> tuple[str, dict[str, float]]:
    """What the (N, rows, cols) cosine similarities of a table show: the kind of the text
    "positions.structure_<kind>" ("ring": edge patches alike among themselves, unlike the inner
    ones; "neighbours": neighbours clearly more alike than far patches; "flat": neither) and the
    numbers it quotes: the mean similarity to the 8 neighbours ("near"), to patches at least half
    the grid away ("far", "cells"), among edge patches ("edge") and between edge and inner ("across")."""
    rows, cols = grid
    sim = similarities.reshape(rows * cols, rows * cols)
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    r, c = r.flatten(), c.flatten()
    steps = torch.maximum((r[:, None] - r[None]).abs(), (c[:, None] - c[None]).abs())  # cells apart
    cells = max(2, min(rows, cols) // 2)
    edge = (r == 0) | (c == 0) | (r == rows - 1) | (c == cols - 1)
    others = ~torch.eye(rows * cols, dtype=torch.bool)
    numbers = dict(near=sim[steps == 1].mean().item(), far=sim[steps >= cells].mean().item(), cells=cells,
                   edge=sim[edge[:, None] & edge[None] & others].mean().item(),
                   across=sim[edge[:, None] & ~edge[None]].mean().item() if (~edge).any() else float("nan"))
    if numbers["edge"] - numbers["across"] > RING_AHEAD_BY:
        return "ring", numbers
    ahead = (numbers["near"] - numbers["far"]) / max(1e-6, 1 - numbers["far"])
    return ("neighbours" if ahead > NEIGHBOURS_AHEAD_BY else "flat"), numbers


def dimension_map(table: torch.Tensor, grid: tuple[int, int], d: int) -> torch.Tensor:
    """(rows, cols): embedding dimension `d` of every patch, laid over the patch grid."""
    if not 0 <= d < table.shape[1]:
        raise ValueError(f"dimension {d} does not exist: the table has dimensions 0 to {table.shape[1] - 1}")
    return table[:, d].reshape(grid)


# ───────────────────────────── pictures ─────────────────────────────


def map_cell(grid: tuple[int, int], side: int = SIMILARITY_SIDE) -> int:
    """Pixels per patch so that a grid map is about `side` pixels on its longer side."""
    return max(1, side // max(grid))


def similarity_colours(similarity: torch.Tensor, colour_range: ColourRange) -> np.ndarray:
    """(rows, cols) cosine similarities → RGB. "fixed": −1 … +1, comparable between kinds and patches;
    "stretch": the map's own min … max, which shows the shape of flat maps (sinusoidal tables
    have a high similarity everywhere, because their slow dimensions barely change)."""
    if colour_range == "fixed":
        return colourise(signed_to_unit(similarity, 1.0))
    if colour_range == "stretch":
        low, high = float(similarity.min()), float(similarity.max())
        return colourise((similarity - low) / max(high - low, 1e-12))
    raise ValueError(f"colour range must be 'fixed' or 'stretch', got {colour_range!r}")


def similarity_image(maps: torch.Tensor, patch: int, grid: tuple[int, int], colour_range: ColourRange) -> np.ndarray:
    """Patch `patch`'s similarity map with the patch outlined, rows·cell × cols·cell pixels where
    cell = `map_cell(grid)` (clicks on it are mapped with that size)."""
    colours = similarity_colours(maps[patch], colour_range)
    return outline_patch(grid_map_image(colours, map_cell(grid)), patch, grid, colour=(255, 255, 255))


def all_similarities_image(maps: torch.Tensor, grid: tuple[int, int], colour_range: ColourRange,
                           side: int = 512, gap: int = 2) -> np.ndarray:
    """Every patch's similarity map, placed at that patch's own position in the grid (Figure 7,
    centre), on a sheet of about `side` pixels."""
    rows, cols = grid
    cell = max(1, round((side / max(grid) - gap) / max(grid)))  # pixels per patch of one small map
    small = rows * cell, cols * cell
    sheet = np.full((rows * (small[0] + gap) + gap, cols * (small[1] + gap) + gap, 3), 255, dtype=np.uint8)
    for patch in range(rows * cols):
        row, col = divmod(patch, cols)
        y, x = gap + row * (small[0] + gap), gap + col * (small[1] + gap)
        sheet[y:y + small[0], x:x + small[1]] = grid_map_image(similarity_colours(maps[patch], colour_range), cell)
    return sheet


def dimension_image(table: torch.Tensor, grid: tuple[int, int], d: int) -> np.ndarray:
    """Dimension `d` over the grid, blue < 0 < red, scaled by the table's largest |value| so that
    moving along d shows the real change in size."""
    limit = float(table.abs().max())
    colours = colourise(signed_to_unit(dimension_map(table, grid, d), limit), COOLWARM)
    return grid_map_image(colours, map_cell(grid))


def matrix_image(table: torch.Tensor, width: int = 512, height: int = 256) -> np.ndarray:
    """The (N, D) table as a heat map: one row per patch, one column per dimension."""
    n, d = table.shape
    colours = colourise(signed_to_unit(table, float(table.abs().max())), COOLWARM)
    return np.repeat(np.repeat(colours, max(1, height // n), axis=0), max(1, width // d), axis=1)


# ───────────────────────────── accuracy per kind ─────────────────────────────


class FinalScores(NamedTuple):
    pixel_accuracy: float
    miou: float
    split: str  # the split the scores were measured on


def read_final_metrics(folder: Path) -> FinalScores | None:
    """The final weights' scores from a finished run's metrics.json: its "evaluation" (written by
    `python -m vitviz.evaluate --record`, mirror-averaged as the app predicts) when it has one, else
    its last epoch's one-pass scores; None when the run has not finished yet."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if "evaluation" in summary:
        scores = summary["evaluation"]
        return FinalScores(float(scores["pixel_accuracy"]), float(scores["miou"]), str(scores["split"]))
    final = summary["final"]
    return FinalScores(float(final["pixel_accuracy"]), float(final["miou"]), str(summary.get("final_split", "?")))


CLEARLY_WORSE_BY = 0.03  # pixel accuracy: a kind this far behind the best one is "clearly worse"


def accuracy_markdown(root: Path = CHECKPOINTS_DIR, lang: str = DEFAULT) -> str:
    """A Markdown table (in `lang`) of pixel accuracy and mIoU per position-embedding kind."""
    lines = [text("positions.accuracy_header", lang), "|---|---|---|---|---|"]
    measured = {}
    for kind, run in ACCURACY_RUNS.items():
        where = f"| {kind_name(kind, lang)} | `checkpoints/{run}` |"
        try:
            scores = read_final_metrics(root / run)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            lines.append(f"{where} {text('positions.metrics_unreadable', lang)} | | |")
            continue
        if scores is None:
            lines.append(f"{where} {text('positions.not_trained', lang)} | | |")
        else:
            lines.append(f"{where} {scores.pixel_accuracy:.2%} | {scores.miou:.3f} | {scores.split} |")
            measured[kind] = scores.pixel_accuracy
    return "\n".join(lines) + accuracy_verdict(measured, lang)


def accuracy_verdict(accuracy: dict[str, float], lang: str = DEFAULT) -> str:
    """A paragraph (in `lang`) on what the table's pixel accuracies (kind → accuracy) show: which
    kind, if any, is clearly worse than the best one. Empty with fewer than two kinds measured."""
    if len(accuracy) < 2:
        return ""
    best, worst = max(accuracy, key=accuracy.get), min(accuracy, key=accuracy.get)
    gap = accuracy[best] - accuracy[worst]
    if gap < CLEARLY_WORSE_BY:
        return "\n\n" + text("positions.verdict_even", lang, spread=gap)
    return "\n\n" + text("positions.verdict_worse", lang, worst=kind_name(worst, lang), worst_acc=accuracy[worst],
                             best=kind_name(best, lang), best_acc=accuracy[best], gap=gap)
