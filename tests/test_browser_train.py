"""The Train tab in a real browser: start a tiny run on a generated dataset, watch two epochs arrive
in the curves and the mask strip, see the run offered in the checkpoint picker, stop it, reload the
page, resume it."""

import json
import os
import signal

import pytest

from browser import app_server, browser_page, screenshot
from vitviz.synthetic import make_tiny_pet_dataset

CURVE_POINTS = "() => document.querySelector('#train-curves .js-plotly-plot')?.data?.[0]?.x?.length ?? 0"


@pytest.fixture
def run_folder(tmp_path):
    """The run the test starts; its job is killed at the end whatever happened."""
    folder = tmp_path / "runs" / "browser-run"
    yield folder
    try:
        os.kill(json.loads((folder / "job.json").read_text())["pid"], signal.SIGKILL)
    except (OSError, ValueError):
        pass  # never started, or already gone


def test_start_watch_stop_and_resume_from_the_train_tab(tmp_path, run_folder):
    make_tiny_pet_dataset(tmp_path / "data")
    args = ["--runs-dir", str(run_folder.parent), "--checkpoints-dir", str(tmp_path / "none"),
            "--checkpoint", str(tmp_path / "none"), "--data-root", str(tmp_path / "data")]
    with app_server(*args) as url, browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        preset = page.get_by_label("Preset (fills in the fields below)")
        preset.click()
        page.get_by_role("option", name="tiny", exact=True).click()
        page.get_by_label("Batch size").fill("8")
        page.get_by_label("Epochs", exact=True).fill("10000")
        page.get_by_label("Run name").fill("browser-run")
        page.locator("#train-start").click()

        page.wait_for_function(f"({CURVE_POINTS})() >= 2", timeout=60_000)
        masks = page.locator("#train-masks")
        masks.get_by_text("then after each epoch: epoch 1, epoch 2").wait_for(timeout=30_000)
        assert masks.locator("img").count() == 1  # the true masks, then one strip per epoch, in one picture
        status = page.locator("#train-status")
        assert "browser-run is running on " in status.inner_text()  # with its device
        masks.scroll_into_view_if_needed()
        screenshot(page, "train-running")

        page.get_by_label("Checkpoint", exact=True).click()  # the run's weights are offered to the other views
        page.get_by_role("option", name="runs/browser-run").wait_for(timeout=30_000)
        page.keyboard.press("Escape")

        page.locator("#train-stop").click()
        page.get_by_text("is stopped").wait_for(timeout=30_000)
        stopped_at = len((run_folder / "metrics.jsonl").read_text().splitlines())
        assert stopped_at >= 2

        page.reload()  # the view comes back from the run folder alone
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("browser-run is stopped").wait_for(timeout=30_000)
        page.wait_for_function(f"({CURVE_POINTS})() === {stopped_at}", timeout=30_000)

        page.locator("#train-resume").click()
        page.wait_for_function(f"({CURVE_POINTS})() > {stopped_at}", timeout=60_000)
        page.locator("#train-stop").click()
        page.get_by_text("is stopped").wait_for(timeout=30_000)
        screenshot(page, "train-resumed")
    assert f"resuming {run_folder} after epoch {stopped_at}" in (run_folder / "train.log").read_text()
