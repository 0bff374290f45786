"""What a clicked patch attends to, layer by layer and head by head (brief §2 and §5).

Everything here reads the attention weights of one traced forward pass
(`Analysis.trace.attentions`): one (1, heads, T, T) tensor per layer, each row a softmax that sums
to 1. T is the number of patch tokens N, plus one class token at index 0 when the model has one.
Nothing assumes a class token or a square grid: the grid is passed in or derived from T.

The second half turns (rows, cols) maps into uint8 RGB pictures: colour maps, the heat map laid
over the photo with the clicked patch outlined, labelled tiles, and a PNG scatter plot.
No Gradio here, so every function can be tested and reused on its own.
"""

import functools
import math
from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw, ImageFont

from vitviz.app.i18n import DEFAULT, text

Direction = Literal["query", "key"]
Scale = Literal["local", "global"]

# ───────────────────────────── patches and clicks ─────────────────────────────


def click_to_patch(x: float, y: float, width: int, height: int, grid: tuple[int, int]) -> int:
    """Row-major index of the patch under a click at (x, y) on an image shown at width×height.

    (x, y) is measured in the displayed image's pixels from its top-left corner, as
    `gr.SelectData.index` reports it. The model sees the photo stretched to a square, so the
    patch grid divides width and height evenly whatever the photo's aspect ratio.
    """
    rows, cols = grid
    if width <= 0 or height <= 0:
        raise ValueError(f"the image has no pixels ({width}x{height})")
    if not (0 <= x <= width and 0 <= y <= height):
        raise ValueError(f"the click at ({x}, {y}) is outside the {width}x{height} image")
    # The far edge (x == width) is still the last column, not a column past the grid.
    col = min(math.floor(x * cols / width), cols - 1)
    row = min(math.floor(y * rows / height), rows - 1)
    return row * cols + col


