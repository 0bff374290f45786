"""Turn a finished run folder into a shipped checkpoint folder:
`python -m vitviz.export runs/NAME checkpoints/NAME [--snapshots 1 2 3 …] [--int8-snapshots] [--after RUN …]
[--teacher RUN]`.

Ships what the app needs and nothing else: config.json, fp16 final weights, the chosen weight
snapshots (fp16, or row-wise int8 to stay within the repository's size budget) and metrics.json
(command, commit, device, wall time, per-epoch curve, final test metrics). Optimizer state stays
behind in the run folder.

`--after RUN …` ships a run that started from other runs' weights (`--init-from`: the student of
the self-training recipe, or a run continued with a new learning-rate schedule) as one history:
the earlier runs are listed in the order they trained, the curve is their epochs followed by this
run's, numbered on, metrics.json lists every stage (e.g. teacher, pseudo-labels, student) with its
command, commit, device and wall time, and snapshots of early epochs come from the first run, so
the Epochs view still starts from the first epoch. `--teacher RUN` adds the run whose pseudo-labels a
student trained from scratch learned from: a stage of the recipe (command, wall time), not of the
weights' history.
"""

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from safetensors import safe_open

from vitviz.training import checkpoint as ckpt


def export(run: Path, dest: Path, snapshots: list[int] | None = None, int8_snapshots: bool = False,
           after: Sequence[Path] = (), teacher: Path | None = None) -> Path:
    """`after`: the runs this one continued, in the order they trained; `teacher`: the run that made
    the pseudo-labels of a student trained from scratch (see the module's text)."""
    chain, dest = [Path(r) for r in (*after, run)], Path(dest)
    run, teacher = chain[-1], teacher and Path(teacher)
    if not (run / "metrics.json").is_file() and not (run / "metrics.jsonl").is_file():
        raise ckpt.CheckpointError(f"{run}: no metrics yet, the run has not finished an epoch")
    summaries = [summary(r, ckpt.read_config(r)) for r in chain]  # read once: their curves set the offsets
    sources, offset = {}, 0  # a later stage's epoch k is epoch offset + k of the history
    for stage, stage_summary in zip(chain, summaries):
        sources.update({offset + e: (stage, e) for e in ckpt.list_snapshots(stage)})
        offset += len(stage_summary["curve"])
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
    if len(chain) == 1 and teacher is None:
        metrics = summaries[-1]
    else:
        metrics = combined_summary(chain, summaries, teacher)
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


def stage_roles(pseudo_labels: list[str | None]) -> list[str]:
    """What each run of a chain was, from which ones trained on pseudo-labels: a run on
    pseudo-labels is a "student"; a first run whose weights a student continued is its "teacher"; a
    later run that only continued the previous one's weights is "continued"; else "from scratch"."""
    first = "student" if pseudo_labels[0] else "teacher" if any(pseudo_labels) else "from scratch"
    return [first] + ["student" if pseudo else "continued" for pseudo in pseudo_labels[1:]]


def combined_summary(chain: list[Path], summaries: list[dict], teacher: Path | None = None) -> dict:
    """One metrics.json for runs that continued each other (`summaries`: their `summary`, in
    training order), after the `teacher` whose pseudo-labels the first one learned from: each
    stage's summary (without its curve) under "stages", with the command and statistics of a
    student's pseudo-labels read from their file, and one curve (of the weights' own history)."""
    pseudo_files = [ckpt.read_config(run)["train"].get("pseudo_labels") for run in chain]
    stages, curve = [], []
    if teacher is not None:
        teacher_summary = summary(teacher, ckpt.read_config(teacher))
        stages.append({"stage": "teacher", "run": teacher.name,
                       **{k: v for k, v in teacher_summary.items() if k != "curve"}})
    for run, metrics, role, pseudo_file in zip(chain, summaries, stage_roles(pseudo_files), pseudo_files):
        if pseudo_file:
            with safe_open(pseudo_file, "pt") as f:
                meta = f.metadata()
            stages.append({"stage": "pseudo-labels", "file": Path(pseudo_file).name, "command": meta["command"],
                           **({"threshold": float(meta["threshold"])} if "threshold" in meta else {}), **json.loads(meta["stats"])})
        stages.append({"stage": role, "run": run.name, **{k: v for k, v in metrics.items() if k != "curve"}})
        offset = len(curve)
        curve += [{**row, "epoch": offset + row["epoch"], "stage": role} for row in metrics["curve"]]
    train_stages = [s for s in stages if "wall_time_s" in s]
    return {**summaries[-1], "command": " && ".join(s["command"] for s in stages),
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
    parser.add_argument("--after", type=Path, nargs="+", default=(), metavar="RUN",
                        help="the runs this one continued (--init-from), in the order they trained: "
                             "ship them all as one history")
    parser.add_argument("--teacher", type=Path, default=None, metavar="RUN",
                        help="the run whose pseudo-labels a student trained from scratch learned from: "
                             "recorded as a stage of the recipe")
    args = parser.parse_args(argv)
    try:
        out = export(Path(args.run), Path(args.dest), args.snapshots, args.int8_snapshots, args.after, args.teacher)
    except ckpt.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
