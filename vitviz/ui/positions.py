"""Position-embeddings tab: learned vs 1D vs 2D sinusoidal, side by side (brief §4, §5.3).

The learned table comes from the loaded checkpoint (at the chosen epoch, through the model cache);
the sinusoidal tables are computed for the same patch grid and width. Clicking a patch, on the
photo or on any similarity map, shows how similar its embedding is to every other patch's.
"""

import gradio as gr
import numpy as np

from vitviz.attention_maps import click_to_patch, fit_photo, fit_size, photo_with_patch, tile
from vitviz.inference import Analysis
from vitviz.position_views import (KIND_NAMES, SHOWN_KINDS, EmbeddingTables, accuracy_markdown, all_similarities_image,
                                   cosine_similarity_maps, dimension_image, embedding_tables, map_cell, matrix_image,
                                   similarity_image)
from vitviz.ui.attention import LATEX, NO_PHOTO, figure, load_analysis, patch_in_grid
from vitviz.ui.common import AnalysisKey, Context, Refresh

PHOTO_SIDE = 384  # the clickable photo is shown at most this large
HEADINGS = {"learned": "### Learned (this checkpoint)", "sin1d": "### 1D sinusoidal", "sin2d": "### 2D sinusoidal"}

INTRO = """\
Attention by itself does not know where a patch was: shuffle the patches and every token gets the
same answers. A position embedding $E_{pos}$, one D-vector per patch, is added to the patch
embeddings so that the model can tell an eye above a nose from one below it. Here are the three
kinds for this model's patch grid and width: the one the checkpoint learned (if it has one) and
the two fixed sinusoidal formulas."""

FORMULAS = r"""
**1D sinusoidal**, $x$ = patch index (row by row), $i = 0 \dots D/2 - 1$:
$$PE(x, 2i) = \sin\!\left(\frac{x}{10000^{2i/D}}\right), \qquad PE(x, 2i+1) = \cos\!\left(\frac{x}{10000^{2i/D}}\right)$$
**2D sinusoidal**, $(x, y)$ = patch column and row, $i, j = 0 \dots D/4 - 1$:
$$PE(x, y, 2i) = \sin\!\left(\frac{x}{10000^{4i/D}}\right), \qquad PE(x, y, 2i+1) = \cos\!\left(\frac{x}{10000^{4i/D}}\right)$$
$$PE(x, y, 2j + D/2) = \sin\!\left(\frac{y}{10000^{4j/D}}\right), \qquad PE(x, y, 2j + 1 + D/2) = \cos\!\left(\frac{y}{10000^{4j/D}}\right)$$
**Learned**: $E_{pos} \in \mathbb{R}^{N \times D}$ is a parameter trained with the rest of the model.
**Cosine similarity** of patches $a$ and $b$:
$$\mathrm{sim}(a, b) = \frac{E_a \cdot E_b}{\lVert E_a \rVert\, \lVert E_b \rVert}$$"""

SIMILARITY_TEXT = """\
**Similarity to the clicked patch** (the ViT paper's Figure 7, centre): each square is a patch,
coloured by the cosine similarity of its embedding to the outlined patch's (dark purple: least,
yellow: most similar). A good position embedding is most similar to itself and its neighbours;
the 1D table only knows the reading order, so a patch looks like its left and right neighbours
but not like the one above it. Click a patch on the photo or on any of the three maps below."""

ALL_MAPS_TEXT = """\
**All similarity maps at once:** the small map at row r, column c is the similarity map of the
patch at row r, column c. A learned table that has picked up the 2D layout shows each small map
lighting up around its own position, as in the ViT paper."""

DIMENSION_TEXT = """\
**One dimension at a time** (the slides' intensity maps): dimension d of every patch's embedding
laid over the grid (blue < 0 < red, scaled by the table's largest value). Sinusoidal dimensions are
waves whose wavelength grows with d; in the 2D table the first D/2 dimensions vary along the
columns and the last D/2 along the rows."""

MATRIX_TEXT = """\
**The whole table** as an N × D matrix: one row per patch (top: patch 0), one column per
dimension (left: dimension 0), blue < 0 < red. The sinusoidal tables show their fast waves on
the left and slow ones on the right."""

ACCURACY_TEXT = """\
**Does the kind matter?** Test pixel accuracy and mIoU of models that differ only in their
position embedding, read from each checkpoint's metrics.json. The ViT authors found learned and
sinusoidal embeddings about equal, and no embedding clearly worse."""


