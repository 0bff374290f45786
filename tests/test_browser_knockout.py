"""The Knock-outs tab in a real browser (Debian's Chromium through Playwright), on the shipped
`default` checkpoint and the bundled cat photo the page opens with: switch a head off by clicking
its cell in the head chart and see the mask change, measure every head, switch everything back on.
Screenshots land in test-artifacts/.
"""

import re

import pytest

from browser import browser_page, click_at, screenshot
from vitviz.app.serve import running_app

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

WAIT_MS = 60_000
CELL, LEFT, TOP = 56, 56, 28  # the head chart's layout (vitviz.views.knockout): cell and label sizes in px


def changed_share(page) -> float:
    """The share of changed pixels the summary states, e.g. "**2.9%** of the 128×128 pixels…"."""
    match = re.search(r"([\d.]+)% of the \d+×\d+ pixels", page.locator("#knockout-summary").inner_text())
    assert match, page.locator("#knockout-summary").inner_text()
    return float(match.group(1)) / 100


def test_a_head_clicked_off_in_the_chart_changes_the_mask(tmp_path):
    page_errors: list[str] = []
    with running_app("--checkpoint", "checkpoints/default", "--runs-dir", str(tmp_path / "runs")) as app, \
            browser_page(1440, 900) as page:
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(app.url)
        expect(page.get_by_text("model input 128×128")).to_be_visible(timeout=WAIT_MS)
        page.get_by_role("tab", name="Knock-outs", exact=True).click()
        summary = page.locator("#knockout-summary")
        expect(summary).to_contain_text("Nothing is switched off", timeout=WAIT_MS)
        before = page.locator("#knockout-after img").get_attribute("src")

        # Block 3 · head 2 matters most for this photo (measured: 2.9 % of the pixels change without it).
        width, height = LEFT + 6 * CELL + 1, TOP + 6 * CELL + 1  # the default has 6 blocks of 6 heads
        click_at(page, "knockout-chart", (LEFT + 1.5 * CELL) / width, (TOP + 2.5 * CELL) / height)
        assert page.locator("#knockout-chart img").evaluate("img => [img.naturalWidth, img.naturalHeight]") \
            == [width, height]
        expect(summary).to_contain_text("Switched off: head 3·2.", timeout=WAIT_MS)
        page.get_by_text("Heads by number").click()  # the same switches, folded away: checked there too
        expect(page.locator("#knockout-heads input[type=checkbox]:checked")).to_have_count(1, timeout=WAIT_MS)
        expect(page.locator("#knockout-heads label", has_text="3·2").locator("input")).to_be_checked()
        assert changed_share(page) > 0.02
        page.wait_for_function("old => document.querySelector('#knockout-after img')?.getAttribute('src') !== old",
                               arg=before)
        screenshot(page, "knockout-01-head-off")

        # Measure every head: the chart fills in, and the note gives the time it took.
        page.locator("#knockout-measure").click()
        expect(page.locator("#knockout-chart-note")).to_contain_text("Measured in", timeout=WAIT_MS)
        seconds = float(re.search(r"Measured in ([\d.]+) s", page.locator("#knockout-chart-note").inner_text())[1])
        print(f"head importance of the default model, measured in the browser: {seconds:.2f} s")
        screenshot(page, "knockout-02-measured")

        # A whole block off, then everything back on.
        page.locator("#knockout-attention").get_by_text("2", exact=True).click()
        page.locator("#knockout-mlp").get_by_text("2", exact=True).click()
        expect(summary).to_contain_text("whole block 2", timeout=WAIT_MS)
        assert changed_share(page) > 0.05  # measured: 9.5 %
        page.get_by_role("button", name="Switch everything back on").click()
        expect(summary).to_contain_text("Nothing is switched off", timeout=WAIT_MS)
        expect(page.locator("#knockout-heads input[type=checkbox]:checked")).to_have_count(0, timeout=WAIT_MS)
        screenshot(page, "knockout-03-reset")
    assert not page_errors, page_errors
