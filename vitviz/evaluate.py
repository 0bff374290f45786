"""Evaluate a checkpoint: `python -m vitviz.evaluate --checkpoint DIR --data-root DIR --split test --json`.

Deterministic (eval mode, resize only) over the split's labeled photos. Each photo's probabilities
are averaged with its mirror image's (test-time augmentation), as the app's masks are; `--no-flip`
scores one forward pass, as the training curve does; `--scales 0.75 1 1.25` also averages over the
photo resized, and `--ensemble DIR …` over other checkpoints' answers too (experiments: the app
shows one model at one size, so `--record` refuses both). `--small-pets` adds the wide-scene stand-in
of `vitviz.training.smallpets` (pet IoU of the photos shrunk onto a grey and onto a mirrored canvas).
`--record` keeps the result in the checkpoint's metrics.json under "evaluation", with the command
and the photos the model was trained on, counted in the same data folder: the app's Segment tab
quotes it to set expectations.
"""

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vitviz.training.loop import evaluate_model, git_commit, pick_device
from vitviz.training.checkpoint import CheckpointError, atomic_write_json, load_model, read_config
from vitviz.training.data import TRAINING_SPLIT, PetDataset
from vitviz.training.smallpets import small_pet_scores


@torch.no_grad()
def class_accuracy(model, dataset: PetDataset, class_labels: str, device: torch.device, batch_size: int = 64) -> dict:
    """Top-1 accuracy of a class-token head over every photo of a split; a breed head is also scored on species
    (its breed guess mapped to that breed's species)."""
    model.eval()
    species_of = {e.breed: e.species for e in dataset.entries}
    breed_hits = species_hits = 0
    for images, _, breeds, species in DataLoader(dataset, batch_size=batch_size):
        guess = model(images.to(device)).class_logits.argmax(1).cpu()
        if class_labels == "species":
            species_hits += int((guess == species).sum())
            continue
        breed_hits += int((guess == breeds).sum())
        species_hits += sum(species_of.get(int(g), -1) == int(s) for g, s in zip(guess, species))
    n = len(dataset)
    return {"species_accuracy": species_hits / n, **({"breed_accuracy": breed_hits / n} if class_labels == "breed" else {})}


def evaluate(checkpoint: str, data_root: str | None, split: str = "test", epoch: int | None = None,
             device: str = "auto", batch_size: int = 64, flip: bool = True, small_pets: bool = False,
             scales: Sequence[float] = (1.0,), ensemble: Sequence[str] = ()) -> dict:
    dev = pick_device(device)
    model = load_model(checkpoint, epoch, dev)
    models = [model, *(load_model(other, None, dev) for other in ensemble)]
    if any(other.cfg.image_size != model.cfg.image_size for other in models):
        raise ValueError("every model of an ensemble must work at the same image size")
    dataset = PetDataset(data_root, split, model.cfg.image_size, "none")
    result = evaluate_model(models, DataLoader(dataset, batch_size=batch_size), dev, flip, scales)
    out = {"pixel_accuracy": result["pixel_accuracy"], "miou": result["miou"], "iou": result["iou"],
           "n_images": len(dataset), "checkpoint": str(checkpoint), "epoch": epoch, "split": split, "flip": flip,
           **({"scales": list(scales)} if list(scales) != [1.0] else {}),
           **({"ensemble": [str(other) for other in ensemble]} if ensemble else {})}
    if model.class_head is not None and not ensemble:
        every_photo = PetDataset(data_root, split, model.cfg.image_size, "none", segmentation=False)
        out["classes"] = {"n_images": len(every_photo),
                          **class_accuracy(model, every_photo, read_config(checkpoint)["train"]["class_labels"], dev)}
    if small_pets:
        out["small_pets"] = {canvas: small_pet_scores(models, dataset, canvas, flip, test_scales=tuple(scales))
                             for canvas in ("grey", "mirror")}
    return out


def training_photos(checkpoint: str, data_root: str | None) -> dict:
    """How many trainval photos the checkpoint's recipe trained on, counted in `data_root` by the
    same data layer that trained it: those with a trimap (its label fraction of them, and of how many
    breeds) and, when it used them, those without."""
    config = read_config(checkpoint)
    train, size = config["train"], config["model"]["image_size"]
    masked = PetDataset(data_root, TRAINING_SPLIT, size, fraction=train.get("label_fraction", 1.0)).entries
    without = 0
    if train.get("use_unlabeled") or train.get("pseudo_labels"):
        every, labeled = (PetDataset(data_root, TRAINING_SPLIT, size, segmentation=s).entries for s in (False, True))
        without = len(every) - len(labeled)
    return {"with_trimap": len(masked), "breeds_with_trimap": len({e.breed for e in masked}), "without_trimap": without}


def record(checkpoint: str, result: dict, data_root: str | None, argv: list[str]) -> None:
    """Keep `result` in the checkpoint's metrics.json, under "evaluation"."""
    path = Path(checkpoint) / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["evaluation"] = {**{k: v for k, v in result.items() if k != "checkpoint"},
                             "command": shlex.join(["python", "-m", "vitviz.evaluate", *argv]),
                             "commit": git_commit(), "training_photos": training_photos(checkpoint, data_root)}
    atomic_write_json(path, metrics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    parser.add_argument("--data-root", default=None, help="dataset folder (or $VITVIZ_DATA)")
    parser.add_argument("--split", default="test", choices=["test", "trainval"])
    parser.add_argument("--epoch", type=int, default=None, help="evaluate this snapshot instead of the last weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                        help="average each photo's probabilities with its mirror image's, as the app does")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], metavar="S",
                        help="also average over the photo resized by these factors, e.g. 0.75 1 1.25 (the app "
                             "does not: a measured experiment)")
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="DIR",
                        help="also average the answers of these checkpoints (the app shows one model: an experiment)")
    parser.add_argument("--small-pets", action="store_true", help="also score the photos shrunk to 10-50%% of the frame")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--record", action="store_true",
                        help="keep the result in the checkpoint's metrics.json (final weights only)")
    args = parser.parse_args(argv)
    if args.record and args.epoch is not None:
        parser.error("--record keeps the scores of the final weights: leave out --epoch")
    if args.record and args.scales != [1.0]:
        parser.error("--record keeps the scores of the app's masks, made at the photo's one size: leave out --scales")
    if args.record and args.ensemble:
        parser.error("--record keeps the scores of the checkpoint's own masks: leave out --ensemble")
    if any(not 0.1 <= s <= 4 for s in args.scales):
        parser.error("--scales: each factor between 0.1 and 4")
    try:
        result = evaluate(args.checkpoint, args.data_root, args.split, args.epoch, args.device,
                          flip=args.flip, small_pets=args.small_pets, scales=args.scales, ensemble=args.ensemble)
        if args.record:
            record(args.checkpoint, result, args.data_root, sys.argv[1:] if argv is None else argv)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        iou = "  ".join(f"{k} {v:.4f}" for k, v in result["iou"].items())
        print(f"{result['checkpoint']} on {result['n_images']} {args.split} photos: "
              f"pixel accuracy {result['pixel_accuracy']:.4f}, mIoU {result['miou']:.4f} ({iou})")
        for canvas, scores in result.get("small_pets", {}).items():
            print(f"  small pets on a {canvas} canvas: pet IoU {scores['pet_iou']:.4f} (by scale {scores['by_scale']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
