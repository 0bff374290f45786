"""Attention tab: click a patch of the photo and see what every head does with it (brief §2, §5).

All views read the attention weights of the cached forward pass (`ctx.analysis_for(key)`); a
click or a slider never runs the model. The clicked patch lives in this tab's own `gr.State`, so
it survives a change of epoch and lets you watch one patch's attention over training.
"""

import gradio as gr
import torch

from vitviz.attention_maps import (attention_rollout, centre_patch, class_token_attention, click_to_patch,
                                   distance_figure, fit_photo, fit_size,
                                   mean_attention_distance, normalise_maps, overlay, patch_attention, patch_slice,
                                   photo_with_patch, tile, uniform_attention_distance)
from vitviz.checkpoint import CheckpointError
from vitviz.inference import Analysis
from vitviz.ui.common import AnalysisKey, Context, Refresh

PHOTO_SIDE = 512  # the clickable photo and the rollout are shown at most this large
HEAD_SIDE = 320  # one map of the per-head figure
THUMB_SIDE = 112  # one map of the layers × heads overview
NO_PHOTO = "Upload or pick a photo first."
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]

INTRO = """\
Click a patch of the photo to see, in every head of the chosen layer, how that patch's token
mixes information with the other patches. **Attention maps are not explanations by themselves:**
they show where information is *read from* in one layer, not why the model predicted a pixel,
and the residual path and the MLPs carry much of the computation too."""

FORMULAS = r"""
Each head $h$ turns the tokens into queries $q$, keys $k$ and values $v$ of width $D_h = D / \text{heads}$:
$$A = \mathrm{softmax}\!\left(\frac{q\,k^\top}{\sqrt{D_h}}\right), \qquad \text{output} = A\,v$$
Row $i$ of $A$ (the **query** direction) is what token $i$ reads; column $j$ (the **key** direction)
is how much every token reads from token $j$. Attention rollout follows the information through all
$L$ layers, counting the skip connection as half of each layer:
$$R = \mathrm{norm}\!\left(0.5\,\bar A_L + 0.5\,I\right) \cdots \mathrm{norm}\!\left(0.5\,\bar A_1 + 0.5\,I\right)$$
where $\bar A_l$ is layer $l$'s attention averaged over heads and norm makes every row sum to 1.
Mean attention distance of a head, over the $N$ query patches with centres $c_i$ (in pixels):
$$d = \frac{1}{N} \sum_{i} \sum_{j} A_{ij}\, \lVert c_i - c_j \rVert$$"""

HEADS_TEXT = """\
**Every head of one layer.** Each map is one head's attention for the outlined patch, laid over
the photo at the model's patch resolution (bright = more attention). In the *query* direction a
map is the patch's row of the attention matrix (what it reads); in the *key* direction it is the
patch's column (which patches read from it). Different heads often look at different things:
some stay near the patch, others spread over the whole pet or the background."""

OVERVIEW_TEXT = """\
**All layers × all heads** for the same patch (rows: layers 1 → L, columns: heads). Early layers
tend to be local, later ones more global; with the *global* colour scale you can also see which
heads concentrate their attention and which spread it thinly."""

ROLLOUT_TEXT = """\
**Attention rollout** multiplies the head-averaged attention of all layers, each mixed half and
half with the identity for the skip connection. *Query*: how much the patch's final token draws on
each input patch; *key*: how far the outlined patch's input spreads. The patch itself usually
stands out, because every skip connection keeps half of its own token. It is a rough estimate of
information flow that ignores the MLPs and the values."""

CLASS_TEXT = """\
**Class token.** When a model has a class token (used for classifying the whole image), this is
what it attends to in the chosen layer. A segmentation ViT does not need one: it predicts every
patch's piece of the mask from that patch's own token."""

DISTANCE_TEXT = """\
**Mean attention distance** (the ViT paper's Figure 7, right) for this photo: for every head, how
far in pixels of the model input a patch looks on average, weighted by its attention. Low dots are
heads that act locally like a convolution; high dots mix the whole image. Hover a dot to read its
head; the camera button in the chart's toolbar saves it as PNG."""


