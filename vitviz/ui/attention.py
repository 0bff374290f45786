"""Attention tab: click a patch of the photo and see what every head does with it (brief §2, §5).

All views read the attention weights of the cached forward pass (`ctx.analysis_for(key)`); a
click or a slider never runs the model. The clicked place is the shell's selected point
(`ctx.point`), shared by every tab: it survives a change of tab, epoch or checkpoint, so you can
watch one spot's attention over training.
"""

from typing import Any, get_args

import gradio as gr

from vitviz.app.downloads import save_pngs
from vitviz.app.i18n import DEFAULT, text
from vitviz.app.inference import Analysis
from vitviz.ui.context import AnalysisKey, Context, localized_choices
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import (HIDE_SAVED, LATEX, about, clicked_point, figure, load_analysis, one_of, patch_at,
                               saved_files, show_saved, whole_number)
from vitviz.views.attention import (PHOTO_SIDE, Direction, Scale, attention_pictures, distance_figure, locality,
                                    mean_attention_distance, uniform_attention_distance)
from vitviz.views.pictures import CLICKABLE_SIDE

def build(ctx: Context) -> Refresh:
    if ctx.analysis is None:
        raise ValueError("create the shell's analysis gr.State before building the attention tab")
    about(ctx, "attention.intro")
    with ctx.localized(gr.Accordion, {"label": "attention.formulas_label"}, open=False):
        ctx.localized(gr.Markdown, {"value": "attention.formulas"}, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=CLICKABLE_SIDE + 32):  # the photo at least 384 px on screen
            photo = ctx.localized(figure, {"label": "attention.photo"}, elem_id="attention-photo", fast=True)
            status = gr.Markdown(text("shell.no_photo"), elem_id="attention-status")
            direction = ctx.localized(gr.Radio, {"label": "attention.direction", "choices": localized_choices(
                ("attention.query", "query"), ("attention.key", "key"))}, value="query", elem_id="attention-direction")
            layer = ctx.localized(gr.Slider, {"label": "attention.layer"}, minimum=1, maximum=2, value=1, step=1,
                                  elem_id="attention-layer")
            scale = ctx.localized(gr.Radio, {"label": "attention.scale", "choices": localized_choices(
                ("attention.local", "local"), ("attention.global", "global"))}, value="local")
            save = ctx.localized(gr.Button, {"value": "attention.save"}, size="sm", variant="secondary",
                                 elem_id="attention-save")
            saved = saved_files(ctx, elem_id="attention-png")
        with gr.Column(scale=2):  # the maps first, beside the photo; what they mean underneath
            heads = ctx.localized(figure, {"label": "attention.heads"}, elem_id="attention-heads", fast=True)
            ctx.localized(gr.Markdown, {"value": "attention.heads_text"})
    ctx.localized(gr.Markdown, {"value": "attention.overview_text"})
    locality_note = gr.Markdown(elem_id="attention-locality")  # measured on this photo, not a general claim
    overview = ctx.localized(figure, {"label": "attention.overview"}, fast=True)
    with gr.Row():
        with gr.Column():
            ctx.localized(gr.Markdown, {"value": "attention.rollout_text"})
            rollout = ctx.localized(figure, {"label": "attention.rollout"}, fast=True)
        with gr.Column():
            ctx.localized(gr.Markdown, {"value": "attention.class_text"})
            class_note = gr.Markdown()
            class_map = ctx.localized(figure, {"label": "attention.class_map"}, fast=True)
    ctx.localized(gr.Markdown, {"value": "attention.distance_text"})
    distance_plot = ctx.localized(gr.Plot, {"label": "attention.distance"}, show_label=False)

    # The outputs of every click, by the names `patch_views` gives their values.
    patch_outputs = dict(photo=photo, status=status, heads=heads, overview=overview, rollout=rollout,
                         class_note=class_note, class_map=class_map)
    controls = [layer, direction, scale]

    def shown(views: dict[str, Any]) -> dict:
        return {patch_outputs[name]: value for name, value in views.items()}

    def on_click(key: AnalysisKey | None, layer_: int, direction_: str, scale_: str, evt: gr.SelectData,
                 lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, lang=lang)
        if analysis is None:
            return gr.skip()
        checked = checked_controls(analysis, layer_, direction_, scale_, lang)
        point = clicked_point(evt.index, analysis.clickable_size(PHOTO_SIDE), lang)
        if point is None:
            return gr.skip()
        return {ctx.point: point, **shown(patch_views(analysis, patch_at(point, analysis.grid), *checked, lang))}

    def on_control(key: AnalysisKey | None, point: Any, layer_: int, direction_: str, scale_: str,
                   lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return gr.skip()
        return shown(patch_views(analysis, patch_at(point, analysis.grid),
                                 *checked_controls(analysis, layer_, direction_, scale_, lang), lang))

    def refresh(key: AnalysisKey | None, point: Any, layer_: int, direction_: str, scale_: str,
                lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return {**{output: None for output in patch_outputs.values()}, status: text("shell.no_photo", lang),
                    class_note: "", saved: HIDE_SAVED, distance_plot: None, locality_note: ""}
        depth = len(analysis.trace.attentions)
        layer_, direction_, scale_ = checked_controls(analysis, layer_, direction_, scale_, lang)
        distances = mean_attention_distance(analysis.trace.attentions, analysis.grid, analysis.patch_size,
                                            analysis.has_class_token)
        views = patch_views(analysis, patch_at(point, analysis.grid), layer_, direction_, scale_, lang)
        return {**shown(views),
                # A model without a class token has nothing to draw there: hide the box rather than leave it empty.
                class_map: gr.update(value=views["class_map"], visible=analysis.has_class_token),
                saved: HIDE_SAVED,
                # A Gradio slider needs minimum < maximum, so a one-layer model gets a locked 1…2 slider.
                layer: gr.update(minimum=1, maximum=max(depth, 2), value=layer_, interactive=depth > 1),
                distance_plot: distance_figure(distances, lang),
                locality_note: locality_text(distances, uniform_attention_distance(analysis.grid, analysis.patch_size),
                                             lang)}

    def on_save(key: AnalysisKey | None, point: Any, layer_: int, direction_: str, scale_: str,
                lang: str = DEFAULT):
        """The pictures now on screen, drawn again and written as PNG files (lossless, for slides)."""
        analysis = load_analysis(ctx, key, lang=lang)
        if analysis is None:
            return gr.skip()
        clicked = patch_at(point, analysis.grid)
        layer_, direction_, scale_ = checked_controls(analysis, layer_, direction_, scale_, lang)
        pictures = attention_pictures(analysis, clicked, layer_, direction_, scale_)
        stem = f"attention-patch{clicked}-layer{layer_}-{direction_}-{scale_}"
        return show_saved(save_pngs(pictures.named(stem)))

    photo.select(on_click, [ctx.analysis, *controls, ctx.language], [ctx.point, *patch_outputs.values()])
    save.click(on_save, [ctx.analysis, ctx.point, *controls, ctx.language], saved)
    for control in controls:
        control.change(on_control, [ctx.analysis, ctx.point, *controls, ctx.language], list(patch_outputs.values()))
    return Refresh(refresh, [ctx.point, *controls, ctx.language],
                   [*patch_outputs.values(), saved, layer, distance_plot, locality_note])


def locality_text(distances, uniform: float, lang: str = DEFAULT) -> str:
    """Whether this model's heads look locally on this photo, from their mean attention distances."""
    kind, numbers = locality(distances, uniform)
    return f"{text(f'attention.locality_{kind}', lang, **numbers)} {text('attention.locality_cause', lang)}"


def checked_controls(analysis: Analysis, layer: Any, direction: Any, scale: Any,
                     lang: str = DEFAULT) -> tuple[int, Direction, Scale]:
    """The tab's controls as the browser sent them, checked in one place: the layer (1-based)
    rounded and clamped to the model's depth, the direction and colour scale among their values.
    Anything else gets a one-line gr.Error (`ui.widgets`)."""
    return (whole_number(layer, 1, len(analysis.trace.attentions), text("attention.layer", lang), lang),
            one_of(direction, get_args(Direction), text("attention.direction", lang), lang),
            one_of(scale, get_args(Scale), text("attention.scale", lang), lang))


def patch_views(analysis: Analysis, patch: int, layer: int, direction: Direction, scale: Scale,
                lang: str = DEFAULT) -> dict[str, Any]:
    """Everything that depends on the clicked patch, the layer (1-based, `checked_controls`),
    direction and colour scale, by the name of the tab's output that shows it; the texts in `lang`."""
    grid, has_cls, depth = analysis.grid, analysis.has_class_token, len(analysis.trace.attentions)
    pictures = attention_pictures(analysis, patch, layer, direction, scale)
    if has_cls:
        class_note = text("attention.class_note", lang, layer=layer)
    else:
        class_note = text("attention.no_class_token", lang)

    rows, cols = grid
    row, col = divmod(patch, cols)
    reads = text("attention.reads_query" if direction == "query" else "attention.reads_key", lang)
    status = text("attention.status", lang, patch=patch, row=row + 1, col=col + 1, rows=rows, cols=cols, reads=reads,
                  layer=layer, depth=depth, uniform=uniform_attention_distance(grid, analysis.patch_size))
    # Plain values, not gr.update: an update makes Gradio rebuild the component's config. The class
    # map's box is shown or hidden by `refresh`, which runs for every new photo or checkpoint.
    return dict(photo=pictures.photo, status=status, heads=pictures.heads, overview=pictures.overview,
                rollout=pictures.rollout, class_note=class_note, class_map=pictures.class_token)
