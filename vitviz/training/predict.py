"""Class probabilities of a mask, optionally averaged over a horizontal flip and several models.

Flip averaging (test-time augmentation) asks the model twice, once on the mirrored photo, and
averages the answers: a pet is a pet in a mirror, so the errors that do not mirror cancel. It
costs one more forward pass. `vitviz.evaluate` (unless `--no-flip`), the app and `vitviz.pseudo` use it.

Averaging over several sizes of the photo (`scales`, `vitviz.evaluate --scales`) is measured in
the README's experiments table; the app does not use it (it would triple the cost of every mask,
and of the Knock-outs tab's chart of 36 of them), so no recorded score of a checkpoint does either.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vitviz.model.knockout import NOTHING, KnockOut
from vitviz.model.vit import SegmentationViT


@torch.no_grad()
def mask_probabilities(models: SegmentationViT | list[SegmentationViT], images: torch.Tensor,
                       flip: bool = False, scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """(B, C, H, W) softmax probabilities, the mean over `models` (and the flipped photos, and the
    photos resized by each of `scales`, answers resized back)."""
    models = as_list(models)
    total = 0
    for model in models:
        for scale in scales:
            x = rescaled(images, scale, model.cfg.patch_size)
            with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=images.device.type == "cuda"):
                logits = model(x).mask_logits
                probs = flip_averaged(model, x, logits) if flip else logits.float().softmax(1)
            if x is not images:
                probs = F.interpolate(probs, size=images.shape[-2:], mode="bilinear", align_corners=False)
            total = total + probs
    return total / (len(models) * len(scales))


def as_list(models: SegmentationViT | list[SegmentationViT]) -> list[SegmentationViT]:
    """One model or an ensemble, as a list."""
    return models if isinstance(models, list) else [models]


def rescaled(images: torch.Tensor, scale: float, patch_size: int) -> torch.Tensor:
    """`images` resized by `scale`, each side rounded to a whole number of patches (the model
    resamples its position embeddings to the new grid); `images` itself at scale 1."""
    size = [max(patch_size, round(side * scale / patch_size) * patch_size) for side in images.shape[-2:]]
    if size == list(images.shape[-2:]):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)


@torch.no_grad()
def flip_averaged(model: SegmentationViT, images: torch.Tensor, logits: torch.Tensor,
                  knockout: KnockOut = NOTHING) -> torch.Tensor:
    """The mean of the probabilities of `logits` (the model's answer for `images`, already computed,
    e.g. by a traced pass) and of the model's answer for the mirrored photos, mirrored back (with
    the same parts switched off as `logits`, when they come from a knock-out)."""
    mirrored = model(images.flip(-1), knockout=knockout).mask_logits.float().softmax(1).flip(-1)
    return (logits.float().softmax(1) + mirrored) / 2
