"""Position-embeddings tab: learned vs 1D vs 2D sinusoidal, side by side (brief §4, §5.3).

The learned table comes from the loaded checkpoint (at the chosen epoch, through the model cache);
the sinusoidal tables are computed for the same patch grid and width. Clicking a patch, on the
photo or on any similarity map, shows how similar its embedding is to every other patch's.
"""

from typing import Any, get_args

import gradio as gr
import numpy as np

from vitviz.app.downloads import save_pngs, shared_png
from vitviz.app.i18n import DEFAULT, text
from vitviz.app.inference import Analysis
from vitviz.model.posembed import KINDS
from vitviz.ui.context import AnalysisKey, Context, localized_choices
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import (HIDE_SAVED, LATEX, about, clicked_point, figure, load_analysis, one_of, patch_at,
                               saved_files, show_saved, whole_number)
from vitviz.views.pictures import CLICKABLE_SIDE, patch_centre, tile
from vitviz.views.positions import (SHOWN_KINDS, ColourRange, EmbeddingTables, accuracy_markdown,
                                    all_similarities_image, dimension_image, embedding_tables, kind_name, map_cell,
                                    matrix_image, similarity_image)

PHOTO_SIDE = 384  # the clickable photo is shown at most this large


def build(ctx: Context) -> list[Refresh]:
    if ctx.analysis is None:
        raise ValueError("create the shell's analysis gr.State before building the position-embeddings tab")
    about(ctx, "positions.intro", latex_delimiters=LATEX)
    with ctx.localized(gr.Accordion, {"label": "positions.formulas_label"}, open=False):
        ctx.localized(gr.Markdown, {"value": "positions.formulas"}, latex_delimiters=LATEX)

    def kind_figure(key: str, kind: str, **kwargs) -> gr.Image:
        """A picture of one kind of table, labelled by `key` with the kind's name."""
        return ctx.localized(figure, {"label": lambda lang: text(key, lang, kind=kind_name(kind, lang))}, **kwargs)

    notes, similarity, all_maps, dimension, matrix = {}, {}, {}, {}, {}
    with gr.Row():
        with gr.Column(scale=1, min_width=CLICKABLE_SIDE + 32):  # the photo at least 384 px on screen
            photo = ctx.localized(figure, {"label": "positions.photo"}, fast=True)
            # Sent as JPEG on every click, like the Attention tab's pictures; the PNG on demand.
            save = ctx.localized(gr.Button, {"value": "positions.save"}, size="sm", variant="secondary",
                                 elem_id="positions-save")
            saved = saved_files(ctx, elem_id="positions-png")
        with gr.Column(scale=2):  # the clicked patch's similarity maps beside the photo, what they mean underneath
            with gr.Row():
                for kind in SHOWN_KINDS:
                    with gr.Column(min_width=120):
                        ctx.localized(gr.Markdown, {"value": f"positions.heading_{kind}"})
                        similarity[kind] = kind_figure("positions.similarity_figure", kind,
                                                       elem_id=f"positions-similarity-{kind}")
                        notes[kind] = gr.Markdown()
            status = gr.Markdown(text("shell.no_photo"))
            model_note = gr.Markdown()  # what this model's own table shows, measured
            colour_range = ctx.localized(gr.Radio, {"label": "positions.colour_range", "choices": localized_choices(
                ("positions.stretch", "stretch"), ("positions.fixed", "fixed"))}, value="stretch")
            ctx.localized(gr.Markdown, {"value": "positions.similarity_text"})
    ctx.localized(gr.Markdown, {"value": "positions.all_maps_text"})
    with gr.Row():
        for kind in SHOWN_KINDS:
            all_maps[kind] = kind_figure("positions.all_maps_figure", kind)
    ctx.localized(gr.Markdown, {"value": "positions.dimension_text"})
    dim = ctx.localized(gr.Slider, {"label": "positions.dimension"}, minimum=0, maximum=1, value=0, step=1)
    with gr.Row():
        for kind in SHOWN_KINDS:
            dimension[kind] = kind_figure("positions.dimension_figure", kind)
    ctx.localized(gr.Markdown, {"value": "positions.matrix_text"})
    with gr.Row():
        for kind in SHOWN_KINDS:
            matrix[kind] = kind_figure("positions.matrix_figure", kind)
    ctx.localized(gr.Markdown, {"value": "positions.accuracy_text"})
    accuracy = gr.Markdown(accuracy_markdown())

    click_outputs = [photo, status, *similarity.values()]
    all_outputs = list(all_maps.values())
    dim_outputs = list(dimension.values())

    def shown_patch(views: dict[str, Any]) -> dict:
        return {photo: views["photo"], status: views["status"],
                **per_kind(similarity, views["similarity"])}

    def click_handler(clicked_on_photo: bool):
        """A select handler for the photo (its click is the selected point) or for a similarity map
        (a click picks a cell of the table's grid: the point becomes that patch's centre)."""
        def on_click(key: AnalysisKey | None, colour_range_: str, evt: gr.SelectData, lang: str = DEFAULT):
            loaded = _load(ctx, key, lang=lang)
            if loaded is None:
                return gr.skip()
            analysis, tables = loaded
            colour_range_ = checked_range(colour_range_, lang)
            if clicked_on_photo:
                point = clicked_point(evt.index, analysis.clickable_size(PHOTO_SIDE), lang)
            else:
                cell = clicked_point(evt.index, _map_size(analysis.grid), lang)
                point = None if cell is None else patch_centre(patch_at(cell, tables.grid), tables.grid)
            if point is None:
                return gr.skip()
            patch = patch_at(point, tables.grid)
            return {ctx.point: point, **shown_patch(patch_views(analysis, tables, patch, colour_range_, lang))}
        return on_click

    def on_colour_range(key: AnalysisKey | None, point: Any, colour_range_: str, lang: str = DEFAULT):
        loaded = _load(ctx, key, warn=False, lang=lang)
        if loaded is None:
            return gr.skip()
        analysis, tables = loaded
        colour_range_ = checked_range(colour_range_, lang)
        return {**shown_patch(patch_views(analysis, tables, patch_at(point, tables.grid), colour_range_, lang)),
                **per_kind(all_maps, all_maps_views(tables, colour_range_))}

    def on_dimension(key: AnalysisKey | None, d: int, lang: str = DEFAULT):
        loaded = _load(ctx, key, warn=False, lang=lang)
        if loaded is None:
            return gr.skip()
        return per_kind(dimension, dimension_views(loaded[1], checked_dimension(d, loaded[1], lang)))

    def on_save(key: AnalysisKey | None, point: Any, lang: str = DEFAULT):
        """The photo with the clicked patch outlined, as on screen, written as a PNG file."""
        loaded = _load(ctx, key, lang=lang)
        if loaded is None:
            return gr.skip()
        analysis, tables = loaded
        clicked = patch_at(point, tables.grid)
        return show_saved(save_pngs({f"positions-patch{clicked}-photo": analysis.click_target(PHOTO_SIDE, clicked)}))

    def refresh(key: AnalysisKey | None, point: Any, colour_range_: str, lang: str = DEFAULT):
        """The views of the photo: it, with the clicked patch, and each kind's similarity map."""
        loaded = _load(ctx, key, warn=False, lang=lang)
        if loaded is None:
            return {**{output: None for output in click_outputs}, status: text("shell.no_photo", lang),
                    saved: HIDE_SAVED}
        analysis, tables = loaded
        colour_range_ = checked_range(colour_range_, lang)
        return {**shown_patch(patch_views(analysis, tables, patch_at(point, tables.grid), colour_range_, lang)),
                saved: HIDE_SAVED}  # PNG files saved for the previous photo

    def refresh_tables(key: AnalysisKey | None, colour_range_: str, d: int, lang: str = DEFAULT):
        """The views of the model alone (every patch's map, one dimension, the whole tables)."""
        loaded = _load(ctx, key, warn=False, lang=lang)
        if loaded is None:
            return {model_note: "", **{note: "" for note in notes.values()},
                    **{picture: None for picture in [*all_outputs, *dim_outputs, *matrix.values()]},
                    accuracy: accuracy_markdown(lang=lang)}
        tables = loaded[1]
        d = checked_dimension(d, tables, lang)
        return {model_note: tables.model_note(lang),
                **per_kind(notes, {kind: _column_note(tables, kind, lang) for kind in SHOWN_KINDS}),
                **per_kind(all_maps, all_maps_views(tables, checked_range(colour_range_, lang))),
                dim: gr.update(minimum=0, maximum=tables.dim - 1, value=d),
                **per_kind(dimension, dimension_views(tables, d)), **per_kind(matrix, matrix_views(tables)),
                accuracy: accuracy_markdown(lang=lang)}

    photo.select(click_handler(clicked_on_photo=True), [ctx.analysis, colour_range, ctx.language],
                 [ctx.point, *click_outputs])
    for kind in SHOWN_KINDS:
        similarity[kind].select(click_handler(clicked_on_photo=False), [ctx.analysis, colour_range, ctx.language],
                                [ctx.point, *click_outputs])
    colour_range.change(on_colour_range, [ctx.analysis, ctx.point, colour_range, ctx.language],
                        [*click_outputs, *all_outputs])
    dim.change(on_dimension, [ctx.analysis, dim, ctx.language], dim_outputs)
    save.click(on_save, [ctx.analysis, ctx.point, ctx.language], saved)
    table_outputs = [model_note, *notes.values(), *all_outputs, dim, *dim_outputs, *matrix.values(), accuracy]
    return [Refresh(refresh, [ctx.point, colour_range, ctx.language], [*click_outputs, saved]),
            # The same for every photo of a model: a new photo leaves them as they are.
            Refresh(refresh_tables, [colour_range, dim, ctx.language], table_outputs,
                    depends_on=lambda key: key and (key.checkpoint, key.epoch))]


