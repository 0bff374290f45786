"""Segmentation losses, by name (`TrainConfig.loss`).

Cross-entropy weighs every pixel alike, so the thin border class (a few % of the pixels) costs it
little and is learned last. The soft Dice term (Milletari et al. 2016) scores each class by its
overlap with the truth, whatever its size, which pushes straight at the IoU we report. The
Lovász-softmax term (Berman et al. 2018) goes further: it is the exact convex surrogate of the
batch's Jaccard loss, so on hard (one-hot) answers it equals 1 − mIoU.

`LOSSES` take class-index masks. A student learning a teacher's soft pseudo-labels needs targets
that are distributions: `TARGET_LOSSES` take (B, C, H, W) targets, one-hot where a trimap stands
(`target_distribution`), and equal their `LOSSES` namesake on one-hot targets.
"""

from typing import Callable

import torch
import torch.nn.functional as F

from vitviz.training.data import IGNORE


def cross_entropy(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, masks, ignore_index=IGNORE)


def soft_dice(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 − mean over classes of 2|P∩T| / (|P| + |T|), with P the softmax and T the one-hot truth,
    summed over the batch's labeled pixels."""
    return dice_to(logits, target_distribution(masks, logits.shape[1]))


def cross_entropy_dice(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits, masks) + soft_dice(logits, masks)


def target_distribution(masks: torch.Tensor, n_classes: int, soft: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) targets: one-hot where `masks` holds a class, 0 where IGNORE, plus `soft` (a
    distribution where a teacher answered, 0 elsewhere, so the two never overlap)."""
    keep = (masks != IGNORE).unsqueeze(1)
    targets = F.one_hot(masks.clamp(min=0), n_classes).permute(0, 3, 1, 2) * keep
    return targets.float() if soft is None else targets + soft


def cross_entropy_to(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against target distributions, averaged over pixels weighted by their target's
    mass (1 for a labeled pixel, 0 for an ignored one, between at a crop's edge)."""
    return -(targets * logits.log_softmax(1)).sum() / targets.sum().clamp(min=1e-6)


def dice_to(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice against target distributions; only pixels with a target count."""
    probs = logits.softmax(1) * targets.sum(1, keepdim=True)
    overlap = (probs * targets).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + targets.sum((0, 2, 3))
    return 1 - ((2 * overlap + eps) / (total + eps)).mean()


def cross_entropy_dice_to(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return cross_entropy_to(logits, targets) + dice_to(logits, targets)


def _jaccard_steps(truth_sorted: torch.Tensor) -> torch.Tensor:
    """How much the Jaccard loss grows as each pixel, in order of decreasing error, turns wrong:
    the gradient of its Lovász extension (Berman et al. 2018, Alg. 1)."""
    total = truth_sorted.sum()
    intersection = total - truth_sorted.cumsum(0)
    union = total + (1 - truth_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean over the classes present in the batch's labeled pixels of the Lovász extension of the
    Jaccard loss, applied to |truth − softmax|."""
    n_classes = logits.shape[1]
    probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, n_classes)
    labels = masks.reshape(-1)
    keep = labels != IGNORE
    probs, labels = probs[keep], labels[keep]
    losses = []
    for c in labels.unique():
        truth = (labels == c).float()
        errors, order = (truth - probs[:, c]).abs().sort(descending=True)
        losses.append(errors @ _jaccard_steps(truth[order]))
    return torch.stack(losses).mean() if losses else logits.sum() * 0


def cross_entropy_lovasz(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits, masks) + lovasz_softmax(logits, masks)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": cross_entropy, "ce_dice": cross_entropy_dice, "ce_lovasz": cross_entropy_lovasz}
# Lovász-softmax sorts pixels by their error against a hard truth: it has no soft-target form.
TARGET_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": cross_entropy_to, "ce_dice": cross_entropy_dice_to}
