"""Pseudo-labels: a teacher's confident answers for the trainval photos without a trimap, and the
file they are kept in (`python -m vitviz.pseudo` writes it; `ResidentSet.with_pseudo_labels` reads it).

Pixels where the teacher's top probability (flip-averaged, averaged over an ensemble and over photo
sizes) is below the threshold are left unlabeled (IGNORE). Only the trainval split is ever read
(`PetDataset(training=True)`).
"""

import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open

from vitviz.training.data import IGNORE, TRAINING_SPLIT, PetDataset, trimap_path
from vitviz.training.predict import mask_probabilities


def pseudo_label(teachers: list, data_root: str | None, threshold: float, batch_size: int = 64,
                 device: torch.device = torch.device("cpu"),
                 scales: Sequence[float] = (1.0,)) -> tuple[list[str], torch.Tensor, dict]:
    """Names and (N, S, S) int8 masks of the trainval photos without a trimap, and statistics.
    The teachers' answers are flip-averaged and averaged over the photo resized by each of `scales`."""
    size = teachers[0].cfg.image_size
    photos = PetDataset(data_root, TRAINING_SPLIT, size, "none", segmentation=False, training=True)
    index = [i for i, e in enumerate(photos.entries) if not trimap_path(photos.root, e.name).is_file()]
    masks = []
    for start in range(0, len(index), batch_size):
        images = torch.stack([photos[i][0] for i in index[start:start + batch_size]]).to(device)
        probs = mask_probabilities(teachers, images, flip=True, scales=scales)
        confidence, label = probs.max(1)
        label[confidence < threshold] = IGNORE
        masks.append(label.to(torch.int8).cpu())
    all_masks = torch.cat(masks) if masks else torch.zeros(0, size, size, dtype=torch.int8)
    kept = all_masks[all_masks != IGNORE].long()
    stats = {"photos": len(index), "kept_pixels": kept.numel() / max(1, all_masks.numel()),
             "class_pixels": torch.bincount(kept, minlength=3).tolist()}
    return [photos.entries[i].name for i in index], all_masks, stats


def read_pseudo_labels(path: str | Path) -> dict[str, torch.Tensor]:
    """{photo name: (S, S) int8 mask} from a file written by this module."""
    try:
        with safe_open(str(path), "pt") as f:
            names = json.loads(f.metadata()["names"])
            masks = f.get_tensor("masks")
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read pseudo-labels from {path}: {e}") from e
    return dict(zip(names, masks))
