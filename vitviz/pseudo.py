"""Pseudo-labels for the trainval photos without a trimap: `python -m vitviz.pseudo`.

Self-training (Noisy Student, ST++): a teacher trained on the 400 labeled photos labels the 3,280
photos without a trimap; a student then learns from both, under strong noise. The teacher here is
one model or an ensemble (their flip-averaged probabilities averaged). Pixels where the teacher's
top probability is below `--threshold` are left unlabeled (IGNORE), so the student learns only
from confident answers. Only the trainval split is ever read (`PetDataset(training=True)`).

    python -m vitviz.pseudo --teacher runs/teacher --data-root ../shared/data --out runs/pseudo.safetensors
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from vitviz.training import checkpoint as ckpt
from vitviz.training.data import IGNORE, TRAINING_SPLIT, PetDataset
from vitviz.training.predict import mask_probabilities


def pseudo_label(teachers: list, data_root: str | None, threshold: float, batch_size: int = 64,
                 device: torch.device = torch.device("cpu")) -> tuple[list[str], torch.Tensor, dict]:
    """Names and (N, S, S) int8 masks of the trainval photos without a trimap, and statistics."""
    size = teachers[0].cfg.image_size
    photos = PetDataset(data_root, TRAINING_SPLIT, size, "none", segmentation=False, training=True)
    index = [i for i, e in enumerate(photos.entries) if not (photos.root / "annotations" / "trimaps" / f"{e.name}.png").is_file()]
    masks, kept = [], 0
    for start in range(0, len(index), batch_size):
        images = torch.stack([photos[i][0] for i in index[start:start + batch_size]]).to(device)
        probs = mask_probabilities(teachers, images, flip=True)
        confidence, label = probs.max(1)
        label[confidence < threshold] = IGNORE
        kept += int((confidence >= threshold).sum())
        masks.append(label.to(torch.int8).cpu())
    all_masks = torch.cat(masks) if masks else torch.zeros(0, size, size, dtype=torch.int8)
    counts = torch.bincount((all_masks[all_masks != IGNORE]).long().flatten(), minlength=3).tolist()
    stats = {"photos": len(index), "kept_pixels": kept / max(1, all_masks.numel()), "class_pixels": counts}
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.pseudo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", action="append", required=True, help="checkpoint or run folder (repeat for an ensemble)")
    parser.add_argument("--data-root", default=None, help="dataset folder (or $VITVIZ_DATA)")
    parser.add_argument("--out", required=True, help="safetensors file to write")
    parser.add_argument("--threshold", type=float, default=0.7, help="keep pixels whose top probability reaches this")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        teachers = [ckpt.load_model(folder, None, torch.device("cpu")) for folder in args.teacher]
        names, masks, stats = pseudo_label(teachers, args.data_root, args.threshold)
    except (ckpt.CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = "python -m vitviz.pseudo " + shlex.join(sys.argv[1:] if argv is None else argv)
    meta = {"names": json.dumps(names), "teachers": json.dumps(args.teacher), "threshold": str(args.threshold),
            "command": command, "stats": json.dumps(stats)}
    ckpt.atomic_save_tensors(Path(args.out), {"masks": masks}, meta)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
