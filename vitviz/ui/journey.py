"""Tensor journey tab: the 8 steps of one real forward pass of the current photo (brief §1), a
clickable patch grid that follows one patch through every stage, a "what if" shape table, and
the linear-vs-Conv2d patch embedding check (brief §3)."""

from typing import Any

import gradio as gr

from vitviz.app.downloads import shared_png
from vitviz.app.i18n import DEFAULT, text
from vitviz.app.inference import Analysis
from vitviz.model.posembed import KINDS
from vitviz.model.vit import ViTConfig
from vitviz.training.presets import preset
from vitviz.ui.context import AnalysisKey, Context
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import LATEX, about, clicked_point, load_analysis, number, patch_at
from vitviz.views.journey import (WHAT_IF_LIMITS, comparison_embed, journey_pictures, journey_rows,
                                  linear_conv_difference, model_summary, what_if)

DISPLAY_SIDE = 640  # the clickable photo keeps its aspect ratio, its longer side at most this


def table_headers(lang: str) -> list[str]:
    return [text(f"journey.header_{name}", lang) for name in ("step", "stage", "shape", "parameters")]


def patch_text(analysis: Analysis, index: int, lang: str = DEFAULT) -> str:
    rows, cols = analysis.grid
    row, col = divmod(index, cols)
    p = analysis.patch_size
    token = (text("journey.token_after_class", lang, token=index + 1) if analysis.has_class_token else
             text("journey.token", lang, token=index))
    return text("journey.patch", lang, index=index, row=row + 1, col=col + 1, rows=rows, cols=cols, x0=col * p,
                x1=(col + 1) * p - 1, y0=row * p, y1=(row + 1) * p - 1, token=token)


def conv_text(ctx: Context, key: AnalysisKey, analysis: Analysis, lang: str = DEFAULT) -> str:
    model = ctx.cache.model(key.checkpoint, key.epoch)
    embed = comparison_embed(model)
    images = analysis.trace.stage("input BatchNorm").tensor
    difference = linear_conv_difference(embed, images)
    p, d = embed.patch_size, embed.proj.out_features
    c = embed.proj.in_features // (p * p)
    source = (text("journey.conv_own", lang) if embed is model.patch_embed else
              text("journey.conv_fresh", lang, kind=model.cfg.patch_embed))
    n = analysis.grid[0] * analysis.grid[1]
    return text("journey.conv_result", lang, source=source, ppc=p * p * c, dim=d, channels=c, patch=p,
                difference=difference, patches=n)


def show_what_if(settings: dict, image_size: float, patch_size: float, embed_dim: float, num_heads: float,
                 depth: float, class_token: bool, pos_embed: str, lang: str = DEFAULT) -> tuple[str, dict]:
    """The what-if summary and shape table, or a one-line reason why these settings make no model.
    An empty field is such a reason; a value that no number field sends (an API caller's "xyz"
    or [1]) gets a one-line gr.Error instead."""
    for name, value in zip(WHAT_IF_LIMITS, (image_size, patch_size, embed_dim, num_heads, depth)):
        if value is not None:
            number(value, text(f"journey.{name}", lang), lang)
    try:
        cfg, trace, total = what_if(ViTConfig.from_dict(settings), image_size, patch_size, embed_dim, num_heads,
                                    depth, class_token, pos_embed, lang)
    except ValueError as e:
        return text("journey.what_if_refused", lang, reason=e), gr.update(value=None, headers=table_headers(lang))
    return model_summary(cfg, total, lang), gr.update(value=journey_rows(trace, total, lang),
                                                      headers=table_headers(lang))


def load_settings(settings: dict) -> tuple:
    """A config dict → (the dict, then the value of each what-if input)."""
    cfg = ViTConfig.from_dict(settings)
    return settings, cfg.image_size, cfg.patch_size, cfg.embed_dim, cfg.num_heads, cfg.depth, cfg.class_token, cfg.pos_embed


def seed_settings() -> tuple:
    return load_settings(preset("seed")[0].to_dict())


