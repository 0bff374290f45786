"""Tensor journey tab: the 8 steps of one real forward pass of the current photo (brief §1), a
clickable patch grid that follows one patch through every stage, a "what if" shape table, and
the linear-vs-Conv2d patch embedding check (brief §3)."""

import gradio as gr
import numpy as np

from vitviz.attention_maps import centre_patch, click_to_patch, fit_photo, photo_with_patch
from vitviz.inference import Analysis
from vitviz.journey import (comparison_embed, journey_pictures, journey_rows, linear_conv_difference,
                            model_summary, what_if)
from vitviz.model import ViTConfig
from vitviz.posembed import KINDS
from vitviz.presets import preset
from vitviz.ui.common import AnalysisKey, Context, Refresh

FORMULAS = r"""
**The equations behind the table**

$$z_0 = [\,x_\mathrm{class};\; x_p^1 E;\; x_p^2 E;\; \dots;\; x_p^N E\,] + E_\mathrm{pos}$$

$$z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}, \qquad z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell, \qquad \ell = 1 \dots L$$

$$N = \frac{HW}{P^2}, \qquad \mathrm{FLOPs} \approx L\,(24\,N D^2 + 4\,N^2 D)$$

$x_p^i$ is patch $i$ flattened to $P \cdot P \cdot C$ values, $E$ the patch embedding
($P^2C \times D$), $E_\mathrm{pos}$ the position embedding. The class token $x_\mathrm{class}$ is
optional: a segmentation model reads every patch token, not one summary token.
"""

INTRO = """
One real forward pass of your photo, stage by stage: the **table** gives every tensor's shape with
its axis names (B batch, C channels, N patches, T tokens, D embedding width, PPC = P·P·C values per
patch) and the parameters of the layer that made it; the **pictures** show the tensors themselves
(token matrices: one row per patch, blue negative, red positive). **Click the photo** to follow one
patch: its tile, and its row in every token matrix, are highlighted.
"""

CONV_INTRO = """
nn.Conv2d with kernel = stride = P cuts the image into non-overlapping P×P patches and projects
each to D numbers in one call: the same map as "patchify + nn.Linear", with the linear weight
(D, P·P·C) reshaped into the kernel (D, C, P, P). Below, both run on this photo's normalised input.
"""

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
TABLE_HEADERS = ["step", "stage", "shape (axis = size)", "parameters"]
NO_PHOTO = "Load a photo first: there is no patch to select yet."


def patch_text(analysis: Analysis, index: int) -> str:
    rows, cols = analysis.grid
    row, col = divmod(index, cols)
    p = analysis.patch_size
    token = f"token {index + 1} (after the class token)" if analysis.has_class_token else f"token {index}"
    return (f"**Patch {index}**: row {row + 1}, column {col + 1} of the {rows}×{cols} grid, model-input pixels "
            f"x {col * p}–{(col + 1) * p - 1}, y {row * p}–{(row + 1) * p - 1}; it is {token} in the encoder. "
            f"Its tile and its row are outlined in red below. Click another patch to follow it.")


def conv_text(ctx: Context, key: AnalysisKey, analysis: Analysis) -> str:
    model = ctx.cache.model(key.checkpoint, key.epoch)
    embed = comparison_embed(model)
    images = analysis.trace.stage("input BatchNorm").tensor
    difference = linear_conv_difference(embed, images)
    p, d = embed.patch_size, embed.proj.out_features
    c = embed.proj.in_features // (p * p)
    source = ("this checkpoint's own patch embedding" if embed is model.patch_embed else
              f"a fresh linear embedding of the same size (this checkpoint tokenizes with '{model.cfg.patch_embed}')")
    n = analysis.grid[0] * analysis.grid[1]
    return (f"Weights: {source}. Linear: patchify → nn.Linear({p * p * c} → {d}); Conv2d({c}, {d}, "
            f"kernel={p}, stride={p}) with the copied weights. **Max |linear − conv| = {difference:.2e}** "
            f"over {n}×{d} token values: the same tokens, up to float32 rounding.")


def show_what_if(settings: dict, *values) -> tuple[str, list[list[str]] | None]:
    """The what-if summary and shape table, or a one-line reason why these settings make no model."""
    try:
        cfg, trace, total = what_if(ViTConfig.from_dict(settings), *values)
    except ValueError as e:
        return f"⚠ {e}", None
    return model_summary(cfg, total), journey_rows(trace, total)


def load_settings(settings: dict) -> tuple:
    """A config dict → (the dict, then the value of each what-if input)."""
    cfg = ViTConfig.from_dict(settings)
    return settings, cfg.image_size, cfg.patch_size, cfg.embed_dim, cfg.num_heads, cfg.depth, cfg.class_token, cfg.pos_embed


def seed_settings() -> tuple:
    return load_settings(preset("seed")[0].to_dict())


