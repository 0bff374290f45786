"""Helpers for the real-browser tests: drive Debian's Chromium (the app itself is started by
`vitviz.serve.running_app`).

Chromium comes from the distribution (`apt-get install chromium`, done by scripts/test.sh); the
tests skip with a reason when it or Playwright is missing, and never run `playwright install`.
"""

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000, fake_camera: bool = False):
    """A Playwright page in a fresh headless Chromium profile; with `fake_camera`, Chromium's test
    camera (a moving green picture) is the webcam, allowed without asking."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"] if fake_camera else []
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_ARGS + camera,
                                                       viewport={"width": width, "height": height},
                                                       permissions=["camera"] if fake_camera else [],
                                                       accept_downloads=True)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def click_at(page, elem_id: str, fx: float, fy: float, timeout_s: float = 60) -> None:
    """Click the picture of `elem_id` at a fraction (fx, fy) of its displayed width and height, once
    the picture has loaded and its box has stopped moving: a box measured while the page still lays
    itself out (a text wrapping beside it, the sidebar opening) would put the click off the picture."""
    img = page.locator(f"#{elem_id} img")
    img.wait_for(state="visible", timeout=timeout_s * 1000)
    page.wait_for_function("id => { const img = document.querySelector(`#${id} img`);"
                           " return img?.complete && img.naturalWidth > 0; }", arg=elem_id,
                           timeout=timeout_s * 1000)
    deadline, box = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        previous, box = box, img.bounding_box()
        if box and box == previous:
            break
        time.sleep(0.25)
    assert box and box["width"] > 0 and box["height"] > 0, f"#{elem_id} shows no picture"
    img.click(position={"x": fx * box["width"], "y": fy * box["height"]})
