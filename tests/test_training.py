"""Data pipeline, metrics, training runs (resume, stop, DDP) and the evaluate / shapes CLIs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vitviz import evaluate, shapes, train
from vitviz.training import checkpoint as ckpt
from vitviz.training.data import IGNORE, PetDataset, read_trimap, resolve_root
from vitviz.training.metrics import confusion, summarize

REPO = Path(__file__).resolve().parents[1]


def tiny_args(data, runs, name, *extra):
    return ["--preset", "tiny", "--data-root", str(data), "--runs-dir", str(runs), "--name", name, "--workers", "0", *extra]


def test_dataset_selects_labeled_entries_and_maps_trimap_values(tiny_data):
    seg = PetDataset(tiny_data, "trainval", 32)
    everything = PetDataset(tiny_data, "trainval", 32, segmentation=False)
    assert len(seg) == 16 and len(everything) == 20  # 4 breeds × (4 labeled + 1 unlabeled)
    image, mask, breed, species = seg[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert set(mask.unique().tolist()) <= {0, 1, 2}
    unlabeled = [everything[i][1] for i in range(len(everything))]
    assert any((m == IGNORE).all() for m in unlabeled)
    root = resolve_root(tiny_data)
    raw = read_trimap(root / "annotations" / "trimaps" / "Tabby_1.png")
    assert set(raw.unique().tolist()) == {0, 1, 2}


def test_evaluation_transform_is_deterministic_and_masks_stay_labels(tiny_data):
    a, b = PetDataset(tiny_data, "test", 48), PetDataset(tiny_data, "test", 48)
    assert torch.equal(a[3][0], b[3][0]) and torch.equal(a[3][1], b[3][1])
    strong = PetDataset(tiny_data, "trainval", 48, "strong")
    for i in range(4):
        assert set(strong[i][1].unique().tolist()) <= {IGNORE, 0, 1, 2}  # nearest resize: no blended labels


def test_dataset_root_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no Oxford-IIIT Pet"):
        resolve_root(tmp_path)
    monkeypatch.delenv("VITVIZ_DATA", raising=False)
    with pytest.raises(ValueError, match="VITVIZ_DATA"):
        resolve_root(None)


def test_metrics_from_confusion():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    m = summarize(confusion(pred, target))
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)
    assert m["iou"]["pet"] == pytest.approx(1 / 3)  # tp 1, fp 1, fn 1
    assert m["iou"]["background"] == pytest.approx(3 / 4)
    assert m["iou"]["border"] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_run_folder_holds_weights_snapshots_and_metrics(tiny_checkpoint):
    files = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "train_state.safetensors", "metrics.jsonl", "metrics.json"} <= files
    assert ckpt.list_snapshots(tiny_checkpoint) == [1, 2]
    rows = [json.loads(line) for line in (tiny_checkpoint / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "val_loss", "pixel_accuracy", "iou", "miou", "lr", "images_per_s", "seconds"):
        assert key in rows[-1]
    summary = json.loads((tiny_checkpoint / "metrics.json").read_text())
    assert summary["command"].startswith("python -m vitviz.train") and summary["device"] and summary["commit"]
    assert summary["final"]["pixel_accuracy"] == rows[-1]["pixel_accuracy"]
    assert not list(tiny_checkpoint.rglob("*.tmp"))


@pytest.mark.parametrize("pipeline", [[], ["--data-on-device", "true", "--augment", "strong"]],
                         ids=["dataloader", "data-on-device"])
def test_resume_continues_exactly(tiny_data, tmp_path, pipeline):
    assert train.main(tiny_args(tiny_data, tmp_path, "straight", "--epochs", "3", *pipeline)) == 0
    assert train.main(tiny_args(tiny_data, tmp_path, "resumed", "--epochs", "1", *pipeline)) == 0
    assert train.main(["--resume", str(tmp_path / "resumed"), "--epochs", "3", "--workers", "0"]) == 0
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_existing_run_name_is_refused(tiny_data, tiny_checkpoint, capsys):
    assert train.main(tiny_args(tiny_data, tiny_checkpoint.parent, "tiny")) == 2
    assert "already exists" in capsys.readouterr().err


def test_sigterm_to_the_process_group_stops_cleanly_and_the_run_resumes(tiny_data, tmp_path):
    """As a Ctrl-C or a job stop does: the signal reaches the DataLoader worker too."""
    run = tmp_path / "long"
    args = tiny_args(tiny_data, tmp_path, "long", "--epochs", "500")
    args[args.index("--workers") + 1] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "vitviz.train", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 60
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped during epoch" in out
    progress = json.loads((run / "progress.json").read_text())
    assert progress["state"] == "stopped"
    done = progress["epoch"]
    assert done >= 1 and len((run / "metrics.jsonl").read_text().splitlines()) == done
    assert train.main(["--resume", str(run), "--epochs", str(done + 1), "--workers", "0"]) == 0
    assert json.loads((run / "progress.json").read_text())["state"] == "finished"


def test_torchrun_two_cpu_processes_with_gloo(tiny_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "vitviz.train", *tiny_args(tiny_data, tmp_path, "ddp", "--epochs", "1", "--threads", "1")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "ddp" / "model.safetensors").is_file()
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1


def test_evaluate_cli_prints_one_json_object(tiny_data, tiny_checkpoint, capsys):
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--data-root", str(tiny_data), "--json"]) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert set(flipped) >= {"pixel_accuracy", "miou", "iou", "n_images", "checkpoint"} and flipped["flip"] is True
    assert flipped["n_images"] == 16 and set(flipped["iou"]) == {"pet", "background", "border"}
    # One forward pass scores what the training curve recorded.
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--data-root", str(tiny_data), "--json", "--no-flip"]) == 0
    one_pass = json.loads(capsys.readouterr().out)
    summary = json.loads((tiny_checkpoint / "metrics.json").read_text())
    assert one_pass["pixel_accuracy"] == pytest.approx(summary["final"]["pixel_accuracy"]) and one_pass["flip"] is False


def test_evaluate_cli_fails_clearly_on_a_bad_checkpoint(tiny_data, tiny_checkpoint, tmp_path, capsys):
    assert evaluate.main(["--checkpoint", str(tmp_path), "--data-root", str(tiny_data)]) == 2
    assert "no config.json" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    weights = load_file(tiny_checkpoint / "model.safetensors")
    weights["seg_head.weight"] = torch.zeros(5, 5)
    save_file(weights, broken / "model.safetensors")
    assert evaluate.main(["--checkpoint", str(broken), "--data-root", str(tiny_data)]) == 2
    err = capsys.readouterr().err
    assert "do not match" in err and len(err.strip().splitlines()) == 1


def test_shapes_cli_shows_the_reference_journey(capsys):
    assert shapes.main(["--preset", "seed"]) == 0
    out = capsys.readouterr().out
    assert "86,284,806 (86.28M)" in out
    for shape in ("(B=1, C=3, H=128, W=128)", "(B=1, N=64, PPC=768)", "(B=1, N=64, D=768)", "(N=64, D=768)"):
        assert shape in out
    assert shapes.main(["--preset", "seed", "--embed-dim", "512", "--patch-size", "8"]) == 0
    assert "(B=1, N=256, D=512)" in capsys.readouterr().out
    assert shapes.main(["--preset", "seed", "--patch-size", "7"]) == 2


def test_export_ships_fp16_weights_and_int8_snapshots_that_still_segment(tiny_data, tiny_checkpoint, tmp_path):
    from vitviz.export import export

    dest = export(tiny_checkpoint, tmp_path / "shipped", snapshots=[1, 2], int8_snapshots=True)
    assert not (dest / "train_state.safetensors").exists()
    assert ckpt.list_snapshots(dest) == [1, 2]
    original = ckpt.load_model(tiny_checkpoint, 2)
    shipped = ckpt.load_model(dest, 2)
    x = PetDataset(tiny_data, "test", 32)[0][0][None]
    with torch.no_grad():
        a, b = original(x).mask_logits, shipped(x).mask_logits
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.98
    assert torch.allclose(a, b, atol=0.05 * a.abs().max().item())
    final = json.loads((dest / "metrics.json").read_text())
    assert final["shipped"]["snapshot_format"] == "int8-rowwise"


def test_the_commit_is_read_from_git_else_from_the_environment(monkeypatch):
    from vitviz.training import loop

    assert len(loop.git_commit().removesuffix("-dirty")) == 40  # this checkout is a git repository

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")  # a copy of the code without git (a lent GPU's)

    monkeypatch.setattr(loop.subprocess, "run", no_git)
    monkeypatch.delenv(loop.COMMIT_VAR, raising=False)
    assert loop.git_commit() == "unknown"
    monkeypatch.setenv(loop.COMMIT_VAR, "abc123")
    assert loop.git_commit() == "abc123"
