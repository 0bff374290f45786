"""Segmentation losses, by name (`TrainConfig.loss`).

Cross-entropy weighs every pixel alike, so the thin border class (a few % of the pixels) costs it
little and is learned last. The soft Dice term (Milletari et al. 2016) scores each class by its
overlap with the truth, whatever its size, which pushes straight at the IoU we report.
"""

from typing import Callable

import torch
import torch.nn.functional as F

from vitviz.training.data import IGNORE


def cross_entropy(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, masks, ignore_index=IGNORE)


def soft_dice(logits: torch.Tensor, masks: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − mean over classes of 2|P∩T| / (|P| + |T|), with P the softmax and T the one-hot truth,
    summed over the batch's labeled pixels."""
    keep = (masks != IGNORE).unsqueeze(1)  # (B, 1, H, W)
    probs = logits.softmax(1) * keep
    truth = F.one_hot(masks.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2) * keep
    overlap = (probs * truth).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + truth.sum((0, 2, 3))
    return 1 - ((2 * overlap + eps) / (total + eps)).mean()


def cross_entropy_dice(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits, masks) + soft_dice(logits, masks)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": cross_entropy, "ce_dice": cross_entropy_dice}