def checked_range(colour_range: Any, lang: str = DEFAULT) -> ColourRange:
    """The colour range as the browser sent it, if it is one (else a one-line gr.Error)."""
    return one_of(colour_range, get_args(ColourRange), text("positions.colour_range", lang), lang)


def checked_dimension(d: Any, tables: EmbeddingTables, lang: str = DEFAULT) -> int:
    """The dimension slider's value, rounded and clamped to the tables' width: the slider may still
    hold a dimension of a wider model (a non-number gets a one-line gr.Error)."""
    return whole_number(d, 0, tables.dim - 1, text("positions.dimension", lang), lang)


def per_kind(components: dict[str, Any], values: dict[str, Any]) -> dict:
    """{component: value} for one row of per-kind components ({kind: component}) and their values."""
    return {components[kind]: value for kind, value in values.items()}


def patch_views(analysis: Analysis, tables: EmbeddingTables, patch: int, colour_range: str,
                lang: str = DEFAULT) -> dict[str, Any]:
    """What the tab's click outputs show: the photo with the patch outlined, a caption in
    `lang`, and the similarity map of each kind ({kind: file}, None for a kind without a table)."""
    grid = tables.grid
    rows, cols = grid
    row, col = divmod(patch, cols)
    photo = analysis.click_target(PHOTO_SIDE, patch)
    status = text("positions.status", lang, patch=patch, row=row + 1, col=col + 1, rows=rows, cols=cols, dim=tables.dim)
    maps = {kind: _file(f"positions-{kind}-similarity-patch{patch}",
                        similarity_image(tables.similarities(kind), patch, grid, colour_range))
            if kind in tables.tables else None for kind in SHOWN_KINDS}
    return dict(photo=photo, status=status, similarity=maps)


