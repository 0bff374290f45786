"""Every checkpoint the repository ships loads, runs on a photo, and says how it was made."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vitviz.app.inference import analyse
from vitviz.training.checkpoint import list_snapshots, load_model

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SHIPPED = sorted(p for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())
DATA = Path(os.environ.get("VITVIZ_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_the_app_has_a_default_and_the_budget_holds():
    assert {"default", "seed-small", "pos-sin1d", "pos-sin2d", "pos-none"} <= {p.name for p in SHIPPED}
    total = sum(f.stat().st_size for f in CHECKPOINTS.rglob("*") if f.is_file())
    assert total < 40 * 2**20


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_loads_and_segments_a_photo(folder):
    photo = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    for epoch in [None, *list_snapshots(folder)]:
        model = load_model(folder, epoch)
        result = analyse(model, photo)
        assert result.mask_at_photo_size().shape == (150, 200)
        assert len(result.trace.attentions) == model.cfg.depth
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("command", "commit", "device", "wall_time_s", "curve", "final"):
        assert metrics[key], key
    assert metrics["command"].startswith("python -m vitviz.train")
    assert 0 < metrics["final"]["pixel_accuracy"] <= 1


@pytest.mark.skipif(not (DATA / "oxford-iiit-pet").is_dir(), reason="the Oxford-IIIT Pet copy is not beside the repo")
def test_shipped_default_keeps_its_recorded_test_accuracy_in_fp16():
    from vitviz.evaluate import evaluate

    result = evaluate(str(CHECKPOINTS / "default"), str(DATA), "test", flip=False)  # as the curve was measured
    recorded = json.loads((CHECKPOINTS / "default" / "metrics.json").read_text())["final"]
    assert result["n_images"] == 398
    assert result["pixel_accuracy"] == pytest.approx(recorded["pixel_accuracy"], abs=2e-3)
    assert result["miou"] == pytest.approx(recorded["miou"], abs=3e-3)


def share_of_edges_inside_patches(mask: np.ndarray, patch_size: int) -> float:
    """Of the places where the class changes between neighbouring pixels, the share that lies inside
    a patch rather than on a patch border: 0 for a mosaic of P×P squares."""
    across = mask[:, 1:] != mask[:, :-1]  # between column j and j + 1
    down = mask[1:, :] != mask[:-1, :]
    inside = np.arange(1, mask.shape[1]) % patch_size != 0
    inside_rows = np.arange(1, mask.shape[0]) % patch_size != 0
    changes = across.sum() + down.sum()
    return float((across[:, inside].sum() + down[inside_rows, :].sum()) / max(1, changes))


@pytest.mark.parametrize("folder", [p for p in SHIPPED if list_snapshots(p)], ids=lambda p: p.name)
def test_the_epochs_tab_says_blocky_only_of_models_whose_first_masks_are(folder):
    """The Epochs tab's explanation follows the head; on the bundled cat photo, the first snapshot's
    mask is a mosaic of patches exactly when the text says "blocky"."""
    from vitviz.app.photos import load_photo_rgb
    from vitviz.views.epochs import mask_explanation

    model = load_model(folder, list_snapshots(folder)[0])
    cat = load_photo_rgb(Path(__file__).resolve().parents[1] / "vitviz" / "app" / "examples" / "chelsea-cat.png")
    mask = analyse(model, cat).probs.argmax(0).numpy()
    inside = share_of_edges_inside_patches(mask, model.cfg.patch_size)
    explanation = mask_explanation(model.cfg.head, model.cfg.patch_size, model.cfg.out_channels)
    if "not blocky" in explanation:
        assert inside > 0.5, f"{folder.name}: {inside:.0%} of the mask's edges lie inside patches"
    else:
        assert "are blocky" in explanation and inside < 0.1, f"{folder.name}: {inside:.0%} inside patches"
