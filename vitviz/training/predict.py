"""Class probabilities of a mask, optionally averaged over a horizontal flip and several models.

Flip averaging (test-time augmentation) asks the model twice, once on the mirrored photo, and
averages the answers: a pet is a pet in a mirror, so the errors that do not mirror cancel. It
costs one more forward pass. `vitviz.evaluate` (unless `--no-flip`), the app and `vitviz.pseudo` use it.
"""

import torch

from vitviz.model.knockout import NOTHING, KnockOut
from vitviz.model.vit import SegmentationViT


@torch.no_grad()
def mask_probabilities(models: SegmentationViT | list[SegmentationViT], images: torch.Tensor,
                       flip: bool = False) -> torch.Tensor:
    """(B, C, H, W) softmax probabilities, the mean over `models` (and the flipped photos)."""
    models = models if isinstance(models, list) else [models]
    total = 0
    for model in models:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=images.device.type == "cuda"):
            logits = model(images).mask_logits
            total = total + (flip_averaged(model, images, logits) if flip else logits.float().softmax(1))
    return total / len(models)


@torch.no_grad()
def flip_averaged(model: SegmentationViT, images: torch.Tensor, logits: torch.Tensor,
                  knockout: KnockOut = NOTHING) -> torch.Tensor:
    """The mean of the probabilities of `logits` (the model's answer for `images`, already computed,
    e.g. by a traced pass) and of the model's answer for the mirrored photos, mirrored back (with
    the same parts switched off as `logits`, when they come from a knock-out)."""
    mirrored = model(images.flip(-1), knockout=knockout).mask_logits.float().softmax(1).flip(-1)
    return (logits.float().softmax(1) + mirrored) / 2
