"""The picture library: every view draws with these (no Gradio here, so each function can be
tested on its own). Every picture is an (H, W, 3) uint8 array, ready for `gr.Image`, a PNG or a GIF.

- patches on a picture: which patch a click lands on, and the pixels of a patch;
- colour maps (viridis, a diverging blue-grey-red) and the (rows, cols) maps they colour;
- photos fitted to a view, patch outlines and grid lines, heat maps blended over a photo;
- text: the bundled font, labelled tiles, a colour bar, a caption band; plain resizing.
"""

import functools
import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


def patch_centre(patch: int, grid: tuple[int, int]) -> tuple[float, float]:
    """(x, y) of the centre of `patch`, as fractions of the picture's width and height."""
    rows, cols = grid
    row, col = divmod(patch, cols)
    return (col + 0.5) / cols, (row + 0.5) / rows


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


# ───────────────────────────── colours and maps ─────────────────────────────

# Colour maps as evenly spaced stops, interpolated linearly (no matplotlib needed).
VIRIDIS = np.array([(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
                    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)], dtype=np.float64)
COOLWARM = np.array([(59, 76, 192), (124, 159, 249), (192, 212, 245), (221, 221, 221), (242, 203, 183),
                     (238, 132, 104), (180, 4, 38)], dtype=np.float64)  # blue < 0 < red, grey at 0
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


def fit_size(height: int, width: int, max_side: int, min_side: int = 0) -> tuple[int, int]:
    """(height, width) shrunk so that the longer side is at most `max_side`, or enlarged so that it
    is at least `min_side` (by default never enlarged)."""
    longer = max(height, width)
    factor = max_side / longer if longer > max_side else min_side / longer if longer < min_side else 1
    if factor == 1:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


# A photo the user clicks patches on is shown with its longer side at least this large, so that a
# patch of a 16×16 grid is at least 24 screen pixels, whatever the photo's own size.
CLICKABLE_SIDE = 384


def fit_photo(photo: np.ndarray, max_side: int, min_side: int = 0) -> np.ndarray:
    """The photo resized to `fit_size`: what a view shows, and the size its clicks are measured in."""
    h, w = fit_size(*photo.shape[:2], max_side, min_side)
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
    # Blend in 8-bit fixed point (weights out of 256, in uint16: 255 · 256 + 128 still fits), and
    # weigh the colours while they are still (rows, cols) cells, then enlarge: the same picture as
    # colouring and blending every pixel in floats (±1 level), for one add and a shift per pixel;
    # a click draws dozens of these, and this was most of a click's time on the server.
    weight = round(alpha * 256)
    blended = upsample_nearest(colourise(heats).astype(np.uint16) * weight + 128, h, w, axis=1)
    blended += photo.astype(np.uint16) * (256 - weight)
    blended = (blended >> 8).astype(np.uint8)
    if patch is not None:
        for picture in blended:
            outline_patch_in_place(picture, patch, heats.shape[1:])
    return blended


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font: no font files or network needed. It has the printable ASCII glyphs
    only, so every text drawn with it goes through `drawable` first."""
    return ImageFont.load_default(size=size)


# The ASCII spelling of the symbols the views' labels use: any other character would be drawn as an
# empty box by the bundled font. Pictures carry codes and numbers (H3, L2 H3, 256 x 192) rather than
# words; the text beside a picture says in the user's language what they mean.
ASCII_SPELLING = {"×": "x", "→": "->", "←": "<-", "–": "-", "—": "-", "−": "-", "·": ".", "…": "...", "≈": "~"}


def drawable(text: str) -> str:
    """`text` in characters the bundled font has: symbols spelled in ASCII, anything else "?"."""
    spelled = "".join(ASCII_SPELLING.get(char, char) for char in text)
    return spelled.encode("ascii", "replace").decode("ascii")


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
    ImageDraw.Draw(strip).text((0, 0), drawable(label), fill="black", font=text)
    picture = np.asarray(strip)
    picture.flags.writeable = False  # shared by every caller
    return picture


def resize(image: np.ndarray, size: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """Resize to (height, width): bilinear for photos, nearest for masks and maps of cells."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(image).resize((w, h), resample))


def signed_heatmap(values: np.ndarray) -> np.ndarray:
    """Signed values → blue (negative), grey (zero), red (positive). The scale is the 99th
    percentile of |value|, so a few outliers do not wash out everything else."""
    limit = float(np.quantile(np.abs(values), 0.99)) if np.size(values) else 1.0
    return colourise(signed_to_unit(values, limit), COOLWARM)


def with_colour_bar(image: np.ndarray, stops: np.ndarray, low: str, high: str) -> np.ndarray:
    """The picture with a horizontal ramp of `stops` underneath, labelled with its end values."""
    width = image.shape[1]
    bar_h = max(8, min(14, image.shape[0] // 16))
    ramp = colourise(np.linspace(0, 1, width)[None, :].repeat(bar_h, 0), stops)
    text = font(max(10, bar_h))
    labels = Image.new("RGB", (width, text.size + 4), "white")
    draw = ImageDraw.Draw(labels)
    draw.text((1, 1), drawable(low), fill="black", font=text)
    draw.text((width - 1, 1), drawable(high), fill="black", font=text, anchor="ra")
    gap = np.full((3, width, 3), 255, np.uint8)
    return np.concatenate([image, gap, ramp, np.asarray(labels)], axis=0)


def caption_band(image: np.ndarray, text: str) -> np.ndarray:
    """The picture with a dark band on top holding `text` in white (a GIF frame's label)."""
    height = max(18, image.shape[0] // 10)
    band = Image.new("RGB", (image.shape[1], height), (20, 20, 20))
    ImageDraw.Draw(band).text((6, height // 2), drawable(text), fill="white", font=font(int(height * 0.7)),
                              anchor="lm")
    return np.concatenate([np.asarray(band), image], axis=0)
