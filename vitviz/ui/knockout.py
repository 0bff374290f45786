"""Knock-out tab: switch heads, attention, MLPs or the position embedding off (or shuffle the
tokens) and see the mask change on the current photo; measure every head's importance for it.

Each change runs the model twice (the photo and its mirror image, as in the Segment tab) with the
`KnockOut` passed to its forward (`vitviz.model.knockout`); the pictures and numbers come from
`vitviz.views.knockout`. A click on a cell of the head chart switches that head off or on.
"""

import time
from typing import Any

import gradio as gr
import numpy as np
import torch

from vitviz.app.i18n import DEFAULT, class_name, text
from vitviz.app.inference import Analysis
from vitviz.model.knockout import SHUFFLES, KnockOut
from vitviz.ui.context import AnalysisKey, Context, localized_choices
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import about, click_point, figure, flag, load_analysis, one_of, some_of
from vitviz.views.knockout import (changed_picture, changed_share, chart_cell, class_flows,
                                   head_importance, importance_chart, knocked_out_probs, pixel_accuracy, truth_at)
from vitviz.views.segment import class_mask, overlay_mask, resampled

SIDE = 320  # px, the longer side of each of the three mask pictures
OPACITY = 0.55


def head_value(block: int, head: int) -> str:
    """A head's value in the checkbox group, counted from 1: "2.6" is block 2, head 6."""
    return f"{block + 1}.{head + 1}"


def head_choices(depth: int, heads: int) -> list[tuple[str, str]]:
    return [(f"{b + 1}·{h + 1}", head_value(b, h)) for b in range(depth) for h in range(heads)]


def block_choices(depth: int) -> list[tuple[str, int]]:
    return [(str(b + 1), b + 1) for b in range(depth)]


