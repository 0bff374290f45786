"""Segment tab: the predicted mask over the photo, the per-class probabilities, and the class-token
head's species/breed guess when the checkpoint has one."""

import gradio as gr

from vitviz.data import CLASS_NAMES
from vitviz.overlay import class_shares, legend_html, overlay_mask, probability_maps, top_guesses
from vitviz.attention_maps import fit_photo
from vitviz.ui.common import AnalysisKey, Context, Refresh

EXPLANATION = """
The model sees your photo squashed to a square (its input size), predicts a class for every pixel
(**pet**, **background**, or the thin **border** around the pet that the dataset's trimaps mark),
and the mask is resampled back onto your photo's own size. Below, each class's probability per
pixel: the mask takes the most probable class. Every picture downloads as a PNG (↓ in its corner).
"""

NO_ANALYSIS = "Load a photo and a checkpoint above to see its mask."
NO_CLASS_HEAD = ("This checkpoint has no class-token head, so it makes no species or breed guess "
                 "(train one with `--class-token true`).")


def build(ctx: Context) -> Refresh:
    gr.Markdown(EXPLANATION)
    with gr.Row():
        photo = gr.Image(label="Photo", format="png", interactive=False, buttons=["download", "fullscreen"])
        with gr.Column():
            overlay = gr.Image(label="Predicted mask on the photo (photo size)", format="png", interactive=False,
                               buttons=["download", "fullscreen"], elem_id="segment-overlay")
            gr.HTML(legend_html())
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Mask opacity")
    shares = gr.Markdown(NO_ANALYSIS)
    with gr.Row():
        maps = [gr.Image(label=f"P({name}) per pixel", format="png", interactive=False, height=260,
                         buttons=["download", "fullscreen"]) for name in CLASS_NAMES]
    guess = gr.Label(label="Species / breed guess of the class-token head (top 5)", num_top_classes=5,
                     visible=False)
    guess_note = gr.Markdown()

    def draw_overlay(key: AnalysisKey | None, alpha: float):
        analysis = ctx.analysis_for(key)
        if analysis is None:
            return None
        return overlay_mask(analysis.photo, analysis.mask_at_photo_size(), alpha, analysis.probs.shape[0])

    def refresh(key: AnalysisKey | None, alpha: float):
        analysis = ctx.analysis_for(key)
        if analysis is None:
            return [None, None, NO_ANALYSIS, *[None] * len(maps), gr.update(visible=False), ""]
        mask = analysis.mask_at_photo_size()
        h, w = mask.shape
        share_text = ", ".join(f"{name} {v:.0%}" for name, v in class_shares(mask, analysis.probs.shape[0]).items())
        prob_maps = list(probability_maps(analysis.probs, analysis.photo.shape).values())
        prob_maps += [None] * (len(maps) - len(prob_maps))  # a model with fewer classes leaves slots empty
        if analysis.class_probs is None:
            guess_update, note = gr.update(visible=False), NO_CLASS_HEAD
        else:
            guess_update = gr.update(value=top_guesses(analysis.class_probs, analysis.labels), visible=True)
            note = "The class token's head reads the whole image and guesses what is in it (probabilities)."
        return [fit_photo(analysis.photo, 1024), overlay_mask(analysis.photo, mask, alpha, analysis.probs.shape[0]),
                f"Photo {w}×{h} px · predicted share of pixels: {share_text}",
                *prob_maps[:len(maps)], guess_update, note]

    opacity.change(draw_overlay, [ctx.analysis, opacity], overlay)
    return Refresh(refresh, [opacity], [photo, overlay, shares, *maps, guess, guess_note])
