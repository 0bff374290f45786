"""Collect finished runs into the experiments table:
`python -m vitviz.experiments --out checkpoints/experiments runs/seed-small runs/exp-* …`.

Each run's metrics.json (command, commit, device, wall time, per-epoch curve, final metrics) is
copied to `<out>/<run name>.json`, where the app and the README read them, and a Markdown table
is printed: change from the baseline, pixel accuracy, mean IoU, parameters, train time, device.
The epoch rows (10, 25) come from the baseline's own curve: its StepLR schedule and per-epoch
seeding make epoch k of a long run identical to a k-epoch run.
"""

import argparse
import json
import sys
from pathlib import Path

BASELINE = "seed-small"


def describe_change(config: dict, baseline: dict) -> str:
    """The settings in which a run differs from the baseline, e.g. 'head=mlp, lr=0.0008'."""
    diffs = []
    for section in ("model", "train"):
        for key, value in config[section].items():
            if key not in ("snapshot_epochs",) and baseline[section].get(key) != value:
                diffs.append(f"{key}={value}")
    return ", ".join(diffs) or "baseline"


def collect(runs: list[Path], out: Path | None = None) -> list[dict]:
    configs = {r.name: json.loads((r / "config.json").read_text()) for r in runs if (r / "metrics.json").is_file()}
    metrics = {name: json.loads((r / "metrics.json").read_text()) for r in runs
               if (name := r.name) in configs}
    if BASELINE not in configs:
        raise ValueError(f"the baseline run '{BASELINE}' is not among the finished runs")
    rows = []
    for name, m in metrics.items():
        rows.append({"run": name, "change": describe_change(configs[name], configs[BASELINE]),
                     "pixel_accuracy": m["final"]["pixel_accuracy"], "miou": m["final"]["miou"],
                     "parameters": m["parameters"], "minutes": m["wall_time_s"] / 60, "device": m["device"],
                     "epochs": m["epochs_done"]})
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.json").write_text(json.dumps({**m, "config": configs[name]}, indent=1) + "\n")
    base = metrics[BASELINE]
    for epoch in (10, 25):
        row = next((r for r in base["curve"] if r["epoch"] == epoch and "miou" in r), None)
        if row:
            rows.append({"run": f"{BASELINE}@{epoch}", "change": f"epochs={epoch}", "pixel_accuracy": row["pixel_accuracy"],
                         "miou": row["miou"], "parameters": base["parameters"],
                         "minutes": sum(r["seconds"] for r in base["curve"][:epoch]) / 60, "device": base["device"],
                         "epochs": epoch})
    return sorted(rows, key=lambda r: (r["change"] != "baseline", r["change"]))


def markdown_table(rows: list[dict]) -> str:
    lines = ["| change from seed-small | pixel accuracy | mean IoU | parameters | train time | device |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['change']} | {r['pixel_accuracy']:.4f} | {r['miou']:.4f} | {r['parameters'] / 1e6:.2f}M "
                     f"| {r['minutes']:.1f} min | {r['device']} |")
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
