"""The Attention tab: what a clicked patch attends to, layer by layer and head by head (brief §2, §5).

Everything here reads the attention weights of one traced forward pass
(`Analysis.trace.attentions`): one (1, heads, T, T) tensor per layer, each row a softmax that sums
to 1. T is the number of patch tokens N, plus one class token at index 0 when the model has one.
Nothing assumes a class token or a square grid: the grid is passed in or derived from T.

`attention_pictures` draws one view's pictures: those weights sliced and drawn over the photo
(`vitviz.views.pictures`). On screen the browser draws the same pictures from the same weights
(`vitviz.views.attention_browser`), so a click costs the server nothing; the server draws them for
the PNG files the tab saves. The photo at each view size and the rollout matrix do not depend on
the click and are kept on the `Analysis`; the mean attention distance per head is the tab's chart
(`distance_figure`).
"""

from __future__ import annotations  # `Analysis` is named for readers only: inference uses the rollout

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from vitviz.app.i18n import DEFAULT, text
from vitviz.views.pictures import overlay, overlays, tile

if TYPE_CHECKING:
    from vitviz.app.inference import Analysis

Direction = Literal["query", "key"]
Scale = Literal["local", "global"]

PHOTO_SIDE = 512  # the clickable photo and the rollout are shown at most this large
HEAD_SIDE = 320  # one map of the per-head figure
THUMB_SIDE = 112  # one map of the layers × heads overview
HEAD_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def token_grid(num_tokens: int, has_class_token: bool, grid: tuple[int, int] | None = None) -> tuple[int, int]:
    """(rows, cols) of the patch tokens among `num_tokens`; a square grid when `grid` is None."""
    patches = num_tokens - int(has_class_token)
    if grid is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise ValueError(f"{patches} patch tokens do not form a square grid: pass grid=(rows, cols)")
        return side, side
    rows, cols = grid
    if rows * cols != patches:
        raise ValueError(f"grid {rows}x{cols} has {rows * cols} patches but the attention has {patches} patch tokens")
    return rows, cols


def per_head(weights: torch.Tensor) -> torch.Tensor:
    """(1, heads, T, T) as traced, or already (heads, T, T) → (heads, T, T)."""
    if weights.dim() == 4 and weights.shape[0] == 1:
        return weights[0]
    if weights.dim() == 3:
        return weights
    raise ValueError(f"expected attention of shape (1, heads, T, T) or (heads, T, T), got {tuple(weights.shape)}")


def layer_weights(attentions: Sequence[torch.Tensor], layer: int) -> torch.Tensor:
    """(heads, T, T) of `layer`, counted from 0."""
    if not 0 <= layer < len(attentions):
        raise ValueError(f"layer {layer} does not exist: the model has layers 0 to {len(attentions) - 1}")
    return per_head(attentions[layer])


def patch_slice(weights: torch.Tensor, patch: int, has_class_token: bool, direction: Direction = "query",
                grid: tuple[int, int] | None = None) -> torch.Tensor:
    """One patch's row or column of a (..., T, T) matrix, restricted to patch tokens → (..., rows, cols).

    "query": the patch's row, what it attends to (sums to 1 with the class token).
    "key": the patch's column, how much every patch attends to it.
    """
    rows, cols = token_grid(weights.shape[-1], has_class_token, grid)
    if not 0 <= patch < rows * cols:
        raise ValueError(f"patch {patch} is outside the {rows}x{cols} grid")
    first = int(has_class_token)  # index of the first patch token
    token = first + patch
    if direction == "query":
        line = weights[..., token, first:]
    elif direction == "key":
        line = weights[..., first:, token]
    else:
        raise ValueError(f"direction must be 'query' or 'key', got {direction!r}")
    return line.reshape(*line.shape[:-1], rows, cols)