def centre_patch(grid: tuple[int, int]) -> int:
    """The patch in the middle of the grid: a sensible first patch before anyone clicks."""
    rows, cols = grid
    return (rows // 2) * cols + cols // 2


def patch_box(patch: int, grid: tuple[int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive, of the pixels that `click_to_patch` maps to `patch`."""
    rows, cols = grid
    row, col = divmod(patch, cols)
    x0, x1 = -(-col * width // cols), -(-(col + 1) * width // cols) - 1  # -(-a // b) is ceil(a / b)
    y0, y1 = -(-row * height // rows), -(-(row + 1) * height // rows) - 1
    return x0, y0, x1, y1


# ───────────────────────────── attention slices ─────────────────────────────


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


# ───────────────────────────── pictures ─────────────────────────────

# Colour maps as evenly spaced stops, interpolated linearly (no matplotlib needed).
VIRIDIS = np.array([(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
                    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)], dtype=np.float64)
COOLWARM = np.array([(59, 76, 192), (124, 159, 249), (192, 212, 245), (221, 221, 221), (242, 203, 183),
                     (238, 132, 104), (180, 4, 38)], dtype=np.float64)  # blue < 0 < red, grey at 0
HEAD_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
OUTLINE = (255, 40, 40)


def colourise(values: np.ndarray | torch.Tensor, stops: np.ndarray = VIRIDIS) -> np.ndarray:
    """Values in [0, 1] (any shape) → uint8 RGB (..., 3) along the colour map `stops`."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1) * (len(stops) - 1)
    lower = np.minimum(np.floor(v).astype(int), len(stops) - 2)
    frac = (v - lower)[..., None]
    return np.round(stops[lower] * (1 - frac) + stops[lower + 1] * frac).astype(np.uint8)


def signed_to_unit(values: np.ndarray | torch.Tensor, limit: float) -> np.ndarray:
    """Map [-limit, limit] to [0, 1] so that 0 lands on the middle of a diverging colour map."""
    return (np.asarray(values, dtype=np.float64) / max(limit, 1e-12) + 1) / 2


def upsample_nearest(grid_map: np.ndarray, height: int, width: int, axis: int = 0) -> np.ndarray:
    """(rows, cols, ...) → (height, width, ...): every pixel takes its patch's value, the same
    pixel → patch rule as `click_to_patch`, so the blocks show the model's real resolution. The
    (rows, cols) axes start at `axis` (1 for a stack of maps)."""
    rows, cols = grid_map.shape[axis:axis + 2]
    row_of_pixel = np.arange(height) * rows // height
    col_of_pixel = np.arange(width) * cols // width
    # Two one-axis gathers: several times faster than one gather with broadcast (h, w) indices.
    return grid_map.take(row_of_pixel, axis=axis).take(col_of_pixel, axis=axis + 1)


def grid_map_image(values: np.ndarray, cell: int) -> np.ndarray:
    """(rows, cols, 3) uint8 colours → an image with one `cell`×`cell` square per patch."""
    return np.repeat(np.repeat(values, cell, axis=0), cell, axis=1)


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) shrunk (never enlarged) so that the longer side is at most `max_side`."""
    factor = max_side / max(height, width)
    if factor >= 1:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


def fit_photo(photo: np.ndarray, max_side: int) -> np.ndarray:
    """The photo resized to `fit_size`: what a view shows, and the size its clicks are measured in."""
    h, w = fit_size(*photo.shape[:2], max_side)
    if (h, w) == photo.shape[:2]:
        return photo
    return np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.LANCZOS))


def outline_patch(image: np.ndarray, patch: int, grid: tuple[int, int], colour=OUTLINE) -> np.ndarray:
    """A copy of `image` with a rectangle around the pixels of `patch`."""
    outlined = image.copy()
    outline_patch_in_place(outlined, patch, grid, colour)
    return outlined


def outline_patch_in_place(image: np.ndarray, patch: int, grid: tuple[int, int], colour=OUTLINE) -> None:
    """Draw the rectangle of `outline_patch` into `image` itself: four array slices, the same
    pixels as Pillow's `rectangle(box, width)`, without converting a picture a click draws dozens of."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = patch_box(patch, grid, w, h)
    # An image smaller than the grid has patches without a pixel of their own: mark the nearest one.
    x0, y0 = min(x0, w - 1), min(y0, h - 1)
    x1, y1 = max(x0, min(x1, w - 1)), max(y0, min(y1, h - 1))
    line = max(1, min(h, w) // 100)
    image[y0:min(y0 + line, y1 + 1), x0:x1 + 1] = colour
    image[max(y1 - line + 1, y0):y1 + 1, x0:x1 + 1] = colour
    image[y0:y1 + 1, x0:min(x0 + line, x1 + 1)] = colour
    image[y0:y1 + 1, max(x1 - line + 1, x0):x1 + 1] = colour


def draw_patch_grid(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A copy of `image` with faint lines between the patches, to show where clicks land."""
    h, w = image.shape[:2]
    rows, cols = grid
    lined = image.astype(np.float64)
    # The first pixel column (row) of every patch but the first; a set, as tiny images repeat some.
    for x in {-(-col * w // cols) for col in range(1, cols)} - {w}:
        lined[:, x] = lined[:, x] * 0.5 + 127
    for y in {-(-row * h // rows) for row in range(1, rows)} - {h}:
        lined[y, :] = lined[y, :] * 0.5 + 127
    return lined.round().astype(np.uint8)


def overlay(photo: np.ndarray, heat: np.ndarray | torch.Tensor, patch: int | None = None,
            alpha: float = 0.6) -> np.ndarray:
    """A (rows, cols) map in [0, 1], coloured and blended over the photo at the photo's own size,
    with `patch` outlined."""
    return overlays(photo, np.asarray(heat)[None], patch, alpha)[0]


def overlays(photo: np.ndarray, heats: np.ndarray | torch.Tensor, patch: int | None = None,
             alpha: float = 0.6) -> np.ndarray:
    """`overlay` for a stack of (n, rows, cols) maps at once → (n, H, W, 3): a click draws dozens."""
    heats = np.asarray(heats, dtype=np.float64)
    h, w = photo.shape[:2]
    # Colour the (rows, cols) cells, then enlarge: the same picture as colouring every pixel,
    # for a few hundred colour look-ups instead of one per pixel.
    colours = upsample_nearest(colourise(heats), h, w, axis=1)
    blended = photo.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha
    blended = (blended + 0.5).astype(np.uint8)
    if patch is not None:
        for picture in blended:
            outline_patch_in_place(picture, patch, heats.shape[1:])
    return blended


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font: no font files or network needed."""
    return ImageFont.load_default(size=size)


def tile(images: Sequence[np.ndarray] | np.ndarray, labels: Sequence[str], columns: int, gap: int = 6) -> np.ndarray:
    """Same-sized images (a list, or one (n, H, W, 3) array) laid out in a grid on white, each with
    its label above it."""
    if len(images) == 0:
        raise ValueError("nothing to tile")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    h, w = images[0].shape[:2]
    size = max(10, min(18, w // 8))
    label_h = font(size).size + 6
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (h + label_h + gap) + gap, columns * (w + gap) + gap, 3), 255, np.uint8)
    for i, (image, label) in enumerate(zip(images, labels)):
        row, col = divmod(i, columns)
        x, y = gap + col * (w + gap), gap + row * (h + label_h + gap)
        sheet[y:y + label_h, x:x + w + gap] = label_strip(label, w + gap, size)
        sheet[y + label_h:y + label_h + h, x:x + w] = image
    return sheet


@functools.lru_cache(maxsize=512)
def label_strip(label: str, width: int, size: int) -> np.ndarray:
    """`label` in black on a white strip `width` pixels wide. Cached: a click draws the same "L1 H1"…
    labels again, and rendering text is the slow part of a tile."""
    text = font(size)
    strip = Image.new("RGB", (width, text.size + 6), "white")
    ImageDraw.Draw(strip).text((0, 0), label, fill="black", font=text)
    picture = np.asarray(strip)
    picture.flags.writeable = False  # shared by every caller
    return picture


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


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ value: a round top for an axis."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)