def all_maps_views(tables: EmbeddingTables, colour_range: str) -> dict[str, str | None]:
    """Every patch's similarity map, one captioned sheet per kind (None for a kind without a table)."""
    return {kind: _captioned(f"positions-{kind}-every-map", f"pos_embed={kind}: {tables.grid[0]}x{tables.grid[1]} maps",
                             all_similarities_image(tables.similarities(kind), tables.grid, colour_range))
            if kind in tables.tables else None for kind in SHOWN_KINDS}


def dimension_views(tables: EmbeddingTables, d: int) -> dict[str, str | None]:
    """Dimension d of each kind's table over the grid (None for a kind without a table)."""
    return {kind: _captioned(f"positions-{kind}-dimension{d}", f"pos_embed={kind}: d={d}",
                             dimension_image(tables.tables[kind], tables.grid, d))
            if kind in tables.tables else None for kind in SHOWN_KINDS}


def matrix_views(tables: EmbeddingTables) -> dict[str, str | None]:
    """Each kind's whole (N, D) table as a heat map (None for a kind without a table)."""
    return {kind: _captioned(f"positions-{kind}-table", f"pos_embed={kind}: "
                             f"{tables.grid[0] * tables.grid[1]}x{tables.dim}", matrix_image(tables.tables[kind]))
            if kind in tables.tables else None for kind in SHOWN_KINDS}


def _captioned(name: str, caption: str, image: np.ndarray) -> str:
    """`_file` of the picture with its caption drawn above it, so that a downloaded PNG says what it
    shows: in the config's own notation (pos_embed=learned, d=3, 64x192), the same in every language;
    the picture font has ASCII glyphs only."""
    return _file(name, tile([image], [caption], columns=1))


def _file(name: str, picture: np.ndarray) -> str:
    """The picture as a PNG file: these maps are the same in every session (they depend on the
    model and the clicked patch, not on the photo), so each is encoded once and sent as a file."""
    return str(shared_png(name, picture))


def _column_note(tables: EmbeddingTables, kind: str, lang: str = DEFAULT) -> str:
    if KINDS[kind].learned and kind not in tables.tables:
        reason = text("positions.no_learned", lang, kind=kind_name(tables.model_kind, lang))
        return text("positions.not_shown", lang, reason=reason)
    if kind not in tables.tables:  # the formula's own reason, e.g. a width it cannot use
        return text("positions.not_shown", lang, reason=tables.missing[kind])
    source = text("positions.from_checkpoint" if KINDS[kind].learned else "positions.from_formula", lang)
    used = text("positions.used", lang) if kind == tables.model_kind else ""
    n, d = tables.tables[kind].shape
    return text("positions.table_note", lang, patches=n, dim=d, source=source, used=used)


def _map_size(grid: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a similarity map as `similarity_image` draws it."""
    cell = map_cell(grid)
    return grid[0] * cell, grid[1] * cell


def _load(ctx: Context, key: AnalysisKey | None, warn: bool = True,
          lang: str = DEFAULT) -> tuple[Analysis, EmbeddingTables] | None:
    """The cached analysis and the embedding tables of its model, or None when there is no photo."""
    analysis = load_analysis(ctx, key, warn, lang)
    if analysis is None:
        return None
    model = ctx.cache.model(key.checkpoint, key.epoch)  # already loaded for the analysis: a cache hit
    return analysis, embedding_tables(model, analysis.grid)
