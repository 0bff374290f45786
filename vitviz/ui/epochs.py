"""Epochs tab: the current photo's mask at every saved snapshot of the checkpoint, one epoch large
with its metrics, and the progression as a GIF."""

import hashlib
import tempfile
from pathlib import Path

import gradio as gr

from vitviz.attention_maps import fit_photo
from vitviz.epochs import blocky_explanation, export_gif, metrics_text, overlay_frame, read_metrics, snapshot_analyses
from vitviz.ui.common import AnalysisKey, Context, Refresh

OPACITY = 0.55
GIF_DIR = Path(tempfile.gettempdir()) / "vitviz-gifs"
NO_ANALYSIS = "Load a photo and a checkpoint above to see how its mask changed over training."
NO_SNAPSHOTS = ("This checkpoint has no weight snapshots, so there is no progression to show. "
                "Training saves them at `--snapshot-epochs` (a run in progress gains them as it goes).")


def build(ctx: Context) -> Refresh:
    explanation = gr.Markdown(NO_ANALYSIS)
    strip = gr.Gallery(label="The mask at every saved snapshot", columns=10, rows=1, height=230, format="png", fit_columns=False,
                       object_fit="contain", allow_preview=False)
    snapshot = gr.Slider(1, 2, value=1, step=1, label="Snapshot shown large (1 = the oldest)",
                         elem_id="epochs-snapshot")
    with gr.Row():
        large = gr.Image(label="Mask", format="png", interactive=False, buttons=["download", "fullscreen"],
                         elem_id="epochs-large")
        with gr.Column():
            metrics = gr.Markdown(elem_id="epochs-metrics")
            gif = gr.DownloadButton("Download the progression (GIF)", visible=False)

    def snapshots_of(key: AnalysisKey):
        return snapshot_analyses(ctx.cache, ctx.photos.get(key.photo_id), key.checkpoint)

    def show(key: AnalysisKey | None, index: int):
        """The snapshot at 1-based slider position `index`, large, with its metrics."""
        if ctx.analysis_for(key) is None:
            return None, ""
        analyses = snapshots_of(key)
        if not analyses:
            return None, ""
        epoch = list(analyses)[min(max(int(index), 1), len(analyses)) - 1]
        return (gr.update(value=overlay_frame(analyses[epoch], OPACITY, 512), label=f"Mask at epoch {epoch}"),
                metrics_text(epoch, read_metrics(key.checkpoint).get(epoch)))

    def refresh(key: AnalysisKey | None):
        analysis = ctx.analysis_for(key)
        if analysis is None:
            return NO_ANALYSIS, None, gr.update(visible=False), None, "", gr.update(visible=False)
        explanation_text = blocky_explanation(analysis.patch_size, analysis.probs.shape[0])
        analyses = snapshots_of(key)
        if not analyses:
            return NO_SNAPSHOTS, None, gr.update(visible=False), None, "", gr.update(visible=False)
        epochs = list(analyses)
        frames = [overlay_frame(a, OPACITY, 320) for a in analyses.values()]
        thumbs = [(fit_photo(frame, 200), f"epoch {e}") for e, frame in zip(epochs, frames)]
        folder_id = hashlib.sha1(key.checkpoint.encode()).hexdigest()[:8]  # two runs may share a name
        name = f"epochs-{key.photo_id[:12]}-{Path(key.checkpoint).name}-{folder_id}-{'-'.join(map(str, epochs))}.gif"
        gif_path = export_gif(frames, [f"epoch {e}" for e in epochs], GIF_DIR / name)
        # Start on the epoch picked above when it is a snapshot, else on the last snapshot.
        index = epochs.index(key.epoch) + 1 if key.epoch in epochs else len(epochs)
        if len(epochs) == 1:  # nothing to slide over (and a slider needs minimum < maximum)
            slider = gr.update(visible=False)
        else:
            slider = gr.update(minimum=1, maximum=len(epochs), value=index, visible=True,
                               label=f"Snapshot shown large: 1 … {len(epochs)} = epochs {', '.join(map(str, epochs))}")
        return (explanation_text, thumbs, slider, *show(key, index),
                gr.update(value=str(gif_path), visible=True))

    snapshot.change(show, [ctx.analysis, snapshot], [large, metrics])
    return Refresh(refresh, [], [explanation, strip, snapshot, large, metrics, gif])
