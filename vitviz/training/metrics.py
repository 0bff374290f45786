"""Segmentation metrics from a confusion matrix: pixel accuracy and IoU per class."""

import torch

from vitviz.training.data import CLASS_NAMES, IGNORE


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int = len(CLASS_NAMES)) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted; IGNORE pixels are skipped."""
    keep = target != IGNORE
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx.flatten(), minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def summarize(conf: torch.Tensor) -> dict:
    """pixel_accuracy, per-class iou (by name) and miou (mean over the classes)."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.zeros_like(tp))
    return {
        "pixel_accuracy": (tp.sum() / conf.sum().clamp(min=1)).item(),
        "iou": {name: iou[i].item() for i, name in enumerate(CLASS_NAMES)},
        "miou": iou.mean().item(),
    }
