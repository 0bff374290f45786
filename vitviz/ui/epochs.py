"""Epochs tab: the current photo's mask at every saved snapshot of the checkpoint and with its final
weights, one of them large with its metrics, and the progression as a GIF.

Drawing it runs the model once per snapshot; like every tab, the shell draws it only while it is shown."""

from pathlib import Path

import gradio as gr

from vitviz.app.downloads import new_folder
from vitviz.app.i18n import DEFAULT, text
from vitviz.training.checkpoint import list_snapshots
from vitviz.ui.context import AnalysisKey, Context
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import load_analysis
from vitviz.views.epochs import (Frame, export_gif, final_label, mask_explanation, metrics_text, overlay_frame,
                                 progression)
from vitviz.views.pictures import fit_photo

OPACITY = 0.55


def frame_label(frame: Frame, folder: str, lang: str) -> str:
    """A frame's name in `lang` (`frame.label` stays English: the GIF draws it with a Latin font)."""
    if frame.epoch is not None:
        return text("epochs.snapshot", lang, epoch=frame.epoch)
    # The final frame carries its epoch's metrics row: enough to name it without reading the file again.
    return final_label(folder, {frame.metrics["epoch"]: frame.metrics} if frame.metrics else {}, lang)


def build(ctx: Context) -> Refresh:
    # Six to a row, so that thumbnails and captions can be read; a longer progression scrolls.
    # The strip first: the tab's main picture, on the first screen; why it looks as it does below.
    strip = ctx.localized(gr.Gallery, {"label": "epochs.strip"}, columns=6, height=270, format="png",
                          object_fit="contain", allow_preview=False, elem_id="epochs-strip",
                          elem_classes="full-captions")
    explanation = gr.Markdown(text("epochs.no_analysis"))
    snapshot = ctx.localized(gr.Slider, {"label": "epochs.slider"}, minimum=1, maximum=2, value=1, step=1,
                             elem_id="epochs-snapshot")
    with gr.Row():
        large = ctx.localized(gr.Image, {"label": "epochs.large"}, format="png", interactive=False,
                              buttons=["download", "fullscreen"], elem_id="epochs-large")
        with gr.Column():
            metrics = gr.Markdown(elem_id="epochs-metrics")
            gif = ctx.localized(gr.DownloadButton, {"label": "epochs.gif"}, visible=False)  # its value is the file

    def frames_of(key: AnalysisKey, lang: str) -> list[Frame]:
        return progression(ctx.cache, ctx.photos.get(key.photo_id, lang), key.checkpoint)

    def large_view(frame: Frame, folder: str, lang: str) -> dict:
        """One frame, large, with its metrics."""
        label = frame_label(frame, folder, lang)
        return {large: gr.update(value=overlay_frame(frame.analysis, OPACITY, 512),
                                 label=text("epochs.large_label", lang, label=label)),
                metrics: metrics_text(label, frame.metrics, lang)}

    def nothing_to_show(message: str) -> dict:
        return {explanation: message, strip: None, snapshot: gr.update(visible=False), large: None, metrics: "",
                gif: gr.update(visible=False)}

    def show(key: AnalysisKey | None, index: int, lang: str = DEFAULT):
        """The frame at 1-based slider position `index`, large, with its metrics."""
        if load_analysis(ctx, key, warn=False, lang=lang) is None or not list_snapshots(key.checkpoint):
            return {large: None, metrics: ""}
        frames = frames_of(key, lang)
        return large_view(frames[min(max(int(index), 1), len(frames)) - 1], key.checkpoint, lang)

    def refresh(key: AnalysisKey | None, lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return nothing_to_show(text("epochs.no_analysis", lang))
        head = ctx.cache.model(key.checkpoint, key.epoch).cfg.head
        explanation_text = mask_explanation(head, analysis.patch_size, analysis.probs.shape[0], lang)
        if not list_snapshots(key.checkpoint):
            return nothing_to_show(text("epochs.no_snapshots", lang))
        frames = frames_of(key, lang)
        labels = [frame.label for frame in frames]
        pictures = [overlay_frame(frame.analysis, OPACITY, 320) for frame in frames]
        thumbs = [(fit_photo(picture, 200), frame_label(frame, key.checkpoint, lang))
                  for picture, frame in zip(pictures, frames)]
        # A folder of its own per GIF: a run in progress, or another run of the same name, draws other frames.
        name = f"epochs-{key.photo_id[:12]}-{Path(key.checkpoint).name}.gif"
        gif_path = export_gif(pictures, labels, new_folder() / name)
        # Start on the epoch picked above when it is a snapshot shown, else on the final weights.
        epochs = [frame.epoch for frame in frames]
        index = epochs.index(key.epoch) + 1 if key.epoch in epochs else len(frames)
        if len(frames) == 1:  # nothing to slide over (and a slider needs minimum < maximum)
            slider = gr.update(visible=False)
        else:
            snapshots = ", ".join(str(epoch) for epoch in epochs[:-1])
            slider = gr.update(minimum=1, maximum=len(frames), value=index, visible=True,
                               label=text("epochs.slider_range", lang, count=len(frames), epochs=snapshots,
                                          final=frame_label(frames[-1], key.checkpoint, lang)))
        return {explanation: explanation_text, strip: thumbs, snapshot: slider,
                **large_view(frames[index - 1], key.checkpoint, lang), gif: gr.update(value=str(gif_path), visible=True)}

    snapshot.change(show, [ctx.analysis, snapshot, ctx.language], [large, metrics])
    return Refresh(refresh, [ctx.language], [explanation, strip, snapshot, large, metrics, gif])