def build(ctx: Context) -> Refresh:
    gr.Markdown(INTRO)
    selected = gr.State(None)  # the clicked patch index, or None
    with gr.Row():
        with gr.Column():
            grid_photo = gr.Image(label="Your photo on the model's patch grid: click a patch", format="png",
                                  interactive=False, buttons=["download", "fullscreen"])
            patch_info = gr.Markdown()
        with gr.Column():
            gr.Markdown(FORMULAS, latex_delimiters=LATEX)
            summary = gr.Markdown(latex_delimiters=LATEX)
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Shapes of this forward pass", wrap=True,
                         max_height=1200)
    pictures = gr.Gallery(label="Every stage's tensor (click one to enlarge and read its caption)", columns=3,
                          height=1400, format="png", object_fit="contain", buttons=["download", "fullscreen"])

    with gr.Accordion("What if? The shapes of another configuration (no weights, computed at once)", open=False):
        settings, size0, patch0, width0, heads0, depth0, cls0, pos0 = seed_settings()
        base = gr.State(settings)  # the fields that the inputs below do not set
        with gr.Row():
            image_size = gr.Number(label="image size (px)", value=size0)
            patch_size = gr.Number(label="patch size P", value=patch0)
            embed_dim = gr.Number(label="embedding width D", value=width0)
            num_heads = gr.Number(label="heads", value=heads0)
            depth = gr.Number(label="depth L (blocks)", value=depth0)
        with gr.Row():
            class_token = gr.Checkbox(label="class token", value=cls0)
            pos_embed = gr.Dropdown(list(KINDS), value=pos0, label="position embedding")
            from_seed = gr.Button("The article's model (86.28M)")
            from_checkpoint = gr.Button("This checkpoint's settings")
        first_summary, first_rows = show_what_if(*seed_settings())
        what_if_summary = gr.Markdown(first_summary, latex_delimiters=LATEX)
        what_if_table = gr.Dataframe(first_rows, headers=TABLE_HEADERS, interactive=False, wrap=True, max_height=1200)

    with gr.Accordion("Linear vs Conv2d patch embedding", open=False):
        gr.Markdown(CONV_INTRO)
        conv_result = gr.Markdown()

    def refresh(key: AnalysisKey | None, patch: int | None):
        analysis = ctx.analysis_for(key)
        if analysis is None:
            return None, None, "", "", None, None, ""
        rows, cols = analysis.grid
        if patch is None or patch >= rows * cols:  # a new grid may not have the last click's patch
            patch = centre_patch(analysis.grid)
        model = ctx.cache.model(key.checkpoint, key.epoch)
        return (patch, photo_with_patch(display_photo(analysis), analysis.grid, patch), patch_text(analysis, patch),
                model_summary(model.cfg, model.num_params()), journey_rows(analysis.trace, model.num_params()),
                journey_pictures(analysis, patch), conv_text(ctx, key, analysis))

    def select_patch(key: AnalysisKey | None, shown: np.ndarray | None, evt: gr.SelectData):
        analysis = ctx.analysis_for(key)
        if analysis is None or shown is None:
            gr.Warning(NO_PHOTO)
            return [gr.skip()] * 4
        height, width = shown.shape[:2]  # the picture as displayed, whatever the photo's own size
        try:
            patch = click_to_patch(*evt.index, width, height, analysis.grid)
        except (TypeError, ValueError):  # a click that Gradio reports outside the picture
            return [gr.skip()] * 4
        return (patch, photo_with_patch(display_photo(analysis), analysis.grid, patch),
                patch_text(analysis, patch), journey_pictures(analysis, patch))

    def checkpoint_settings(key: AnalysisKey | None):
        if key is None:
            gr.Warning("Load a photo and a checkpoint first.")
            return [gr.skip()] * 8
        return load_settings(ctx.cache.model(key.checkpoint, key.epoch).cfg.to_dict())

    what_if_inputs = [image_size, patch_size, embed_dim, num_heads, depth, class_token, pos_embed]
    settings_outputs = [base, *what_if_inputs]
    for component in what_if_inputs:
        component.change(show_what_if, [base, *what_if_inputs], [what_if_summary, what_if_table])
    from_seed.click(seed_settings, None, settings_outputs).then(
        show_what_if, [base, *what_if_inputs], [what_if_summary, what_if_table])
    from_checkpoint.click(checkpoint_settings, ctx.analysis, settings_outputs).then(
        show_what_if, [base, *what_if_inputs], [what_if_summary, what_if_table])
    grid_photo.select(select_patch, [ctx.analysis, grid_photo], [selected, grid_photo, patch_info, pictures])
    return Refresh(refresh, [selected], [selected, grid_photo, patch_info, summary, table, pictures, conv_result])


def display_photo(analysis: Analysis) -> np.ndarray:
    """The clickable photo: its own aspect ratio, longer side at most 640 px."""
    return fit_photo(analysis.photo, 640)
