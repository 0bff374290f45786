"""The Knock-out view's computations: the mask with parts of the model switched off, what changed,
and how much each head matters for this photo.

Every mask here is flip-averaged, as in the Segment tab, and compared at the model's input size
(S×S, where the model predicts), so "share of pixels" means a share of those S² pixels.
"""

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from vitviz.model.knockout import KnockOut
from vitviz.model.vit import SegmentationViT
from vitviz.training.data import IGNORE
from vitviz.training.metrics import confusion, summarize
from vitviz.training.predict import flip_averaged
from vitviz.views.pictures import VIRIDIS, colourise, font
from vitviz.views.segment import class_names

CHANGED = (204, 121, 167)  # Okabe–Ito reddish purple: the pixels whose class changed


@torch.no_grad()
def knocked_out_probs(model: SegmentationViT, image: torch.Tensor, knockout: KnockOut) -> torch.Tensor:
    """(C, S, S) flip-averaged class probabilities of the (3, S, S) `image` with `knockout` applied."""
    batch = image[None]
    return flip_averaged(model, batch, model(batch, knockout=knockout).mask_logits, knockout)[0]


def changed_share(before: torch.Tensor, after: torch.Tensor) -> float:
    """Share of pixels whose class differs between two (S, S) masks."""
    return (before != after).float().mean().item()


def class_flows(before: torch.Tensor, after: torch.Tensor, num_classes: int) -> list[tuple[str, str, float]]:
    """(from class, to class, share of all pixels) for every change of class, largest first."""
    counts = confusion(after, before.long(), num_classes)  # rows: the class before, columns: after
    names = class_names(num_classes)
    flows = [(names[a], names[b], counts[a, b].item() / before.numel())
             for a in range(num_classes) for b in range(num_classes) if a != b and counts[a, b]]
    return sorted(flows, key=lambda flow: -flow[2])


def truth_at(truth: np.ndarray, size: int) -> torch.Tensor:
    """A trimap's (H, W) class indices (IGNORE where unknown) resampled to the model's S×S by
    nearest neighbour, as `evaluate` scores it."""
    t = torch.from_numpy(truth.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].long()


def pixel_accuracy(mask: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
    """Share of the labelled pixels of `truth` that `mask` gets right."""
    if not (truth != IGNORE).any():
        return float("nan")
    return summarize(confusion(mask, truth, num_classes))["pixel_accuracy"]


def head_importance(model: SegmentationViT, image: torch.Tensor, mask: torch.Tensor) -> Iterator[np.ndarray]:
    """For every head, the share of the (S, S) `mask` pixels that change class when that head alone
    is switched off: a (blocks, heads) array, yielded after each block (NaN where not measured yet),
    so a view can show the first blocks while the others run. Two forward passes per head."""
    cfg = model.cfg
    shares = np.full((cfg.depth, cfg.num_heads), np.nan)
    for block in range(cfg.depth):
        for head in range(cfg.num_heads):
            after = knocked_out_probs(model, image, KnockOut(heads={(block, head)})).argmax(0)
            shares[block, head] = changed_share(mask, after)
        yield shares.copy()


def changed_picture(photo: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The photo in faint grey with the pixels whose class changed in `CHANGED` (masks at photo size)."""
    grey = photo.astype(np.float32).mean(-1, keepdims=True)
    picture = np.repeat(155 + 0.35 * grey, 3, axis=-1)
    picture[before != after] = CHANGED
    return picture.astype(np.uint8)


# The head-importance chart: one cell per (block, head), blocks as rows, heads as columns, under a
# band of head numbers and beside a column of block numbers. A click on a cell switches that head.
CELL, MARGIN = 56, 28


def importance_chart(shares: np.ndarray, off: set[tuple[int, int]]) -> np.ndarray:
    """(blocks, heads) shares of changed pixels (NaN: not measured) → a picture: each cell
    coloured by its share (viridis, scaled to the largest), the share written in it, the heads in
    `off` crossed out. Blocks are labelled B1, B2…, heads H1, H2… (the picture font has Latin
    letters only, so the words are in the tab's texts)."""
    blocks, heads = shares.shape
    left = MARGIN * 2
    canvas = Image.new("RGB", (left + heads * CELL + 1, MARGIN + blocks * CELL + 1), "white")
    draw = ImageDraw.Draw(canvas)
    small, value_font = font(12), font(15)
    top = np.nanmax(shares) if np.isfinite(shares).any() else 0.0
    colours = colourise(np.nan_to_num(shares / top if top > 0 else shares * 0), VIRIDIS)
    for h in range(heads):
        draw.text((left + h * CELL + CELL // 2, MARGIN // 2), f"H{h + 1}", fill="black", font=small, anchor="mm")
    for b in range(blocks):
        y = MARGIN + b * CELL
        draw.text((left - 6, y + CELL // 2), f"B{b + 1}", fill="black", font=small, anchor="rm")
        for h in range(heads):
            x = left + h * CELL
            box = (x, y, x + CELL, y + CELL)
            if np.isnan(shares[b, h]):
                draw.rectangle(box, fill=(235, 235, 235), outline="white")
                continue
            colour = tuple(int(c) for c in colours[b, h])
            draw.rectangle(box, fill=colour, outline="white")
            ink = "black" if sum(colour) > 380 else "white"
            draw.text((x + CELL // 2, y + CELL // 2), f"{100 * shares[b, h]:.1f}%", fill=ink, font=value_font,
                      anchor="mm")
    for b, h in off:
        if b < blocks and h < heads:
            x, y = left + h * CELL, MARGIN + b * CELL
            draw.rectangle((x + 2, y + 2, x + CELL - 2, y + CELL - 2), outline=CHANGED, width=4)
            draw.line((x + 4, y + 4, x + CELL - 4, y + CELL - 4), fill=CHANGED, width=3)
    return np.asarray(canvas)


def chart_cell(x: float, y: float, shape: tuple[int, int]) -> tuple[int, int] | None:
    """The (block, head) under a click at (x, y) on an `importance_chart` of `shape` (blocks,
    heads), or None for a click on its labels."""
    col, row = (x - MARGIN * 2) // CELL, (y - MARGIN) // CELL
    if 0 <= row < shape[0] and 0 <= col < shape[1]:
        return int(row), int(col)
    return None