def build(ctx: Context) -> Refresh:
    if ctx.analysis is None:
        raise ValueError("create the shell's analysis gr.State before building the position-embeddings tab")
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    model_note = gr.Markdown()
    with gr.Accordion("The formulas", open=True):
        gr.Markdown(FORMULAS, latex_delimiters=LATEX)
    patch = gr.State(None)  # the clicked patch index, row-major
    with gr.Row():
        with gr.Column(scale=1):
            photo = figure("Photo — click a patch")
        with gr.Column(scale=2):
            gr.Markdown(SIMILARITY_TEXT)
            status = gr.Markdown(NO_PHOTO)
            colour_range = gr.Radio([("each map's own min … max (shows the shape)", "stretch"),
                                     ("−1 … +1 (comparable between kinds)", "fixed")],
                                    value="stretch", label="Similarity colour range")
    notes, similarity, all_maps, dimension, matrix = {}, {}, {}, {}, {}
    with gr.Row():
        for kind in SHOWN_KINDS:
            with gr.Column():
                gr.Markdown(HEADINGS[kind])
                notes[kind] = gr.Markdown()
                similarity[kind] = figure(f"{KIND_NAMES[kind]}: similarity to the clicked patch")
    gr.Markdown(ALL_MAPS_TEXT)
    with gr.Row():
        for kind in SHOWN_KINDS:
            all_maps[kind] = figure(f"{KIND_NAMES[kind]}: every patch's similarity map")
    gr.Markdown(DIMENSION_TEXT)
    dim = gr.Slider(0, 1, value=0, step=1, label="Embedding dimension d")
    with gr.Row():
        for kind in SHOWN_KINDS:
            dimension[kind] = figure(f"{KIND_NAMES[kind]}: dimension d over the grid")
    gr.Markdown(MATRIX_TEXT)
    with gr.Row():
        for kind in SHOWN_KINDS:
            matrix[kind] = figure(f"{KIND_NAMES[kind]}: the N × D table")
    gr.Markdown(ACCURACY_TEXT)
    accuracy = gr.Markdown(accuracy_markdown())

    click_outputs = [patch, photo, status, *similarity.values()]
    all_outputs = list(all_maps.values())
    dim_outputs = list(dimension.values())

    def click_handler(shown_size):
        """A select handler for an image whose displayed (height, width) is `shown_size(analysis)`."""
        def on_click(key: AnalysisKey | None, colour_range_: str, evt: gr.SelectData):
            loaded = _load(ctx, key)
            if loaded is None or evt.index is None:
                return [gr.skip()] * len(click_outputs)
            analysis, tables = loaded
            height, width = shown_size(analysis)
            try:
                clicked = click_to_patch(evt.index[0], evt.index[1], width, height, analysis.grid)
            except ValueError as e:
                gr.Warning(str(e))
                return [gr.skip()] * len(click_outputs)
            return patch_views(analysis, tables, clicked, colour_range_)
        return on_click

    def on_colour_range(key: AnalysisKey | None, patch_: int | None, colour_range_: str):
        loaded = _load(ctx, key, warn=False)
        if loaded is None:
            return [gr.skip()] * (len(click_outputs) + len(all_outputs))
        analysis, tables = loaded
        return [*patch_views(analysis, tables, patch_in_grid(patch_, tables.grid), colour_range_),
                *all_maps_views(tables, colour_range_)]

    def on_dimension(key: AnalysisKey | None, d: int):
        loaded = _load(ctx, key, warn=False)
        if loaded is None:
            return [gr.skip()] * len(dim_outputs)
        return dimension_views(loaded[1], int(d))

    def refresh(key: AnalysisKey | None, patch_: int | None, colour_range_: str, d: int):
        loaded = _load(ctx, key, warn=False)
        if loaded is None:
            empty_columns = [None] * len(SHOWN_KINDS)
            return [None, None, NO_PHOTO, *empty_columns, "", *[""] * len(SHOWN_KINDS), *empty_columns,
                    gr.skip(), *empty_columns, *empty_columns, accuracy_markdown()]
        analysis, tables = loaded
        d = min(int(d), tables.dim - 1)
        return [*patch_views(analysis, tables, patch_in_grid(patch_, tables.grid), colour_range_),
                tables.model_note(), *[_column_note(tables, kind) for kind in SHOWN_KINDS],
                *all_maps_views(tables, colour_range_),
                gr.Slider(minimum=0, maximum=tables.dim - 1, value=d), *dimension_views(tables, d),
                *matrix_views(tables),
                accuracy_markdown()]

    photo.select(click_handler(lambda a: fit_size(*a.photo.shape[:2], PHOTO_SIDE)), [ctx.analysis, colour_range],
                 click_outputs)
    for kind in SHOWN_KINDS:
        similarity[kind].select(click_handler(lambda a: _map_size(a.grid)), [ctx.analysis, colour_range],
                                click_outputs)
    colour_range.change(on_colour_range, [ctx.analysis, patch, colour_range], [*click_outputs, *all_outputs])
    dim.change(on_dimension, [ctx.analysis, dim], dim_outputs)
    return Refresh(refresh, [patch, colour_range, dim],
                   [*click_outputs, model_note, *notes.values(), *all_outputs, dim, *dim_outputs,
                    *matrix.values(), accuracy])


