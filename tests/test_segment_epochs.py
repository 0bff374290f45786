"""The Segment and Epochs views' computations: overlays at the photo's size, probability maps,
guesses, metrics, snapshots and the GIF export."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vitviz.app.inference import ModelCache
from vitviz.training.checkpoint import read_metrics
from vitviz.training.jobs import process_alive
from vitviz.views.epochs import export_gif, final_label, metrics_text, overlay_frame, progression
from vitviz.views.segment import (CLASS_COLOURS, class_shares, colour_mask, legend_html, overlay_mask, probability_maps,
                                  top_guesses, unsure_pixels)

PHOTO = np.random.default_rng(0).integers(0, 256, (53, 37, 3), dtype=np.uint8)  # odd, taller than wide


@pytest.fixture(scope="module")
def cache():
    return ModelCache()


def test_overlay_has_the_photos_size_and_the_class_colours():
    mask = np.zeros((53, 37), np.uint8)
    mask[10:20] = 1
    mask[30:] = 2
    solid = overlay_mask(PHOTO, mask, 1.0)
    assert solid.shape == PHOTO.shape and solid.dtype == np.uint8
    assert tuple(solid[0, 0]) == CLASS_COLOURS["pet"]
    assert tuple(solid[15, 5]) == CLASS_COLOURS["background"]
    assert tuple(solid[40, 36]) == CLASS_COLOURS["border"]
    assert np.array_equal(overlay_mask(PHOTO, mask, 0.0), PHOTO)
    half = overlay_mask(PHOTO, mask, 0.5).astype(int)
    expected = (PHOTO.astype(int) + colour_mask(mask).astype(int)) / 2
    assert np.abs(half - expected).max() <= 0.5
    with pytest.raises(ValueError, match="differ in size"):
        overlay_mask(PHOTO, mask[:-1], 0.5)


def test_the_legend_names_every_class_in_its_colour():
    html = legend_html()
    for name, colour in CLASS_COLOURS.items():
        assert name in html and f"rgb{colour}" in html


def test_a_checkpoints_mask_and_maps_line_up_with_the_photo(tiny_checkpoint, cache):
    analysis = cache.analysis(PHOTO, tiny_checkpoint)
    mask = analysis.mask_at_photo_size()
    assert mask.shape == PHOTO.shape[:2] and mask.max() < 3
    maps = probability_maps(analysis.probs, PHOTO.shape, side=100)
    assert list(maps) == ["pet", "background", "border"]
    for picture in maps.values():
        assert picture.shape[1] == round(100 * 37 / 53) and picture.shape[0] > 100  # map, then its colour bar
    shares = class_shares(mask)
    assert abs(sum(shares.values()) - 1) < 1e-9


def test_top_guesses_are_sorted_and_named():
    probs = torch.tensor([0.1, 0.05, 0.5, 0.2, 0.15])
    guesses = top_guesses(probs, ["a", "b", "c", "d"], k=3)
    assert list(guesses) == ["c", "d", "class 4"]
    assert guesses["c"] == pytest.approx(0.5)


def test_export_gif_writes_one_frame_per_picture(tmp_path):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(4)]
    path = export_gif(frames, ["epoch 1", "epoch 2", "epoch 3", "epoch 5"], tmp_path / "out" / "p.gif")
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4
        assert gif.size == (60, 40 + 18)  # the label band sits on top of each frame
    with pytest.raises(ValueError, match="one label per frame"):
        export_gif(frames, ["epoch 1"], tmp_path / "bad.gif")


def test_the_epochs_view_of_the_tiny_run_has_snapshot_1_then_the_final_weights(tiny_checkpoint, cache):
    frames = progression(cache, PHOTO, tiny_checkpoint)
    # Training saved snapshots 1 and 2; snapshot 2 holds the final weights, so those stand for it.
    assert [(f.epoch, f.label) for f in frames] == [(1, "epoch 1"), (None, "final (epoch 2)")]
    assert frames[-1].analysis is cache.analysis(PHOTO, tiny_checkpoint)  # the final weights' own analysis
    picture = overlay_frame(frames[0].analysis, 0.5, max_side=20)
    assert picture.shape == (20, 14, 3)
    metrics = read_metrics(tiny_checkpoint)
    assert set(metrics) == {1, 2} and "train_loss" in metrics[2]
    assert frames[0].metrics == metrics[1] and frames[-1].metrics == metrics[2]
    text = metrics_text(frames[-1].label, frames[-1].metrics)
    assert text.startswith("**Final (epoch 2)**") and "pixel accuracy" in text and "mIoU" in text


def test_the_final_weights_are_named_by_their_epoch_and_whether_training_finished(tiny_checkpoint, tmp_path):
    assert final_label(tiny_checkpoint) == "final (epoch 2)"
    running = tmp_path / "running"
    running.mkdir()
    (running / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0}\n')  # no model.safetensors yet
    # a live training process (what jobs.process_alive looks for: "vitviz.train" in its command line)
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "vitviz.train"])
    try:
        deadline = time.monotonic() + 10
        while not process_alive(trainer.pid) and time.monotonic() < deadline:  # until it has exec'd
            time.sleep(0.05)
        (running / "progress.json").write_text(json.dumps({"state": "running", "pid": trainer.pid}))
        assert final_label(running) == "latest saved (epoch 1, still training)"
    finally:
        trainer.kill()
        trainer.wait()
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0}\n')  # no process trains it any more
    assert final_label(stopped) == "latest saved (epoch 1, training stopped)"
    assert final_label(tmp_path / "empty") == "latest saved"


def test_metrics_come_from_the_finished_summary_when_there_is_no_jsonl(tmp_path):
    curve = [{"epoch": 1, "train_loss": 1.2}, {"epoch": 2, "train_loss": 0.9, "val_loss": 0.8,
                                                "pixel_accuracy": 0.7, "miou": 0.5, "iou": {"pet": 0.6}}]
    (tmp_path / "metrics.json").write_text(json.dumps({"curve": curve}))
    metrics = read_metrics(tmp_path)
    assert metrics[2]["miou"] == 0.5
    assert "not validated" in metrics_text("epoch 1", metrics[1])
    assert "70.0%" in metrics_text("epoch 2", metrics[2]) and "pet 0.60" in metrics_text("epoch 2", metrics[2])
    assert "no metrics" in metrics_text("epoch 3", metrics.get(3))
    assert read_metrics(tmp_path / "missing") == {}


def test_the_mask_and_unsure_pixels_at_photo_size_are_computed_once_and_counted(tiny_checkpoint, cache):
    """The Segment tab and the tour both read it, for every session showing the photo."""
    analysis = cache.analysis(np.random.default_rng(2).integers(0, 256, (30, 50, 3), dtype=np.uint8),
                              str(tiny_checkpoint))
    before = analysis.nbytes
    mask = analysis.mask_at_photo_size()
    assert analysis.mask_at_photo_size() is mask and analysis.nbytes == before + mask.nbytes
    # The unsure pixels likewise, once the marking is asked for: an opacity change reuses them.
    unsure = analysis.unsure_at_photo_size()
    assert unsure.shape == (30, 50) and np.array_equal(unsure, unsure_pixels(analysis.probs_at_photo_size()))
    assert analysis.unsure_at_photo_size() is unsure and analysis.nbytes == before + mask.nbytes + unsure.nbytes
