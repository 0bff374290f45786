"""Pseudo-labels for the trainval photos without a trimap: `python -m vitviz.pseudo`.

Self-training (Noisy Student, ST++): a teacher trained on the 400 labeled photos labels the 3,280
photos without a trimap (`vitviz.training.pseudo_labels`); a student then learns from both, under
strong noise (`python -m vitviz.train --init-from TEACHER --pseudo-labels FILE`). The teacher is one
model or an ensemble (`--teacher` repeated), its answers flip-averaged and, with `--scales`, averaged
over several photo sizes (a teacher stronger than the model alone, as the student's target);
`--soft` keeps its probabilities instead of its confident top class.

    python -m vitviz.pseudo --teacher runs/teacher --data-root ../shared/data --out runs/pseudo.safetensors
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from vitviz.training import checkpoint as ckpt
from vitviz.training.loop import device_description, git_commit, pick_device
from vitviz.training.pseudo_labels import pseudo_label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.pseudo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", action="append", required=True, help="checkpoint or run folder (repeat for an ensemble)")
    parser.add_argument("--data-root", default=None, help="dataset folder (or $VITVIZ_DATA)")
    parser.add_argument("--out", required=True, help="safetensors file to write")
    parser.add_argument("--threshold", type=float, default=None,
                        help="keep pixels whose top probability reaches this (default 0.7; not with --soft)")
    parser.add_argument("--soft", action="store_true",
                        help="keep the teacher's probabilities for every pixel instead of its confident top class")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="also average the teacher's answers over the photos resized by these factors")
    parser.add_argument("--device", default="auto", help="where the teachers run (a GPU when there is one)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.soft and args.threshold is not None:
        parser.error("--soft keeps every pixel's probabilities: leave out --threshold")
    threshold = 0.7 if args.threshold is None else args.threshold
    if not 0 <= threshold <= 1:
        parser.error("--threshold is a probability, between 0 and 1")
    if any(not 0.1 <= s <= 4 for s in args.scales):
        parser.error("--scales: each factor between 0.1 and 4")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    try:
        device = pick_device(args.device)
        teachers = [ckpt.load_model(folder, None, device) for folder in args.teacher]
        names, labels, stats = pseudo_label(teachers, args.data_root, threshold, device=device,
                                            scales=args.scales, soft=args.soft)
    except (ckpt.CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = "python -m vitviz.pseudo " + shlex.join(sys.argv[1:] if argv is None else argv)
    stats.update(wall_time_s=time.time() - started, device=device_description(device), commit=git_commit())
    meta = {"names": json.dumps(names), "teachers": json.dumps(args.teacher), "command": command,
            "stats": json.dumps(stats), **({} if args.soft else {"threshold": str(threshold)})}
    ckpt.atomic_save_tensors(Path(args.out), {"probabilities" if args.soft else "masks": labels}, meta)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
