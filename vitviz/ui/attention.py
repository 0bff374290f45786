"""Attention tab: click a patch of the photo and see what every head does with it (brief §2, §5).

All views read the attention weights of the cached forward pass (`ctx.analysis_for(key)`); a
click or a slider never runs the model. The per-click pictures are drawn by the browser
(`attention_maps.js`) from the weights sent once per photo (`vitviz.views.attention_browser`): a
click costs the server only its status line. The clicked place is the shell's selected point
(`ctx.point`), shared by every tab: it survives a change of tab, epoch or checkpoint, so you can
watch one spot's attention over training.
"""

from pathlib import Path
from typing import Any, get_args

import gradio as gr

from vitviz.app.downloads import save_pngs
from vitviz.app.i18n import DEFAULT, text
from vitviz.app.inference import Analysis
from vitviz.ui.context import AnalysisKey, Context, localized_choices
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import (HIDE_SAVED, LATEX, about, clicked_point, load_analysis, one_of, patch_at, saved_files,
                               show_saved, whole_number)
from vitviz.views.attention import (PHOTO_SIDE, Direction, Scale, attention_pictures, distance_figure, locality,
                                    mean_attention_distance, uniform_attention_distance)
from vitviz.views.attention_browser import attention_maps_data
from vitviz.views.pictures import CLICKABLE_SIDE

# The clickable photo's component loads the script into the page's <head>; every picture mounts on
# it once it has run (components mount in no set order).
MAPS_SCRIPT = f"<script>{Path(__file__).with_name('attention_maps.js').read_text()}</script>"
MOUNT = ("(function mount() { window.vitvizAttention ? window.vitvizAttention.mount(element, props, trigger, watch)"
         " : setTimeout(mount, 20); })()")
FULL_SCREEN = ('<button class="attention-full"><svg viewBox="0 0 24 24" '
               'width="16" height="16" fill="none" stroke="currentColor" stroke-width="2">'
               '<path d="M4 9V4h5M15 4h5v5M20 15v5h-5M9 20H4v-5"/></svg></button>')


def drawn_by_browser(ctx: Context, label: str, role: str, elem_id: str) -> gr.HTML:
    """One picture of the tab, drawn by `attention_maps.js` as `role` into an <img>, so that it can be
    saved or copied like any picture, and enlarged to the full screen by its button. The clickable
    photo ("click") carries the data of the photo on screen as its value."""
    clickable = role == "click"
    # The full-screen button's name is a prop of its own, so the language picker renames it too.
    return ctx.localized(gr.HTML, {"label": label, "full_screen": "attention.full_screen"}, elem_id=elem_id, role=role,
                         head=MAPS_SCRIPT if clickable else None,
                         html_template=f'<div class="attention-picture"><img>{"" if clickable else FULL_SCREEN}</div>',
                         js_on_load=MOUNT)


