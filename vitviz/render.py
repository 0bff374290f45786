"""Picture helpers that the Segment, Journey and Epochs views add to those of
`vitviz.views.pictures` (colour maps, photo fitting, patch outlines, the bundled font): plain
resizing, a colour bar under a map, a caption band on a GIF frame, and signed heatmaps.

Every function returns an (H, W, 3) uint8 array, ready for `gr.Image`, a PNG or a GIF.
"""

import numpy as np
from PIL import Image, ImageDraw

from vitviz.views.pictures import COOLWARM, colourise, font, signed_to_unit


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
    draw.text((1, 1), low, fill="black", font=text)
    draw.text((width - 1, 1), high, fill="black", font=text, anchor="ra")
    gap = np.full((3, width, 3), 255, np.uint8)
    return np.concatenate([image, gap, ramp, np.asarray(labels)], axis=0)


def caption_band(image: np.ndarray, text: str) -> np.ndarray:
    """The picture with a dark band on top holding `text` in white (a GIF frame's label)."""
    height = max(18, image.shape[0] // 10)
    band = Image.new("RGB", (image.shape[1], height), (20, 20, 20))
    ImageDraw.Draw(band).text((6, height // 2), text, fill="white", font=font(int(height * 0.7)), anchor="lm")
    return np.concatenate([np.asarray(band), image], axis=0)
