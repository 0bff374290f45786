"""Turn a finished run folder into a shipped checkpoint folder:
`python -m vitviz.export runs/NAME checkpoints/NAME [--snapshots 1 2 3 …] [--int8-snapshots] [--after RUN]`.

Ships what the app needs and nothing else: config.json, fp16 final weights, the chosen weight
snapshots (fp16, or row-wise int8 to stay within the repository's size budget) and metrics.json
(command, commit, device, wall time, per-epoch curve, final test metrics). Optimizer state stays
behind in the run folder.

`--after TEACHER` ships a run that started from another run's weights (`--init-from`, the student
of the self-training recipe) as one history: the curve is the teacher's epochs followed by the
student's, numbered on, metrics.json lists every stage (teacher, pseudo-labels, student) with its
command, commit, device and wall time, and snapshots of early epochs come from the teacher, so the
Epochs view still starts from the first epoch.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from safetensors import safe_open

from vitviz.training import checkpoint as ckpt


def export(run: Path, dest: Path, snapshots: list[int] | None = None, int8_snapshots: bool = False,
           after: Path | None = None) -> Path:
    run, dest = Path(run), Path(dest)
    if not (run / "metrics.json").is_file() and not (run / "metrics.jsonl").is_file():
        raise ckpt.CheckpointError(f"{run}: no metrics yet, the run has not finished an epoch")
    teacher = summary(after, ckpt.read_config(after)) if after else None  # read once: its curve sets the offset
    offset = len(teacher["curve"]) if teacher else 0  # the student's epoch k is epoch offset + k
    sources = {e: (after, e) for e in ckpt.list_snapshots(after)} if after else {}
    sources.update({offset + e: (run, e) for e in ckpt.list_snapshots(run)})
    available = sorted(sources)
    chosen = available if snapshots is None else snapshots
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ckpt.CheckpointError(f"{run}: no snapshots for epochs {missing} (have {available})")
    staging = dest.with_name(f".{dest.name}.export")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    config = ckpt.read_config(run)
    ckpt.atomic_write_json(staging / "config.json", config)
    model = ckpt.load_model(run)
    ckpt.atomic_save_tensors(staging / "model.safetensors", ckpt.half_state(model), {"format": "float16"})
    for epoch in chosen:
        snap = ckpt.load_model(*sources[epoch])
        tensors, meta = ckpt.int8_state(snap) if int8_snapshots else (ckpt.half_state(snap), {"format": "float16"})
        ckpt.atomic_save_tensors(ckpt.snapshot_path(staging, epoch), tensors, meta)
    metrics = summary(run, config)
    if after:
        metrics = combined_summary(after, teacher, run, metrics)
    metrics["shipped"] = {"weights": "float16", "snapshots": chosen,
                          "snapshot_format": "int8-rowwise" if int8_snapshots else "float16"}
    ckpt.atomic_write_json(staging / "metrics.json", metrics)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def read_curve(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path, config: dict) -> dict:
    if (run / "metrics.json").is_file():
        return json.loads((run / "metrics.json").read_text())
    return unfinished_summary(run, config)


def combined_summary(teacher: Path, teacher_metrics: dict, student: Path, metrics: dict) -> dict:
    """One metrics.json for a student and its teacher (`teacher_metrics`: its `summary`): each
    stage's summary (without its curve) under "stages", the pseudo-labels' command and statistics
    read from their file, and one curve."""
    stages = [{"stage": "teacher", "run": teacher.name, **{k: v for k, v in teacher_metrics.items() if k != "curve"}}]
    pseudo_file = ckpt.read_config(student)["train"].get("pseudo_labels")
    if pseudo_file:
        with safe_open(pseudo_file, "pt") as f:
            meta = f.metadata()
        stages.append({"stage": "pseudo-labels", "file": Path(pseudo_file).name, "command": meta["command"],
                       "threshold": float(meta["threshold"]), **json.loads(meta["stats"])})
    stages.append({"stage": "student", "run": student.name, **{k: v for k, v in metrics.items() if k != "curve"}})
    offset = len(teacher_metrics["curve"])
    curve = ([{**row, "stage": "teacher"} for row in teacher_metrics["curve"]] +
             [{**row, "epoch": offset + row["epoch"], "stage": "student"} for row in metrics["curve"]])
    train_stages = [s for s in stages if "wall_time_s" in s]
    return {**metrics, "command": " && ".join(s["command"] for s in stages),
            "wall_time_s": sum(s["wall_time_s"] for s in train_stages), "epochs_done": len(curve),
            "stages": stages, "curve": curve}


def unfinished_summary(run: Path, config: dict) -> dict:
    """metrics.json's fields for a run that was stopped before its last epoch, said plainly."""
    curve = read_curve(run)
    last = next((r for r in reversed(curve) if "miou" in r), {})
    progress = json.loads((run / "progress.json").read_text()) if (run / "progress.json").is_file() else {}
    return {"command": config.get("command", ""), "commit": progress.get("commit", "unknown"),
            "device": progress.get("device", "unknown"),
            "wall_time_s": sum(r["seconds"] for r in curve), "epochs_done": len(curve),
            "finished": False, "note": f"stopped after epoch {len(curve)} of {config['train']['epochs']}",
            "parameters": ckpt.load_model(run).num_params(),
            "final": {k: last.get(k) for k in ("pixel_accuracy", "miou", "iou")}, "final_epoch": last.get("epoch"),
            "final_split": config["train"]["val_split"], "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("dest")
    parser.add_argument("--snapshots", type=int, nargs="*", default=None, help="epochs to ship (default: all)")
    parser.add_argument("--int8-snapshots", action="store_true")
    parser.add_argument("--after", type=Path, default=None, metavar="TEACHER",
                        help="the run this one started from (--init-from): ship both as one history")
    args = parser.parse_args(argv)
    try:
        out = export(Path(args.run), Path(args.dest), args.snapshots, args.int8_snapshots, args.after)
    except ckpt.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