def build(ctx: Context) -> Refresh:
    if ctx.analysis is None:
        raise ValueError("create the shell's analysis gr.State before building the attention tab")
    gr.Markdown(INTRO)
    with gr.Accordion("The formulas", open=False):
        gr.Markdown(FORMULAS, latex_delimiters=LATEX)
    patch = gr.State(None)  # the clicked patch index, row-major
    with gr.Row():
        with gr.Column(scale=1):
            photo = figure("Photo — click a patch", elem_id="attention-photo")
            status = gr.Markdown(NO_PHOTO, elem_id="attention-status")
            direction = gr.Radio([("query: what this patch attends to", "query"),
                                  ("key: what attends to this patch", "key")], value="query", label="Direction",
                                 elem_id="attention-direction")
            layer = gr.Slider(1, 2, value=1, step=1, label="Layer", elem_id="attention-layer")
            scale = gr.Radio([("local: every map on its own scale", "local"),
                              ("global: one scale for all maps in a figure", "global")],
                             value="local", label="Colour scale")
        with gr.Column(scale=2):
            gr.Markdown(HEADS_TEXT)
            heads = figure("Every head of the chosen layer", elem_id="attention-heads")
    gr.Markdown(OVERVIEW_TEXT)
    overview = figure("Layers × heads")
    with gr.Row():
        with gr.Column():
            gr.Markdown(ROLLOUT_TEXT)
            rollout = figure("Attention rollout")
        with gr.Column():
            gr.Markdown(CLASS_TEXT)
            class_note = gr.Markdown()
            class_map = figure("Class-token attention")
    gr.Markdown(DISTANCE_TEXT)
    distance_plot = gr.Plot(label="Mean attention distance", show_label=False)

    patch_outputs = [patch, photo, status, heads, overview, rollout, class_note, class_map]
    controls = [layer, direction, scale]

    def on_click(key: AnalysisKey | None, layer_: int, direction_: str, scale_: str, evt: gr.SelectData):
        analysis = load_analysis(ctx, key)
        if analysis is None or evt.index is None:
            return [gr.skip()] * len(patch_outputs)
        height, width = fit_size(*analysis.photo.shape[:2], PHOTO_SIDE)
        try:
            clicked = click_to_patch(evt.index[0], evt.index[1], width, height, analysis.grid)
        except ValueError as e:
            gr.Warning(str(e))
            return [gr.skip()] * len(patch_outputs)
        return patch_views(analysis, clicked, layer_, direction_, scale_)

    def on_control(key: AnalysisKey | None, patch_: int | None, layer_: int, direction_: str, scale_: str):
        analysis = load_analysis(ctx, key, warn=False)
        if analysis is None:
            return [gr.skip()] * len(patch_outputs)
        return patch_views(analysis, patch_in_grid(patch_, analysis.grid), layer_, direction_, scale_)

    def refresh(key: AnalysisKey | None, patch_: int | None, layer_: int, direction_: str, scale_: str):
        analysis = load_analysis(ctx, key, warn=False)
        if analysis is None:
            return [None, None, NO_PHOTO, None, None, None, "", None, gr.skip(), None]
        depth = len(analysis.trace.attentions)
        layer_ = min(max(int(layer_), 1), depth)
        distances = mean_attention_distance(analysis.trace.attentions, analysis.grid, analysis.patch_size,
                                            analysis.has_class_token)
        views = patch_views(analysis, patch_in_grid(patch_, analysis.grid), layer_, direction_, scale_)
        # A Gradio slider needs minimum < maximum, so a one-layer model gets a locked 1…2 slider.
        layer_slider = gr.Slider(minimum=1, maximum=max(depth, 2), value=layer_, interactive=depth > 1)
        return [*views, layer_slider, distance_figure(distances)]

    photo.select(on_click, [ctx.analysis, *controls], patch_outputs)
    for control in controls:
        control.change(on_control, [ctx.analysis, patch, *controls], patch_outputs)
    return Refresh(refresh, [patch, *controls], [*patch_outputs, layer, distance_plot])


