"""Class probabilities of a mask, optionally averaged over a horizontal flip and several models.

Flip averaging (test-time augmentation) asks the model twice, once on the mirrored photo, and
averages the answers: a pet is a pet in a mirror, so the errors that do not mirror cancel. It
costs one more forward pass. `vitviz.evaluate --flip`, the app and `vitviz.pseudo` use it.
"""

import torch

from vitviz.model.vit import SegmentationViT


@torch.no_grad()
def mask_probabilities(models: SegmentationViT | list[SegmentationViT], images: torch.Tensor,
                       flip: bool = False) -> torch.Tensor:
    """(B, C, H, W) softmax probabilities, the mean over `models` (and the flipped photos)."""
    models = models if isinstance(models, list) else [models]
    views = [images, images.flip(-1)] if flip else [images]
    total = 0
    for model in models:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=images.device.type == "cuda"):
            for k, view in enumerate(views):
                probs = model(view).mask_logits.float().softmax(1)
                total = total + (probs.flip(-1) if k else probs)
    return total / (len(models) * len(views))
