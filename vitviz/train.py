"""Train a segmentation ViT: `python -m vitviz.train --preset seed-small --data-root ../shared/data`.

The command line of the training loop (`vitviz.training.loop`): a preset and flags that override
it, or `--resume RUN` to continue a run folder where its last finished epoch left off (also after a
crash or SIGKILL). Runs unchanged under `torchrun --nproc_per_node N`.
"""

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from vitviz.model.vit import ViTConfig
from vitviz.training import checkpoint as ckpt
from vitviz.training.cli import add_dataclass_flags, overrides
from vitviz.training.data import SPECIES, breed_names, resolve_root
from vitviz.training.loop import num_classes_for, pick_device, train
from vitviz.training.presets import PRESETS, TrainConfig, preset
from vitviz.training.pseudo_labels import check_pseudo_labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="seed-small", choices=list(PRESETS))
    parser.add_argument("--data-root", default=None, help="dataset folder (or $VITVIZ_DATA)")
    parser.add_argument("--download", action="store_true", help="fetch the official dataset into --data-root first")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default=None, help="run folder name (default: preset and time)")
    parser.add_argument("--resume", default=None, metavar="RUN", help="continue the run in this folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--val-masks", type=int, default=6, metavar="K",
                        help="after every epoch save the predicted masks of the first K validation photos (0: none)")
    add_dataclass_flags(parser, ViTConfig, "model (overrides the preset)")
    add_dataclass_flags(parser, TrainConfig, "recipe (overrides the preset)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python -m vitviz.train " + shlex.join(sys.argv[1:] if argv is None else argv)

    try:
        if args.download:
            from vitviz.training.data import download
            download(args.data_root or os.environ.get("VITVIZ_DATA") or "data")
        if args.resume:
            run = Path(args.resume)
            config = ckpt.read_config(run)
            model_cfg = ViTConfig.from_dict(config["model"])
            if args.epochs and args.epochs != config["train"]["epochs"]:  # train on for longer
                config["train"]["epochs"] = args.epochs
                ckpt.atomic_write_json(run / "config.json", config)
            cfg = TrainConfig(**config["train"])
            data_root = args.data_root or config.get("data_root")
            command = config.get("command", command)
        else:
            model_cfg, cfg = preset(args.preset, overrides(args, ViTConfig), overrides(args, TrainConfig))
            if cfg.pseudo_labels:  # refused before the run folder is made
                check_pseudo_labels(cfg.pseudo_labels, model_cfg.image_size, cfg.loss)
            data_root = args.data_root
            root = resolve_root(data_root)
            if cfg.use_unlabeled and not model_cfg.class_token:
                raise ValueError("--use-unlabeled needs --class-token true: photos without a trimap only teach the class head")
            if model_cfg.class_token and not model_cfg.num_classes:
                model_cfg.num_classes = num_classes_for(cfg, root)
            if not args.name and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise ValueError("under torchrun pass --name, so every process writes to the same run")
            run = Path(args.runs_dir) / (args.name or f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
            if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 writes
                if (run / "config.json").exists():  # the folder alone may be the app's, holding the log
                    raise ValueError(f"{run} already exists: pass --resume {run} or another --name")
                labels = breed_names(root) if cfg.class_labels == "breed" else list(SPECIES)
                ckpt.atomic_write_json(run / "config.json", {
                    "model": model_cfg.to_dict(), "train": asdict(cfg), "preset": args.preset,
                    "data_root": str(root.parent), "labels": labels if model_cfg.num_classes else [],
                    "command": command})
            data_root = str(root)
    except (ValueError, FileNotFoundError, ckpt.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    device = pick_device(args.device)
    summary = train(run, model_cfg, cfg, data_root, device, workers=args.workers,
                    compile_model=args.compile, command=command, val_masks=args.val_masks)
    if summary:
        print(json.dumps({k: summary[k] for k in ("final", "wall_time_s", "epochs_done", "device")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