def patch_views(analysis: Analysis, patch: int, layer: int, direction: str, scale: str) -> list:
    """Everything that depends on the clicked patch, the layer (1-based), direction and colour scale,
    in the order of the tab's patch outputs."""
    attentions, grid, has_cls = analysis.trace.attentions, analysis.grid, analysis.has_class_token
    depth = len(attentions)
    layer = min(max(int(layer), 1), depth)
    photo = fit_photo(analysis.photo, PHOTO_SIDE)

    small = fit_photo(photo, HEAD_SIDE)
    per_head = normalise_maps(patch_attention(attentions, layer - 1, patch, has_cls, direction, grid), scale)
    heads = tile([overlay(small, m, patch) for m in per_head], [f"head {h + 1}" for h in range(len(per_head))],
                 columns=min(4, len(per_head)))

    every_layer = torch.stack([patch_attention(attentions, l, patch, has_cls, direction, grid) for l in range(depth)])
    every_layer = normalise_maps(every_layer, scale)
    thumb = fit_photo(photo, THUMB_SIDE)
    overview = tile([overlay(thumb, m, patch) for m in every_layer.flatten(0, 1)],
                    [f"L{l + 1} H{h + 1}" for l in range(depth) for h in range(every_layer.shape[1])],
                    columns=every_layer.shape[1])

    flow = patch_slice(attention_rollout(attentions), patch, has_cls, direction, grid)
    rollout = overlay(photo, normalise_maps(flow, "local"), patch)

    if has_cls:
        cls_maps = normalise_maps(class_token_attention(attentions, layer - 1, grid), scale)
        class_map = tile([overlay(small, m) for m in cls_maps], [f"head {h + 1}" for h in range(len(cls_maps))],
                         columns=min(4, len(cls_maps)))
        class_note = f"What the class token attends to in layer {layer}."
    else:
        class_map, class_note = None, "This model has **no class token**, so there is no class-token attention to show."

    rows, cols = grid
    row, col = divmod(patch, cols)
    reads = "what it attends to" if direction == "query" else "what attends to it"
    status = (f"Patch **{patch}**: row {row + 1}, column {col + 1} of the {rows}×{cols} grid · {reads} · "
              f"layer {layer} of {depth} · a head attending evenly everywhere would score "
              f"{uniform_attention_distance(grid, analysis.patch_size):.0f} px in the distance chart.")
    # A model without a class token has nothing to draw there: hide the box rather than leave it empty.
    return [patch, photo_with_patch(photo, grid, patch), status, heads, overview, rollout, class_note,
            gr.Image(value=class_map, visible=has_cls)]


def figure(label: str, elem_id: str | None = None) -> gr.Image:
    """A picture the user can download as PNG or enlarge, but not edit. The label names it for
    screen readers and the API but is not shown: Gradio would draw it over the picture's corner."""
    return gr.Image(label=label, show_label=False, interactive=False, format="png",
                    buttons=["download", "fullscreen"], elem_id=elem_id)


def load_analysis(ctx: Context, key: AnalysisKey | None, warn: bool = True) -> Analysis | None:
    """The cached analysis of the current photo, or None (with a message) when there is none."""
    if key is None:
        if warn:
            gr.Warning(NO_PHOTO)
        return None
    try:
        return ctx.analysis_for(key)
    except CheckpointError as e:
        raise gr.Error(str(e)) from None


def patch_in_grid(patch: int | None, grid: tuple[int, int]) -> int:
    """The kept patch when it fits the grid (a new epoch keeps the click), else the centre patch."""
    return patch if patch is not None and 0 <= patch < grid[0] * grid[1] else centre_patch(grid)
