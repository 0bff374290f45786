"""The Train tab in a real browser: start a tiny run on a generated dataset, watch two epochs arrive
in the curves and the mask strip, see the run offered in the checkpoint picker, stop it, reload the
page, resume it.

The test waits on the run folder itself (its metrics and its state, as the app reads them) with a
generous deadline, since on a busy machine a job may take a minute just to start; the page then
only has to follow, which it does within a poll or two.
"""

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from browser import browser_page, screenshot
from vitviz.app.serve import running_app
from vitviz.training import jobs
from vitviz.training.synthetic import make_tiny_pet_dataset

expect = pytest.importorskip("playwright.sync_api").expect

CURVE_POINTS = "() => document.querySelector('#train-curves .js-plotly-plot')?.data?.[0]?.x?.length ?? 0"
RUN_DEADLINE_S = 240  # for the job: start, train an epoch, stop (a slow, shared 2-core machine)
PAGE_MS = 60_000  # for the page to show what the run folder already says (it polls every second)


def epochs_done(folder: Path) -> int:
    path = folder / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def wait_for_run(folder: Path, what: str, condition: Callable[[], bool]) -> None:
    """Poll the run folder until `condition()` holds; after RUN_DEADLINE_S fail, saying where the run is."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            status = jobs.read_status(folder)
            pytest.fail(f"the run has not {what} after {RUN_DEADLINE_S} s: it is {status.state} with "
                        f"{epochs_done(folder)} epochs done; end of its train.log:\n{jobs.log_tail(folder)}")
        time.sleep(0.5)


def stopped(folder: Path) -> bool:
    return jobs.read_status(folder).state == "stopped"


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
    with running_app(*args) as app, browser_page() as page:
        page.set_default_timeout(PAGE_MS)
        page.goto(app.url)
        page.get_by_role("tab", name="Train").click()
        preset = page.get_by_label("Preset (fills in the fields below)")
        preset.click()
        page.get_by_role("option", name="tiny", exact=True).click()
        # The preset's values arrive from the server: typed before them, a field would be overwritten.
        expect(page.get_by_label("Width")).to_have_value("32")
        page.get_by_label("Batch size").fill("8")
        page.get_by_label("Epochs", exact=True).fill("10000")
        page.get_by_label("Run name").fill("browser-run")
        page.locator("#train-start").click()

        wait_for_run(run_folder, "finished 2 epochs", lambda: epochs_done(run_folder) >= 2)
        page.wait_for_function(f"({CURVE_POINTS})() >= 2")
        masks = page.locator("#train-masks")
        masks.get_by_text("then after each epoch: epoch 1, epoch 2").wait_for()
        assert masks.locator("img").count() == 1  # the true masks, then one strip per epoch, in one picture
        status = page.locator("#train-status")
        assert "browser-run is running on " in status.inner_text()  # with its device
        masks.scroll_into_view_if_needed()
        screenshot(page, "train-running")

        page.get_by_label("Checkpoint", exact=True).click()  # the run's weights are offered to the other views
        page.get_by_role("option", name="runs/browser-run").wait_for()
        page.keyboard.press("Escape")

        page.locator("#train-stop").click()
        wait_for_run(run_folder, "stopped", lambda: stopped(run_folder))
        page.get_by_text("is stopped").wait_for()
        stopped_at = epochs_done(run_folder)
        assert stopped_at >= 2

        page.reload()  # the view comes back from the run folder alone
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("browser-run is stopped").wait_for()
        page.wait_for_function(f"({CURVE_POINTS})() === {stopped_at}")

        page.locator("#train-resume").click()
        wait_for_run(run_folder, "trained an epoch after resuming", lambda: epochs_done(run_folder) > stopped_at)
        page.wait_for_function(f"({CURVE_POINTS})() > {stopped_at}")
        page.locator("#train-stop").click()
        wait_for_run(run_folder, "stopped after resuming", lambda: stopped(run_folder))
        page.get_by_text("is stopped").wait_for()
        screenshot(page, "train-resumed")
    assert f"resuming {run_folder} after epoch {stopped_at}" in (run_folder / "train.log").read_text()