def patch_attention(attentions: Sequence[torch.Tensor], layer: int, patch: int, has_class_token: bool,
                    direction: Direction = "query", grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(heads, rows, cols): the clicked patch's attention in every head of one layer."""
    return patch_slice(layer_weights(attentions, layer), patch, has_class_token, direction, grid)


def class_token_attention(attentions: Sequence[torch.Tensor], layer: int,
                          grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(heads, rows, cols): what the class token (index 0) attends to. Only for models that have one."""
    weights = layer_weights(attentions, layer)
    rows, cols = token_grid(weights.shape[-1], True, grid)
    return weights[:, 0, 1:].reshape(-1, rows, cols)


def attention_rollout(attentions: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """(T, T) attention rollout (Abnar & Zuidema 2020): how much each output token draws on each input token.

    Per layer: average the heads; with `residual`, add the identity for the skip connection and
    renormalise the rows, i.e. 0.5·A + 0.5·I; then R = A_L · … · A_1. Rows of R sum to 1.
    """
    if not attentions:
        raise ValueError("no attention layers to roll out")
    rollout = None
    for weights in attentions:
        mixing = per_head(weights).double().mean(0)
        if residual:
            mixing = mixing + torch.eye(mixing.shape[-1], dtype=mixing.dtype)
            mixing = mixing / mixing.sum(-1, keepdim=True)
        rollout = mixing if rollout is None else mixing @ rollout
    return rollout.float()


def patch_distances(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """(N, N) distances in pixels of the model input between the centres of every two patches."""
    rows, cols = grid
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = (torch.stack([ys.flatten(), xs.flatten()], dim=1).double() + 0.5) * patch_size
    return (centres[:, None, :] - centres[None, :, :]).norm(dim=-1)


def mean_attention_distance(attentions: Sequence[torch.Tensor], grid: tuple[int, int], patch_size: int,
                            has_class_token: bool) -> torch.Tensor:
    """(layers, heads): the ViT paper's Figure 7 (right) for one image, in pixels of the model input.

    For each query patch, the attention-weighted mean distance to the key patches (the class token
    left out and the weights renormalised over patches), averaged over all query patches.
    Small: the head looks locally, like a convolution; large: it mixes the whole image.
    """
    if not attentions:
        raise ValueError("no attention layers to measure")
    distances = patch_distances(grid, patch_size)
    first = int(has_class_token)
    per_layer = []
    for weights in attentions:
        heads = per_head(weights)
        token_grid(heads.shape[-1], has_class_token, grid)  # checks that the grid fits
        patch_to_patch = heads[:, first:, first:].double()
        patch_to_patch = patch_to_patch / patch_to_patch.sum(-1, keepdim=True)
        per_layer.append((patch_to_patch * distances).sum(-1).mean(-1))
    return torch.stack(per_layer).float()


def uniform_attention_distance(grid: tuple[int, int], patch_size: int) -> float:
    """Mean attention distance of a head that attends equally to every patch: a reference level."""
    return float(patch_distances(grid, patch_size).mean())


# A head is "local" when its mean attention distance is under this share of uniform attention's.
LOCAL_BELOW = 0.75


def locality(distances: torch.Tensor, uniform: float) -> tuple[str, dict[str, float]]:
    """What the (layers, heads) mean attention distances of one photo say about locality: the
    kind of the text "attention.locality_<kind>" that describes them ("none": no head is local;
    "early": some are, and layer 1 looks nearer than the last layer; "elsewhere": some are, but
    layer 1 does not look nearer), and the numbers that text quotes."""
    nearest = int(distances.argmin())
    layer, head = divmod(nearest, distances.shape[1])
    first, last = distances[0].mean().item(), distances[-1].mean().item()
    numbers = dict(lo=distances.min().item(), hi=distances.max().item(), uniform=uniform, first=first, last=last,
                   depth=distances.shape[0], layer=layer + 1, head=head + 1, nearest=distances.min().item())
    if distances.min().item() >= LOCAL_BELOW * uniform:
        return "none", numbers
    return ("early" if first < last else "elsewhere"), numbers


def normalise_maps(maps: torch.Tensor, scale: Scale) -> torch.Tensor:
    """Non-negative maps (..., rows, cols) → [0, 1] for display, zero staying zero.

    "local": each map by its own maximum, to see where every head looks even when its weights
    are small. "global": all maps by one shared maximum, to compare how strongly they focus.
    """
    if scale == "local":
        peak = maps.amax(dim=(-2, -1), keepdim=True)
    elif scale == "global":
        peak = maps.max()
    else:
        raise ValueError(f"colour scale must be 'local' or 'global', got {scale!r}")
    return maps / peak.clamp_min(1e-12)


def distance_figure(distances: torch.Tensor, lang: str = DEFAULT) -> go.Figure:
    """Plotly scatter of mean attention distance: x = layer, y = pixels, one dot per head."""
    layers, heads = distances.shape
    figure = go.Figure()
    for head in range(heads):
        figure.add_trace(go.Scatter(
            x=list(range(1, layers + 1)), y=distances[:, head].tolist(), mode="markers",
            name=text("attention.chart.head", lang, head=head + 1),
            marker=dict(size=10, color="rgb({},{},{})".format(*HEAD_COLOURS[head % len(HEAD_COLOURS)])),
            hovertemplate=text("attention.chart.hover", lang, head=head + 1) + "<extra></extra>"))
    figure.update_layout(xaxis_title=text("attention.chart.layer", lang),
                         yaxis_title=text("attention.chart.distance", lang),
                         xaxis=dict(tickmode="linear", dtick=1), yaxis=dict(rangemode="tozero"),
                         margin=dict(l=60, r=20, t=30, b=50), height=380)
    return figure



@dataclass
class AttentionPictures:
    photo: np.ndarray  # the photo with its patch grid, the clicked patch outlined
    heads: np.ndarray  # every head of the chosen layer for the clicked patch
    overview: np.ndarray  # layers × heads for the clicked patch
    rollout: np.ndarray  # attention rollout through all layers
    class_token: np.ndarray | None  # what the class token attends to, when the model has one

    def named(self, stem: str) -> dict[str, np.ndarray]:
        """The pictures by file-name stem, e.g. for `vitviz.downloads.save_pngs`."""
        pictures = {"photo": self.photo, "heads": self.heads, "layers-x-heads": self.overview,
                    "rollout": self.rollout, "class-token": self.class_token}
        return {f"{stem}-{name}": picture for name, picture in pictures.items() if picture is not None}


def attention_pictures(analysis: Analysis, patch: int, layer: int, direction: Direction,
                       scale: Scale) -> AttentionPictures:
    """The pictures for `patch` (row-major) in `layer` (counted from 1, clamped to the model)."""
    attentions, grid, has_cls = analysis.trace.attentions, analysis.grid, analysis.has_class_token
    depth = len(attentions)
    layer = min(max(int(layer), 1), depth)
    photo, small, thumb = (analysis.photo_fitted(side) for side in (PHOTO_SIDE, HEAD_SIDE, THUMB_SIDE))

    raw = torch.stack([patch_attention(attentions, l, patch, has_cls, direction, grid) for l in range(depth)])
    per_head = normalise_maps(raw[layer - 1], scale)
    # Codes, not words, inside the pictures ("H3" = head 3, "L2 H3" = layer 2, head 3): the text
    # beside the pictures, in the user's language, says what they stand for.
    heads = tile(overlays(small, per_head, patch), [f"H{h + 1}" for h in range(len(per_head))],
                 columns=min(4, len(per_head)))

    every_layer = normalise_maps(raw, scale)
    overview = tile(overlays(thumb, every_layer.flatten(0, 1), patch),
                    [f"L{l + 1} H{h + 1}" for l in range(depth) for h in range(every_layer.shape[1])],
                    columns=every_layer.shape[1])

    flow = patch_slice(analysis.rollout, patch, has_cls, direction, grid)
    rollout = overlay(photo, normalise_maps(flow, "local"), patch)

    class_map = None
    if has_cls:
        cls_maps = normalise_maps(class_token_attention(attentions, layer - 1, grid), scale)
        class_map = tile(overlays(small, cls_maps), [f"H{h + 1}" for h in range(len(cls_maps))],
                         columns=min(4, len(cls_maps)))
    return AttentionPictures(analysis.click_target(PHOTO_SIDE, patch), heads, overview, rollout, class_map)
