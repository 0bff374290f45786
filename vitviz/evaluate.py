"""Evaluate a checkpoint: `python -m vitviz.evaluate --checkpoint DIR --data-root DIR --split test --json`.

Deterministic (eval mode, resize only, no test-time augmentation) over the split's labeled photos.
"""

import argparse
import json
import sys

from torch.utils.data import DataLoader

from vitviz.checkpoint import CheckpointError, load_model
from vitviz.data import PetDataset
from vitviz.train import evaluate_model, pick_device


def evaluate(checkpoint: str, data_root: str | None, split: str = "test", epoch: int | None = None,
             device: str = "auto", batch_size: int = 64) -> dict:
    dev = pick_device(device)
    model = load_model(checkpoint, epoch, dev)
    dataset = PetDataset(data_root, split, model.cfg.image_size, "none")
    result = evaluate_model(model, DataLoader(dataset, batch_size=batch_size), dev)
    return {"pixel_accuracy": result["pixel_accuracy"], "miou": result["miou"], "iou": result["iou"],
            "n_images": len(dataset), "checkpoint": str(checkpoint), "epoch": epoch, "split": split}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    parser.add_argument("--data-root", default=None, help="dataset folder (or $VITVIZ_DATA)")
    parser.add_argument("--split", default="test", choices=["test", "trainval"])
    parser.add_argument("--epoch", type=int, default=None, help="evaluate this snapshot instead of the last weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.checkpoint, args.data_root, args.split, args.epoch, args.device)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        iou = "  ".join(f"{k} {v:.4f}" for k, v in result["iou"].items())
        print(f"{result['checkpoint']} on {result['n_images']} {args.split} photos: "
              f"pixel accuracy {result['pixel_accuracy']:.4f}, mIoU {result['miou']:.4f} ({iou})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
