"""The experiments table: each run against the baseline run of its preset, metrics copied for the app."""

import dataclasses
import json
from pathlib import Path

from vitviz import experiments
from vitviz.training.presets import preset


def _run(root: Path, name: str, preset_name: str, accuracy: float, model_changes: dict | None = None,
         **train_changes) -> Path:
    """A finished run folder as `vitviz.train` leaves it (config.json and metrics.json only)."""
    model, train = preset(preset_name)
    config = {"model": {**model.to_dict(), **(model_changes or {})},
              "train": {**dataclasses.asdict(train), **train_changes}, "preset": preset_name}
    epochs = config["train"]["epochs"]
    curve = [{"epoch": e, "pixel_accuracy": accuracy * e / epochs, "miou": accuracy / 2 * e / epochs, "seconds": 6.0}
             for e in range(1, epochs + 1)]
    metrics = {"command": f"python -m vitviz.train --preset {preset_name}", "commit": "0" * 40, "device": "cpu",
               "wall_time_s": 6.0 * epochs, "epochs_done": epochs, "parameters": 1000,
               "final": {"pixel_accuracy": accuracy, "miou": accuracy / 2}, "curve": curve}
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_each_run_is_compared_with_the_baseline_of_its_preset(tmp_path):
    runs = [_run(tmp_path, "seed-small", "seed-small", 0.70),
            _run(tmp_path, "exp-lr", "seed-small", 0.74, lr=0.0016),
            _run(tmp_path, "default-skip", "default-skip", 0.80),
            _run(tmp_path, "default-long", "default-skip", 0.81, epochs=100)]
    rows = experiments.collect(runs)
    table = {(r["baseline"], r["change"]): r for r in rows}
    assert table["seed-small", "lr=0.0016"]["pixel_accuracy"] == 0.74
    assert table["default-skip", "baseline"]["pixel_accuracy"] == 0.80
    assert table["default-skip", "epochs=100"]["pixel_accuracy"] == 0.81  # only the epochs differ from default-skip
    # Epoch rows come from seed-small's own curve (a step schedule), never from a cosine one.
    epochs = preset("seed-small")[1].epochs
    assert table["seed-small", "epochs=10"]["pixel_accuracy"] == 0.70 * 10 / epochs
    assert [r["baseline"] for r in rows] == ["seed-small"] * 4 + ["default-skip"] * 2


def test_a_field_added_after_the_baseline_ran_counts_as_its_default(tmp_path):
    old = _run(tmp_path, "seed-small", "seed-small", 0.70)
    config = json.loads((old / "config.json").read_text())
    del config["train"]["data_on_device"]  # the baseline ran before this field existed
    (old / "config.json").write_text(json.dumps(config))
    new = _run(tmp_path, "exp-lr", "seed-small", 0.74, lr=0.0016)
    assert {r["change"] for r in experiments.collect([old, new])} >= {"baseline", "lr=0.0016"}


def test_a_run_without_its_baseline_is_refused_with_one_line(tmp_path, capsys):
    runs = [_run(tmp_path, "seed-small", "seed-small", 0.70), _run(tmp_path, "lonely", "default-skip", 0.8)]
    assert experiments.main([str(r) for r in runs]) == 2
    error = capsys.readouterr().err
    assert "lonely" in error and "no baseline run" in error and error.count("\n") == 1


def test_the_table_is_printed_and_each_run_copied_where_the_app_reads_it(tmp_path, capsys):
    runs = [_run(tmp_path, "seed-small", "seed-small", 0.70), _run(tmp_path, "exp-mlp", "seed-small", 0.69, {"head": "mlp"})]
    out = tmp_path / "experiments"
    assert experiments.main([*map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| seed-small | baseline | 0.7000 |" in printed and "| seed-small | head=mlp | 0.6900 |" in printed
    copied = json.loads((out / "exp-mlp.json").read_text())
    assert copied["final"]["pixel_accuracy"] == 0.69 and copied["config"]["model"]["head"] == "mlp"
