"""Segment tab: the predicted mask over the photo, the per-class probabilities, and the class-token
head's species/breed guess when the checkpoint has one."""

from functools import partial

import gradio as gr

from vitviz.app.downloads import FAST, save_pngs
from vitviz.app.i18n import DEFAULT, class_name, class_values, text
from vitviz.training.data import CLASS_NAMES
from vitviz.ui.context import AnalysisKey, Context
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import load_analysis
from vitviz.views.pictures import fit_photo
from vitviz.views.segment import class_shares, legend_html, overlay_mask, probability_maps, top_guesses


def legend(lang: str) -> str:
    """The mask colours' legend, the class names in `lang`."""
    return legend_html(labels=[class_name(name, lang) for name in CLASS_NAMES])


def probability_label(name: str, lang: str) -> str:
    return text("segment.probability", lang, name=class_name(name, lang))


def build(ctx: Context) -> Refresh:
    ctx.localized(gr.Markdown, {"value": "segment.explanation"})
    with gr.Row():
        photo = ctx.localized(gr.Image, {"label": "segment.photo"}, format="png", interactive=False,
                              buttons=["download", "fullscreen"])
        with gr.Column():
            overlay = ctx.localized(gr.Image, {"label": "segment.overlay"}, format="png", interactive=False,
                                    buttons=["download", "fullscreen"], elem_id="segment-overlay")
            ctx.localized(gr.HTML, {"value": legend})
            opacity = ctx.localized(gr.Slider, {"label": "segment.opacity"}, minimum=0, maximum=1, value=0.5,
                                    step=0.05)
    shares = gr.Markdown(text("segment.no_analysis"))
    with gr.Row():
        maps = [ctx.localized(gr.Image, {"label": partial(probability_label, name)}, format="png", interactive=False,
                              height=260, buttons=["download", "fullscreen"]) for name in CLASS_NAMES]
    guess = ctx.localized(gr.Label, {"label": "segment.guess"}, num_top_classes=5, visible=False)
    guess_note = gr.Markdown()

    def draw_overlay(key: AnalysisKey | None, alpha: float, lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return None
        mask = overlay_mask(analysis.photo, analysis.mask_at_photo_size(), alpha, analysis.probs.shape[0])
        return str(save_pngs({"segment-mask": mask}, compress_level=FAST)[0])

    def refresh(key: AnalysisKey | None, alpha: float, lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return {photo: None, overlay: None, shares: text("segment.no_analysis", lang), **dict.fromkeys(maps),
                    guess: gr.update(visible=False), guess_note: ""}
        mask = analysis.mask_at_photo_size()
        h, w = mask.shape
        share_text = class_values(class_shares(mask, analysis.probs.shape[0]), lang, ".0%")
        pictures = {"segment-photo": fit_photo(analysis.photo, 1024),
                    "segment-mask": overlay_mask(analysis.photo, mask, alpha, analysis.probs.shape[0]),
                    **{f"segment-probability-{name}": picture
                       for name, picture in probability_maps(analysis.probs, analysis.photo.shape).items()}}
        # PNG files written quickly (downloads.FAST), not arrays that Gradio would encode more slowly.
        photo_file, mask_file, *prob_files = (str(path) for path in save_pngs(pictures, compress_level=FAST))
        prob_files += [None] * (len(maps) - len(prob_files))  # a model with fewer classes leaves slots empty
        if analysis.class_probs is None:
            guess_update, note = gr.update(visible=False), text("segment.no_class_head", lang)
        else:
            guess_update = gr.update(value=top_guesses(analysis.class_probs, analysis.labels), visible=True)
            note = text("segment.class_head", lang)
        return {photo: photo_file, overlay: mask_file,
                shares: text("segment.shares", lang, width=w, height=h, shares=share_text),
                **dict(zip(maps, prob_files)), guess: guess_update, guess_note: note}

    opacity.change(draw_overlay, [ctx.analysis, opacity, ctx.language], overlay)
    return Refresh(refresh, [opacity, ctx.language], [photo, overlay, shares, *maps, guess, guess_note])
