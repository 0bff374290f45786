"""The Attention tab's pictures for one clicked patch, drawn from the cached forward pass.

`attention_pictures` is all the work a click costs on the server: slicing the traced attention
weights (`vitviz.views.pictures`) and drawing them over the photo. The photo at each view size
and the rollout matrix do not depend on the click and are kept on the `Analysis`.
"""

from dataclasses import dataclass

import numpy as np
import torch

from vitviz.views.pictures import (Direction, Scale, class_token_attention, normalise_maps, overlay, overlays,
                                   patch_attention, patch_slice, tile)
from vitviz.app.inference import Analysis

PHOTO_SIDE = 512  # the clickable photo and the rollout are shown at most this large
HEAD_SIDE = 320  # one map of the per-head figure
THUMB_SIDE = 112  # one map of the layers × heads overview


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
    heads = tile(overlays(small, per_head, patch), [f"head {h + 1}" for h in range(len(per_head))],
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
        class_map = tile(overlays(small, cls_maps), [f"head {h + 1}" for h in range(len(cls_maps))],
                         columns=min(4, len(cls_maps)))
    return AttentionPictures(analysis.click_target(PHOTO_SIDE, patch), heads, overview, rollout, class_map)