def build(ctx: Context) -> Refresh:
    about(ctx, "knockout.intro")
    shape = gr.State(None)  # (blocks, heads) the controls were last made for
    shares = gr.State(None)  # (AnalysisKey, head importance as nested lists (blocks × heads)) once measured
    # The pictures first, the head chart beside them (a click on a cell switches that head), the
    # other switches underneath.
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row():
                before = ctx.localized(figure, {"label": "knockout.before"}, elem_id="knockout-before", fast=True)
                after = ctx.localized(figure, {"label": "knockout.after"}, elem_id="knockout-after", fast=True)
                changed = ctx.localized(figure, {"label": "knockout.changed"}, elem_id="knockout-changed", fast=True)
            summary = gr.Markdown(text("shell.no_photo"), elem_id="knockout-summary")
            ctx.localized(gr.Markdown, {"value": "knockout.pictures"})
        with gr.Column(scale=2):
            chart = ctx.localized(figure, {"label": "knockout.chart"}, elem_id="knockout-chart", fast=True)
            with gr.Row():
                measure = ctx.localized(gr.Button, {"value": "knockout.measure"}, variant="primary", scale=0,
                                        min_width=200, elem_id="knockout-measure")
                chart_note = gr.Markdown(elem_id="knockout-chart-note")
            ctx.localized(gr.Markdown, {"value": "knockout.importance_text"})
    with gr.Row(equal_height=False):
        attention = ctx.localized(gr.CheckboxGroup, {"label": "knockout.attention"}, choices=[],
                                  elem_id="knockout-attention")
        mlp = ctx.localized(gr.CheckboxGroup, {"label": "knockout.mlp"}, choices=[], elem_id="knockout-mlp")
        with gr.Column():
            position = ctx.localized(gr.Checkbox, {"label": "knockout.position"}, value=False,
                                     elem_id="knockout-position")
            shuffle = ctx.localized(gr.Radio, {"label": "knockout.shuffle", "choices": localized_choices(
                *((f"knockout.shuffle_{name}", name) for name in SHUFFLES))}, value="none", elem_id="knockout-shuffle")
        reset = ctx.localized(gr.Button, {"value": "knockout.reset"}, size="sm", variant="secondary", scale=0,
                              min_width=160)
    with ctx.localized(gr.Accordion, {"label": "knockout.heads_by_number"}, open=False):
        heads = ctx.localized(gr.CheckboxGroup, {"label": "knockout.heads"}, choices=[], elem_id="knockout-heads")
    controls = [heads, attention, mlp, position, shuffle]

    def checked(analysis: Analysis, heads_: Any, attention_: Any, mlp_: Any, position_: Any, shuffle_: Any,
                lang: str) -> KnockOut:
        """The controls as the browser sent them → the knock-out, for this analysis's model."""
        depth, n_heads = analysis_shape(analysis)
        blocks = [value for _, value in block_choices(depth)]
        chosen_heads = some_of(heads_, [value for _, value in head_choices(depth, n_heads)],
                               text("knockout.heads", lang), lang)
        return KnockOut(
            heads={(int(b) - 1, int(h) - 1) for b, h in (value.split(".") for value in chosen_heads)},
            attention={b - 1 for b in some_of(attention_, blocks, text("knockout.attention", lang), lang)},
            mlp={b - 1 for b in some_of(mlp_, blocks, text("knockout.mlp", lang), lang)},
            position=flag(position_, text("knockout.position", lang), lang),
            shuffle=one_of(shuffle_, SHUFFLES, text("knockout.shuffle", lang), lang))

    def draw(key: AnalysisKey, analysis: Analysis, knockout: KnockOut, measured: Any, lang: str) -> dict:
        """The three mask pictures, the summary and the chart for `knockout` on this analysis."""
        num_classes = analysis.probs.shape[0]
        photo = analysis.photo_fitted(SIDE)
        size = photo.shape[:2]
        base = analysis.probs
        probs = knocked_out_probs(ctx.cache.model(key.checkpoint, key.epoch), analysis.image, knockout) if knockout \
            else base
        shown_before, shown_after = class_mask(resampled(base, size)), class_mask(resampled(probs, size))
        return {before: overlay_mask(photo, shown_before, OPACITY, num_classes),
                after: overlay_mask(photo, shown_after, OPACITY, num_classes),
                changed: changed_picture(photo, shown_before, shown_after),
                summary: summary_text(analysis, knockout, base.argmax(0), probs.argmax(0),
                                      ctx.photos.truth(key.photo_id, lang), lang),
                chart: importance_chart(measured_for(key, measured, analysis_shape(analysis)), knockout.heads)}

    def on_control(key: AnalysisKey | None, measured: Any,
                   heads_: Any, attention_: Any, mlp_: Any, position_: Any, shuffle_: Any,
                   lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return gr.skip()
        knockout = checked(analysis, heads_, attention_, mlp_, position_, shuffle_, lang)
        return draw(key, analysis, knockout, measured, lang)

    def on_reset():
        """Every switch back on: their changes draw."""
        return {heads: [], attention: [], mlp: [], position: False, shuffle: "none"}

    def on_chart_click(key: AnalysisKey | None, heads_: Any, evt: gr.SelectData, lang: str = DEFAULT):
        """A click on a cell switches that head off, or on again: only the switch is set here, and
        its change draws (as for every other switch)."""
        analysis = load_analysis(ctx, key, lang=lang)
        if analysis is None:
            return gr.skip()
        depth, n_heads = analysis_shape(analysis)
        cell = chart_cell(*click_point(evt.index, lang), (depth, n_heads))
        if cell is None:
            return gr.skip()
        values = [value for _, value in head_choices(depth, n_heads)]
        switched = set(some_of(heads_, values, text("knockout.heads", lang), lang)) ^ {head_value(*cell)}
        return {heads: [value for value in values if value in switched]}

    def on_measure(key: AnalysisKey | None,
                   heads_: Any, attention_: Any, mlp_: Any, position_: Any, shuffle_: Any, lang: str = DEFAULT):
        """Every head switched off alone, block after block: the chart fills in as it goes."""
        analysis = load_analysis(ctx, key, lang=lang)
        if analysis is None:
            return
        knockout = checked(analysis, heads_, attention_, mlp_, position_, shuffle_, lang)
        model = ctx.cache.model(key.checkpoint, key.epoch)
        depth, n_heads = analysis_shape(analysis)
        start = time.perf_counter()
        for done, partial in enumerate(head_importance(model, analysis.image, analysis.probs.argmax(0)), 1):
            seconds = time.perf_counter() - start
            note = text("knockout.measuring", lang, done=done, depth=depth, seconds=seconds)
            if done == depth:
                b, h = np.unravel_index(np.argmax(partial), partial.shape)
                note = text("knockout.measured", lang, heads=depth * n_heads, passes=2 * depth * n_heads,
                            seconds=seconds, block=b + 1, head=h + 1, share=partial[b, h])
            yield {shares: (key, partial.tolist()), chart_note: note,
                   chart: importance_chart(partial, knockout.heads)}

    def refresh(key: AnalysisKey | None, shape_: Any, measured: Any,
                heads_: Any, attention_: Any, mlp_: Any, position_: Any, shuffle_: Any,
                lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return {before: None, after: None, changed: None, chart: None, chart_note: "",
                    summary: text("shell.no_photo", lang)}
        depth, n_heads = analysis_shape(analysis)
        # What another model had and this one lacks (block 6 of a 4-block model) is dropped.
        knockout = checked(analysis, heads_, attention_, mlp_, position_, shuffle_, lang)
        note = gr.skip() if np.isfinite(measured_for(key, measured, (depth, n_heads))).all() else \
            text("knockout.not_measured", lang)
        if shape_ == (depth, n_heads):
            return {chart_note: note, **draw(key, analysis, knockout, measured, lang)}
        # Another model: new choices, and the switches it lacks dropped.
        kept = {heads: [head_value(b, h) for b, h in sorted(knockout.heads)],
                attention: sorted(b + 1 for b in knockout.attention), mlp: sorted(b + 1 for b in knockout.mlp)}
        updates = {shape: (depth, n_heads), chart_note: note,
                   heads: gr.update(choices=head_choices(depth, n_heads), value=kept[heads]),
                   attention: gr.update(choices=block_choices(depth), value=kept[attention]),
                   mlp: gr.update(choices=block_choices(depth), value=kept[mlp])}
        given = {heads: heads_, attention: attention_, mlp: mlp_}
        if any(set(kept[control]) != set(given[control] or []) for control in kept):
            return updates  # a switch was dropped: its change event draws, as for any change of the switches
        return {**updates, **draw(key, analysis, knockout, measured, lang)}

    # One listener for every switch, fired by their changes (a click, the chart, the reset): the
    # page sends a change made while the previous one is drawn once that is done, with the switches
    # as they are then. One listener per switch ran side by side and the older drawing could land last.
    drawn = [before, after, changed, summary, chart]
    gr.on([control.change for control in controls], on_control, [ctx.analysis, shares, *controls, ctx.language],
          drawn, trigger_mode="always_last", show_progress="minimal")
    reset.click(on_reset, None, controls)
    chart.select(on_chart_click, [ctx.analysis, heads, ctx.language], heads)
    measure.click(on_measure, [ctx.analysis, *controls, ctx.language], [shares, chart_note, chart])
    return Refresh(refresh, [shape, shares, *controls, ctx.language],
                   [shape, heads, attention, mlp, chart_note, *drawn])


def analysis_shape(analysis: Analysis) -> tuple[int, int]:
    """(blocks, heads) of the model that made `analysis`."""
    attentions = analysis.trace.attentions
    return len(attentions), attentions[0].shape[1]


def measured_for(key: AnalysisKey, measured: Any, shape: tuple[int, int]) -> np.ndarray:
    """The head importance measured for this analysis, or NaN everywhere (not measured yet)."""
    if isinstance(measured, tuple) and measured[0] == key:
        return np.array(measured[1], dtype=float)
    return np.full(shape, np.nan)


def summary_text(analysis: Analysis, knockout: KnockOut, base: torch.Tensor, after: torch.Tensor,
                 truth: np.ndarray | None, lang: str) -> str:
    """What is switched off, the share of pixels that changed class and where they went, and the
    pixel accuracy before and after when the photo has a trimap."""
    if not knockout:
        lines = [text("knockout.nothing_off", lang)]
    else:
        num_classes = analysis.probs.shape[0]
        flows = ", ".join(text("knockout.flow", lang, source=class_name(a, lang), target=class_name(b, lang), share=s)
                          for a, b, s in class_flows(base, after, num_classes)[:3])
        lines = [text("knockout.what_off", lang, what=describe(knockout, lang)),
                 text("knockout.changed_share", lang, share=changed_share(base, after), size=analysis.image_size,
                      flows=flows or "–")]
        if truth is not None:
            scored = truth_at(truth, analysis.image_size)
            lines.append(text("knockout.accuracy", lang, before=pixel_accuracy(base, scored, num_classes),
                              after=pixel_accuracy(after, scored, num_classes)))
    return "  \n".join(lines)


def describe(knockout: KnockOut, lang: str) -> str:
    """The knock-out in words: "heads 2·6, 3·1; attention of block 2; position embedding"."""
    def counted(key: str, items: set) -> str:  # "head 3·2" but "heads 3·2, 4·1" (`_many`)
        return f"knockout.{key}{'_many' if len(items) > 1 else ''}"

    parts = []
    if knockout.heads:
        parts.append(text(counted("what_heads", knockout.heads), lang,
                          heads=", ".join(f"{b + 1}·{h + 1}" for b, h in sorted(knockout.heads))))
    whole = knockout.attention & knockout.mlp
    for key, blocks in (("what_blocks", whole), ("what_attention", knockout.attention - whole),
                        ("what_mlp", knockout.mlp - whole)):
        if blocks:
            parts.append(text(counted(key, blocks), lang, blocks=", ".join(str(b + 1) for b in sorted(blocks))))
    if knockout.position:
        parts.append(text("knockout.what_position", lang))
    if knockout.shuffle != "none":
        parts.append(text(f"knockout.what_shuffle_{knockout.shuffle}", lang))
    return "; ".join(parts)
