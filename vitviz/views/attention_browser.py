"""The Attention tab's maps, drawn by the browser: what the server sends once per photo (brief §5).

A click on the Attention tab used to cost the server a dozen pictures, and with a class of 30 on
two cores that was the largest share of its busy time (README "Benchmarks"). Now the server sends,
once per photo and checkpoint, the photo and the attention weights themselves; the tab's script
(`vitviz/ui/attention_maps.js`) draws from them the same pictures as `attention_pictures`, so a
click, a layer, a direction or a colour scale costs the server only its status line.
`attention_pictures` still draws the PNG files the tab saves.

The weights travel as 16-bit fixed point, round(w · 65535): two bytes each, exact to 1/131070,
well under one colour level of any map the tab shows (a map is scaled by its peak, which is at
least 1/T for a query's row of T weights).
"""

from __future__ import annotations  # `Analysis` is named for readers only

import base64
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from vitviz.views.attention import HEAD_SIDE, PHOTO_SIDE, THUMB_SIDE, Direction, Scale, per_head
from vitviz.views.pictures import CLICKABLE_SIDE, OUTLINE, VIRIDIS, fit_size

if TYPE_CHECKING:
    from vitviz.app.inference import Analysis

FIXED_POINT = 65535  # a weight w in [0, 1] is sent as round(w · FIXED_POINT), a little-endian uint16
PHOTO_QUALITY = 90  # the photo is sent once as a JPEG; the maps are drawn over it


def fixed_point(weights: torch.Tensor) -> str:
    """Weights in [0, 1], any shape → base64 of their little-endian uint16 fixed point, row-major."""
    quantised = (weights.detach().double().clamp(0, 1) * FIXED_POINT).round().numpy().astype("<u2")
    return base64.b64encode(quantised.tobytes()).decode("ascii")


def jpeg_data_url(photo: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=PHOTO_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def attention_maps_data(analysis: Analysis, patch: int, layer: int, direction: Direction,
                        scale: Scale) -> dict[str, Any]:
    """Everything the browser needs to draw the Attention tab's pictures for any click, as JSON:
    the clickable photo, the sizes of each picture (those `attention_pictures` draws), every
    layer's (heads, T, T) weights and the rollout in fixed point, and the view to draw first
    (the clicked patch, the layer counted from 1, the direction and colour scale)."""
    attentions = torch.stack([per_head(weights) for weights in analysis.trace.attentions])  # (L, H, T, T)
    height, width = analysis.photo.shape[:2]
    return {
        "photo": jpeg_data_url(analysis.photo_fitted(PHOTO_SIDE, min_side=CLICKABLE_SIDE)),
        # (height, width) of each picture: the clickable photo, the rollout, one head, one thumbnail.
        "sizes": {"click": analysis.clickable_size(PHOTO_SIDE), "rollout": fit_size(height, width, PHOTO_SIDE),
                  "head": fit_size(height, width, HEAD_SIDE), "thumb": fit_size(height, width, THUMB_SIDE)},
        "grid": list(analysis.grid),
        "classToken": analysis.has_class_token,
        "shape": list(attentions.shape),
        "attention": fixed_point(attentions),
        "rollout": fixed_point(analysis.rollout),
        "colours": {"viridis": VIRIDIS.astype(int).tolist(), "outline": list(OUTLINE)},
        "view": {"patch": patch, "layer": layer, "direction": direction, "scale": scale},
    }
