"""Segment tab: the predicted mask over the photo (and, on demand, where the model is unsure), what
the checkpoint's metrics say to expect of it, the per-class probabilities, and the class-token
head's species/breed guess when the checkpoint has one."""

from functools import partial
from typing import Any

import gradio as gr
import numpy as np

from vitviz.app.downloads import FAST, KeptPngs, save_pngs
from vitviz.app.i18n import DEFAULT, class_name, class_values, text
from vitviz.app.inference import Analysis
from vitviz.training.data import CLASS_NAMES
from vitviz.ui.context import AnalysisKey, Context
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import flag, load_analysis, number
from vitviz.views.pictures import fit_photo
from vitviz.views.segment import (UNSURE_BELOW, class_shares, expectations, legend_html, overlay_mask,
                                  probability_maps, top_guesses, unsure_pixels)

DRAWN = KeptPngs()  # the tab's pictures by (analysis key, opacity, unsure marking), shared by all sessions
PICTURE_HEIGHT = 400  # px: the photo and its mask side by side fit the first screen of a 1280×720 projector


def legend(lang: str) -> str:
    """The mask colours' legend, the class names in `lang`."""
    return legend_html(labels=[class_name(name, lang) for name in CLASS_NAMES],
                       unsure=text("segment.unsure", lang, below=UNSURE_BELOW))


def probability_label(name: str, lang: str) -> str:
    return text("segment.probability", lang, name=class_name(name, lang))


def build(ctx: Context) -> Refresh:
    # The photo and its mask first; what they mean, what to expect and the details underneath.
    with gr.Row(equal_height=False):
        photo = ctx.localized(gr.Image, {"label": "segment.photo"}, format="png", interactive=False,
                              height=PICTURE_HEIGHT, buttons=["download", "fullscreen"], elem_id="segment-photo")
        with gr.Column():
            overlay = ctx.localized(gr.Image, {"label": "segment.overlay"}, format="png", interactive=False,
                                    height=PICTURE_HEIGHT, buttons=["download", "fullscreen"],
                                    elem_id="segment-overlay")
            ctx.localized(gr.HTML, {"value": legend})
            with gr.Row():
                opacity = ctx.localized(gr.Slider, {"label": "segment.opacity"}, minimum=0, maximum=1, value=0.5,
                                        step=0.05)
                unsure = ctx.localized(gr.Checkbox, {"label": "segment.show_unsure"}, value=False,
                                       elem_id="segment-unsure")
    shares = gr.Markdown(text("segment.no_analysis"), elem_id="segment-shares")
    expect = gr.Markdown(elem_id="segment-expect")
    with ctx.localized(gr.Accordion, {"label": "segment.how_label"}, open=False):
        ctx.localized(gr.Markdown, {"value": "segment.explanation"})
        with gr.Row():
            maps = [ctx.localized(gr.Image, {"label": partial(probability_label, name)}, format="png",
                                  interactive=False, height=260, buttons=["download", "fullscreen"])
                    for name in CLASS_NAMES]
    guess = ctx.localized(gr.Label, {"label": "segment.guess"}, num_top_classes=5, visible=False)
    guess_note = gr.Markdown()

    def draw_overlay(key: AnalysisKey | None, alpha: Any, show_unsure: Any, lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return None
        picture = overlay_picture(analysis, number(alpha, text("segment.opacity", lang), lang),
                                  flag(show_unsure, text("segment.show_unsure", lang), lang))
        return str(save_pngs({"segment-mask": picture}, compress_level=FAST)[0])

    def refresh(key: AnalysisKey | None, alpha: Any, show_unsure: Any, lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return {photo: None, overlay: None, shares: text("segment.no_analysis", lang), expect: "",
                    **dict.fromkeys(maps), guess: gr.update(visible=False), guess_note: ""}
        alpha = number(alpha, text("segment.opacity", lang), lang)
        show_unsure = flag(show_unsure, text("segment.show_unsure", lang), lang)

        def draw() -> tuple[dict[str, np.ndarray], dict[str, float]]:
            pictures = {"segment-photo": fit_photo(analysis.photo, 1024),
                        "segment-mask": overlay_picture(analysis, alpha, show_unsure),
                        **{f"segment-probability-{name}": picture
                           for name, picture in probability_maps(analysis.probs, analysis.photo.shape).items()}}
            return pictures, class_shares(analysis.mask_at_photo_size(), len(analysis.probs))

        # PNG files written quickly (downloads.FAST), not arrays that Gradio would encode more slowly,
        # and drawn once for the same photo and settings: every page opens on the same example.
        files, shares_ = DRAWN.files((key, alpha, show_unsure), draw)
        photo_file, mask_file, *prob_files = map(str, files)
        prob_files += [None] * (len(maps) - len(prob_files))  # a model with fewer classes leaves slots empty
        h, w = analysis.photo.shape[:2]
        share_text = class_values(shares_, lang, ".0%")
        unsure_share = float(unsure_pixels(analysis.probs).mean())  # at the model's size, where it predicts
        if analysis.class_probs is None:
            guess_update, note = gr.update(visible=False), text("segment.no_class_head", lang)
        else:
            guess_update = gr.update(value=top_guesses(analysis.class_probs, analysis.labels), visible=True)
            note = text("segment.class_head", lang)
        return {photo: photo_file, overlay: mask_file,
                shares: text("segment.shares", lang, width=w, height=h, shares=share_text, unsure=unsure_share,
                             below=UNSURE_BELOW),
                expect: expectation_text(key.checkpoint, lang),
                **dict(zip(maps, prob_files)), guess: guess_update, guess_note: note}

    # One listener for both controls, deferred while it draws: the last setting is the one drawn.
    gr.on([opacity.change, unsure.change], draw_overlay, [ctx.analysis, opacity, unsure, ctx.language], overlay,
          trigger_mode="always_last")
    return Refresh(refresh, [opacity, unsure, ctx.language],
                   [photo, overlay, shares, expect, *maps, guess, guess_note])


def overlay_picture(analysis: Analysis, alpha: float, show_unsure: bool) -> np.ndarray:
    """The mask over the photo at the photo's size, the unsure pixels marked if asked."""
    marked = analysis.unsure_at_photo_size() if show_unsure else None
    return overlay_mask(analysis.photo, analysis.mask_at_photo_size(), alpha, len(analysis.probs), marked)


def expectation_text(folder: str, lang: str) -> str:
    """What the checkpoint's own metrics say to expect of its masks, in `lang`."""
    facts = expectations(folder)
    if facts is None:
        return text("segment.expect_nothing", lang)
    scores = text("segment.expect_scores" if facts["flip"] else "segment.expect_scores_one_pass", lang, **facts)
    if "with_trimap" not in facts:
        return scores
    without = text("segment.expect_without", lang, **facts) if facts["without_trimap"] else ""
    return f"{scores} {text('segment.expect_training', lang, **facts, without=without)}"