def build(ctx: Context) -> list[Refresh]:
    about(ctx, "journey.intro")
    with gr.Row():
        with gr.Column():
            grid_photo = ctx.localized(gr.Image, {"label": "journey.grid_photo"}, format="png", interactive=False,
                                       buttons=["download", "fullscreen"])
            patch_info = gr.Markdown(elem_id="journey-patch")
        with gr.Column():
            ctx.localized(gr.Markdown, {"value": "journey.formulas"}, latex_delimiters=LATEX)
            summary = gr.Markdown(latex_delimiters=LATEX)
    table = ctx.localized(gr.Dataframe, {"label": "journey.table"}, headers=table_headers(DEFAULT), interactive=False,
                          wrap=True, max_height=1200)
    pictures = ctx.localized(gr.Gallery, {"label": "journey.pictures"}, columns=3, height=1400, format="png",
                             object_fit="contain", buttons=["download", "fullscreen"], elem_classes="full-captions")

    with ctx.localized(gr.Accordion, {"label": "journey.what_if"}, open=False):
        settings, size0, patch0, width0, heads0, depth0, cls0, pos0 = seed_settings()
        base = gr.State(settings)  # the fields that the inputs below do not set
        with gr.Row():
            image_size = ctx.localized(gr.Number, {"label": "journey.image_size"}, value=size0)
            patch_size = ctx.localized(gr.Number, {"label": "journey.patch_size"}, value=patch0)
            embed_dim = ctx.localized(gr.Number, {"label": "journey.embed_dim"}, value=width0)
            num_heads = ctx.localized(gr.Number, {"label": "journey.num_heads"}, value=heads0)
            depth = ctx.localized(gr.Number, {"label": "journey.depth"}, value=depth0)
        with gr.Row():
            class_token = ctx.localized(gr.Checkbox, {"label": "journey.class_token"}, value=cls0)
            pos_embed = ctx.localized(gr.Dropdown, {"label": "journey.pos_embed"}, choices=list(KINDS), value=pos0)
            from_seed = ctx.localized(gr.Button, {"value": "journey.from_seed"})
            from_checkpoint = ctx.localized(gr.Button, {"value": "journey.from_checkpoint"})
        first_summary, first_table = show_what_if(*seed_settings())
        what_if_summary = gr.Markdown(first_summary, latex_delimiters=LATEX)
        what_if_table = gr.Dataframe(first_table["value"], headers=first_table["headers"], interactive=False,
                                     wrap=True, max_height=1200)

    with ctx.localized(gr.Accordion, {"label": "journey.conv"}, open=False):
        ctx.localized(gr.Markdown, {"value": "journey.conv_intro"})
        conv_result = gr.Markdown()

    def refresh(key: AnalysisKey | None, point: Any, lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            return {grid_photo: None, patch_info: "", summary: "",
                    table: gr.update(value=None, headers=table_headers(lang)), pictures: None, conv_result: ""}
        patch = patch_at(point, analysis.grid)  # the selected point, on this model's grid
        model = ctx.cache.model(key.checkpoint, key.epoch)
        table_update = gr.update(value=journey_rows(analysis.trace, model.num_params(), lang),
                                 headers=table_headers(lang))
        return {**patch_views(analysis, patch, lang), summary: model_summary(model.cfg, model.num_params(), lang),
                table: table_update, conv_result: conv_text(ctx, key, analysis, lang)}

    def select_patch(key: AnalysisKey | None, evt: gr.SelectData, lang: str = DEFAULT):
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        if analysis is None:
            gr.Warning(text("journey.no_photo", lang))
            return gr.skip()
        point = clicked_point(evt.index, analysis.clickable_size(DISPLAY_SIDE), lang)
        if point is None:
            return gr.skip()
        return {ctx.point: point, **patch_views(analysis, patch_at(point, analysis.grid), lang)}

    def patch_views(analysis: Analysis, patch: int, lang: str) -> dict:
        """The outputs that follow the clicked patch."""
        # The stage pictures as PNG files kept by content: a language switch or a second visit
        # sends the same files again instead of encoding them again.
        stages = [(str(shared_png(f"journey-{i}", picture)), caption)
                  for i, (picture, caption) in enumerate(journey_pictures(analysis, patch, lang))]
        return {grid_photo: analysis.click_target(DISPLAY_SIDE, patch),
                patch_info: patch_text(analysis, patch, lang), pictures: stages}

    def checkpoint_settings(key: AnalysisKey | None, lang: str = DEFAULT):
        if key is None:
            gr.Warning(text("journey.load_first", lang))
            return [gr.skip()] * 8
        return load_settings(ctx.cache.model(key.checkpoint, key.epoch).cfg.to_dict())

    def draw_what_if(key: AnalysisKey | None, *settings_and_lang) -> dict:
        what_if_text, table_update = show_what_if(*settings_and_lang)
        return {what_if_summary: what_if_text, what_if_table: table_update}

    what_if_inputs = [image_size, patch_size, embed_dim, num_heads, depth, class_token, pos_embed]
    what_if_io = ([base, *what_if_inputs, ctx.language], [what_if_summary, what_if_table])
    settings_outputs = [base, *what_if_inputs]
    gr.on([component.change for component in what_if_inputs], show_what_if, *what_if_io, trigger_mode="always_last")
    from_seed.click(seed_settings, None, settings_outputs).then(show_what_if, *what_if_io)
    from_checkpoint.click(checkpoint_settings, [ctx.analysis, ctx.language], settings_outputs).then(
        show_what_if, *what_if_io)
    grid_photo.select(select_patch, [ctx.analysis, ctx.language],
                      [ctx.point, grid_photo, patch_info, pictures])
    return [Refresh(refresh, [ctx.point, ctx.language], [grid_photo, patch_info, summary, table, pictures, conv_result]),
            # The what-if does not depend on the photo: it is redrawn only for a new language.
            Refresh(draw_what_if, *what_if_io, depends_on=lambda key: None)]