def build(ctx: Context) -> Refresh:
    if ctx.analysis is None:
        raise ValueError("create the shell's analysis gr.State before building the attention tab")
    about(ctx, "attention.intro")
    with ctx.localized(gr.Accordion, {"label": "attention.formulas_label"}, open=False):
        ctx.localized(gr.Markdown, {"value": "attention.formulas"}, latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column(scale=1, min_width=CLICKABLE_SIDE + 32):  # the photo at least 384 px on screen
            photo = drawn_by_browser(ctx, "attention.photo", "click", "attention-photo")
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
            drawn_by_browser(ctx, "attention.heads", "heads", "attention-heads")
            ctx.localized(gr.Markdown, {"value": "attention.heads_text"})
    ctx.localized(gr.Markdown, {"value": "attention.overview_text"})
    locality_note = gr.Markdown(elem_id="attention-locality")  # measured on this photo, not a general claim
    drawn_by_browser(ctx, "attention.overview", "overview", "attention-overview")
    with gr.Row():
        with gr.Column():
            ctx.localized(gr.Markdown, {"value": "attention.rollout_text"})
            drawn_by_browser(ctx, "attention.rollout", "rollout", "attention-rollout")
        with gr.Column():
            ctx.localized(gr.Markdown, {"value": "attention.class_text"})
            class_note = gr.Markdown()
            class_map = drawn_by_browser(ctx, "attention.class_map", "classToken", "attention-class-token")
    ctx.localized(gr.Markdown, {"value": "attention.distance_text"})
    distance_plot = ctx.localized(gr.Plot, {"label": "attention.distance"}, show_label=False)
    controls = [layer, direction, scale]

    def on_click(key: AnalysisKey | None, layer_: int, direction_: str, scale_: str, evt: gr.SelectData,
                 lang: str = DEFAULT):
        """The browser has drawn the clicked patch's maps already: keep the point, say where it is."""
        analysis = load_analysis(ctx, key, lang=lang)
        if analysis is None:
            return gr.skip()
        layer_, direction_, _ = checked_controls(analysis, layer_, direction_, scale_, lang)
        point = clicked_point(evt.index, analysis.clickable_size(PHOTO_SIDE), lang)
        if point is None:
            return gr.skip()
        patch = patch_at(point, analysis.grid)
        return {ctx.point: point, status: status_text(analysis, patch, layer_, direction_, lang)}

    def on_control(key: AnalysisKey | None, point: Any, layer_: int, direction_: str, scale_: str,
                   lang: str = DEFAULT):
        """The browser redraws the maps (`controls` below); the texts that quote the layer follow here."""
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return gr.skip()
        layer_, direction_, _ = checked_controls(analysis, layer_, direction_, scale_, lang)
        return {status: status_text(analysis, patch_at(point, analysis.grid), layer_, direction_, lang),
                class_note: class_note_text(analysis, layer_, lang)}

    def refresh(key: AnalysisKey | None, point: Any, layer_: int, direction_: str, scale_: str,
                lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return {photo: None, status: text("shell.no_photo", lang), class_note: "", saved: HIDE_SAVED,
                    distance_plot: None, locality_note: ""}
        depth = len(analysis.trace.attentions)
        layer_, direction_, scale_ = checked_controls(analysis, layer_, direction_, scale_, lang)
        patch = patch_at(point, analysis.grid)
        distances = mean_attention_distance(analysis.trace.attentions, analysis.grid, analysis.patch_size,
                                            analysis.has_class_token)
        return {photo: attention_maps_data(analysis, patch, layer_, direction_, scale_),
                status: status_text(analysis, patch, layer_, direction_, lang),
                class_note: class_note_text(analysis, layer_, lang),
                # A model without a class token has nothing to draw there: hide the box rather than leave it empty.
                class_map: gr.update(visible=analysis.has_class_token),
                saved: HIDE_SAVED,
                # A Gradio slider needs minimum < maximum, so a one-layer model gets a locked 1…2 slider.
                layer: gr.update(minimum=1, maximum=max(depth, 2), value=layer_, interactive=depth > 1),
                distance_plot: distance_figure(distances, lang),
                locality_note: locality_text(distances, uniform_attention_distance(analysis.grid, analysis.patch_size),
                                             lang)}

    def on_save(key: AnalysisKey | None, point: Any, layer_: int, direction_: str, scale_: str,
                lang: str = DEFAULT):
        """The pictures now on screen, drawn again on the server and written as PNG files (lossless,
        for slides)."""
        analysis = load_analysis(ctx, key, lang=lang)
        if analysis is None:
            return gr.skip()
        clicked = patch_at(point, analysis.grid)
        layer_, direction_, scale_ = checked_controls(analysis, layer_, direction_, scale_, lang)
        pictures = attention_pictures(analysis, clicked, layer_, direction_, scale_)
        stem = f"attention-patch{clicked}-layer{layer_}-{direction_}-{scale_}"
        return show_saved(save_pngs(pictures.named(stem)))

    photo.select(on_click, [ctx.analysis, *controls, ctx.language], [ctx.point, status], show_progress="hidden")
    save.click(on_save, [ctx.analysis, ctx.point, *controls, ctx.language], saved)
    # Two listeners: the browser redraws at once, without a round trip; the server writes the texts
    # (one listener for all three controls, deferred while busy, so the last setting's texts land last).
    changes = [control.change for control in controls]
    gr.on(changes, None, controls, None, js="(layer, direction, scale) => "
                                           "window.vitvizAttention?.controls(layer, direction, scale)")
    gr.on(changes, on_control, [ctx.analysis, ctx.point, *controls, ctx.language], [status, class_note],
          show_progress="hidden", trigger_mode="always_last")
    return Refresh(refresh, [ctx.point, *controls, ctx.language],
                   [photo, status, class_note, class_map, saved, layer, distance_plot, locality_note])


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


def status_text(analysis: Analysis, patch: int, layer: int, direction: Direction, lang: str = DEFAULT) -> str:
    """Where the clicked patch is and what the maps beside it read, in `lang`."""
    (rows, cols), depth = analysis.grid, len(analysis.trace.attentions)
    row, col = divmod(patch, cols)
    reads = text("attention.reads_query" if direction == "query" else "attention.reads_key", lang)
    return text("attention.status", lang, patch=patch, row=row + 1, col=col + 1, rows=rows, cols=cols, reads=reads,
                layer=layer, depth=depth, uniform=uniform_attention_distance(analysis.grid, analysis.patch_size))


def class_note_text(analysis: Analysis, layer: int, lang: str = DEFAULT) -> str:
    if analysis.has_class_token:
        return text("attention.class_note", lang, layer=layer)
    return text("attention.no_class_token", lang)
