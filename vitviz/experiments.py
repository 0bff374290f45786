"""Collect finished runs into the experiments table:
`python -m vitviz.experiments --out checkpoints/experiments runs/seed-small runs/default-skip runs/exp-* …`.

Each run's metrics.json (command, commit, device, wall time, per-epoch curve, final metrics) is
copied to `<out>/<run name>.json`, where the app and the README read them, and a Markdown table
is printed: baseline, change from it, pixel accuracy, mean IoU, parameters, train time, device.
A run is compared with the baseline run of its preset (`BASELINES`): the article's suspects with
`seed-small`, changes to the previous recipe with `default-skip`, the hybrid recipe's ablations (`scripts/ablate_hybrid.sh`) with `hybrid`. The epoch rows (10, 25) of
`seed-small` come from its own curve: its StepLR schedule and per-epoch seeding make epoch k of a
long run identical to a k-epoch run.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from vitviz.model.vit import ViTConfig
from vitviz.training.presets import TrainConfig

BASELINES = ("seed-small", "default-skip", "hybrid")  # preset → the run of that preset unchanged (same name)
EPOCH_ROWS_FROM = "seed-small"
DEFAULTS = {"model": ViTConfig().to_dict(), "train": dataclasses.asdict(TrainConfig())}  # of fields a config lacks  # a step schedule: epoch k of its run is a k-epoch run


def describe_change(config: dict, baseline: dict) -> str:
    """The settings in which a run differs from the baseline, e.g. 'head=mlp, lr=0.0008'. A field
    the baseline's config lacks (added to the code after it ran) had its default value there."""
    diffs = []
    for section in ("model", "train"):
        for key, value in config[section].items():
            if key not in ("snapshot_epochs",) and baseline[section].get(key, DEFAULTS[section].get(key)) != value:
                diffs.append(f"{key}={value}")
    return ", ".join(diffs) or "baseline"


def collect(runs: list[Path], out: Path | None = None) -> list[dict]:
    configs = {r.name: json.loads((r / "config.json").read_text()) for r in runs if (r / "metrics.json").is_file()}
    metrics = {name: json.loads((r / "metrics.json").read_text()) for r in runs if (name := r.name) in configs}
    if not any(name in configs for name in BASELINES):
        raise ValueError(f"none of the baseline runs {', '.join(BASELINES)} is among the finished runs")
    rows = []
    for name, m in metrics.items():
        baseline = configs[name].get("preset")
        if baseline not in BASELINES or baseline not in configs:
            raise ValueError(f"run '{name}' (preset {baseline}) has no baseline run among the finished runs")
        rows.append({"run": name, "baseline": baseline, "change": describe_change(configs[name], configs[baseline]),
                     "pixel_accuracy": m["final"]["pixel_accuracy"], "miou": m["final"]["miou"],
                     "parameters": m["parameters"], "minutes": m["wall_time_s"] / 60, "device": m["device"],
                     "epochs": m["epochs_done"]})
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.json").write_text(json.dumps({**m, "config": configs[name]}, indent=1) + "\n")
    if EPOCH_ROWS_FROM in metrics:
        base = metrics[EPOCH_ROWS_FROM]
        for epoch in (10, 25):
            row = next((r for r in base["curve"] if r["epoch"] == epoch and "miou" in r), None)
            if row:
                rows.append({"run": f"{EPOCH_ROWS_FROM}@{epoch}", "baseline": EPOCH_ROWS_FROM, "change": f"epochs={epoch}",
                             "pixel_accuracy": row["pixel_accuracy"], "miou": row["miou"],
                             "parameters": base["parameters"],
                             "minutes": sum(r["seconds"] for r in base["curve"][:epoch]) / 60, "device": base["device"],
                             "epochs": epoch})
    return sorted(rows, key=lambda r: (BASELINES.index(r["baseline"]), r["change"] != "baseline", r["change"]))


def markdown_table(rows: list[dict]) -> str:
    lines = ["| baseline | change | pixel accuracy | mean IoU | parameters | train time | device |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['baseline']} | {r['change']} | {r['pixel_accuracy']:.4f} | {r['miou']:.4f} "
                     f"| {r['parameters'] / 1e6:.2f}M | {r['minutes']:.1f} min | {r['device']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="copy each run's metrics here")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.runs, args.out)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