def patch_views(analysis: Analysis, tables: EmbeddingTables, patch: int, colour_range: str) -> list:
    """The tab's click outputs: the patch, the photo with it outlined, a caption, and one
    similarity map per kind (None for a kind without a table)."""
    grid = tables.grid
    rows, cols = grid
    row, col = divmod(patch, cols)
    photo = photo_with_patch(fit_photo(analysis.photo, PHOTO_SIDE), grid, patch)
    status = f"Patch **{patch}**: row {row + 1}, column {col + 1} of the {rows}×{cols} grid; embedding width D = {tables.dim}."
    maps = [similarity_image(cosine_similarity_maps(tables.tables[kind], grid), patch, grid, colour_range)
            if kind in tables.tables else None for kind in SHOWN_KINDS]
    return [patch, photo, status, *maps]


def all_maps_views(tables: EmbeddingTables, colour_range: str) -> list:
    """Every patch's similarity map, one captioned sheet per kind (None for a kind without a table)."""
    return [_captioned(all_similarities_image(cosine_similarity_maps(tables.tables[kind], tables.grid), tables.grid,
                                              colour_range), f"{KIND_NAMES[kind]}: every patch's map")
            if kind in tables.tables else None for kind in SHOWN_KINDS]


def dimension_views(tables: EmbeddingTables, d: int) -> list:
    """Dimension d of each kind's table over the grid (None for a kind without a table)."""
    return [_captioned(dimension_image(tables.tables[kind], tables.grid, d), f"{KIND_NAMES[kind]}: dimension {d}")
            if kind in tables.tables else None for kind in SHOWN_KINDS]


def matrix_views(tables: EmbeddingTables) -> list:
    """Each kind's whole (N, D) table as a heat map (None for a kind without a table)."""
    return [_captioned(matrix_image(tables.tables[kind]), f"{KIND_NAMES[kind]}: {tables.grid[0] * tables.grid[1]}"
                       f" × {tables.dim} table") if kind in tables.tables else None for kind in SHOWN_KINDS]


def _captioned(image: np.ndarray, caption: str) -> np.ndarray:
    """The picture with its caption drawn above it, so that a downloaded PNG says what it shows."""
    return tile([image], [caption], columns=1)


def _column_note(tables: EmbeddingTables, kind: str) -> str:
    if kind not in tables.tables:
        return f"Not shown: {tables.missing[kind]}."
    source = "from the checkpoint" if kind == "learned" else "computed from the formula"
    used = " — **the one this model uses**" if kind == tables.model_kind else ""
    n, d = tables.tables[kind].shape
    return f"{n} × {d} table, {source}{used}."


def _map_size(grid: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a similarity map as `similarity_image` draws it."""
    cell = map_cell(grid)
    return grid[0] * cell, grid[1] * cell


def _load(ctx: Context, key: AnalysisKey | None, warn: bool = True) -> tuple[Analysis, EmbeddingTables] | None:
    """The cached analysis and the embedding tables of its model, or None when there is no photo."""
    analysis = load_analysis(ctx, key, warn)
    if analysis is None:
        return None
    model = ctx.cache.model(key.checkpoint, key.epoch)  # already loaded for the analysis: a cache hit
    return analysis, embedding_tables(model, analysis.grid)
