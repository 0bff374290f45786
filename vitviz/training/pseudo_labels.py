"""Pseudo-labels: a teacher's answers for the trainval photos without a trimap, and the file they
are kept in (`python -m vitviz.pseudo` writes it; `ResidentSet.with_pseudo_labels` reads it).

The teacher's probabilities are flip-averaged, averaged over an ensemble and over photo sizes.
They are kept in one of two forms:
  hard ("masks", (N, S, S) int8): the top class, or IGNORE where its probability is under the
      threshold. Confident pixels are rarely border, so the thin class loses most of its labels.
  soft ("probabilities", (N, 3, S, S) uint8, p × 255): the whole distribution, every pixel kept;
      the student learns the teacher's uncertainty at the border instead of a hole there.
Only the trainval split is ever read (`PetDataset(training=True)`).
"""

import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open

from vitviz.training.data import IGNORE, TRAINING_SPLIT, PetDataset, trimap_path
from vitviz.training.losses import TARGET_LOSSES
from vitviz.training.predict import mask_probabilities

PROBABILITY_SCALE = 255  # soft labels are stored as uint8 p × 255: 3 bytes a pixel instead of 12


def pseudo_label(teachers: list, data_root: str | None, threshold: float, batch_size: int = 64,
                 device: torch.device = torch.device("cpu"), scales: Sequence[float] = (1.0,),
                 soft: bool = False) -> tuple[list[str], torch.Tensor, dict]:
    """Names of the trainval photos without a trimap, their labels and statistics: (N, S, S) int8
    masks, or with `soft` (N, 3, S, S) uint8 probabilities (`threshold` unused)."""
    size = teachers[0].cfg.image_size
    photos = PetDataset(data_root, TRAINING_SPLIT, size, "none", segmentation=False, training=True)
    index = [i for i, e in enumerate(photos.entries) if not trimap_path(photos.root, e.name).is_file()]
    labels, class_mass, kept, total = [], torch.zeros(3), 0, 0
    for start in range(0, len(index), batch_size):
        images = torch.stack([photos[i][0] for i in index[start:start + batch_size]]).to(device)
        probs = mask_probabilities(teachers, images, flip=True, scales=scales).cpu()
        confidence, label = probs.max(1)
        total += label.numel()
        if soft:
            labels.append((probs * PROBABILITY_SCALE).round().to(torch.uint8))
            class_mass += probs.sum((0, 2, 3))
            kept += label.numel()
        else:
            label[confidence < threshold] = IGNORE
            labels.append(label.to(torch.int8))
            class_mass += torch.bincount(label[label != IGNORE], minlength=3).float()
            kept += int((label != IGNORE).sum())
    shape = (0, 3, size, size) if soft else (0, size, size)
    all_labels = torch.cat(labels) if labels else torch.zeros(shape, dtype=torch.uint8 if soft else torch.int8)
    stats = {"photos": len(index), "kept_pixels": kept / max(1, total), "soft": soft,
             "class_pixels": [round(float(m)) for m in class_mass]}
    return [photos.entries[i].name for i in index], all_labels, stats


def read_pseudo_labels(path: str | Path) -> dict[str, torch.Tensor]:
    """{photo name: label} from a file written by this module: an (S, S) int8 mask (hard) or
    (3, S, S) uint8 probabilities × 255 (soft)."""
    try:
        with safe_open(str(path), "pt") as f:
            names = json.loads(f.metadata()["names"])
            labels = f.get_tensor("probabilities" if "probabilities" in f.keys() else "masks")
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read pseudo-labels from {path}: {e}") from e
    return dict(zip(names, labels))


def check_pseudo_labels(path: str | Path, image_size: int, loss: str | None = None) -> None:
    """Refuse, before a run starts, a file that cannot be read, holds labels of another image size,
    or soft labels for a `loss` that has no soft form (reads the header only)."""
    try:
        with safe_open(str(path), "pt") as f:
            soft = "probabilities" in f.keys()
            shape = f.get_slice("probabilities" if soft else "masks").get_shape()
    except Exception as e:  # safetensors raises its own error types for a file that is not one
        raise ValueError(f"cannot read pseudo-labels from {path}: {e}") from e
    if tuple(shape[-2:]) != (image_size, image_size):
        raise ValueError(f"{path} holds {shape[-2]}x{shape[-1]} pseudo-labels but this run trains at "
                         f"{image_size}x{image_size}: make them with a teacher of the same image size")
    if soft and loss is not None and loss not in TARGET_LOSSES:
        raise ValueError(f"{path} holds soft pseudo-labels, which loss {loss!r} cannot learn: "
                         f"use {' or '.join(TARGET_LOSSES)}")
