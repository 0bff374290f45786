"""Classroom mode in a real browser (Debian's Chromium through Playwright), at a projector's
1280×720: switch the page to Japanese, turn presenter mode on, walk the whole guided tour with Next
(each step says where it is and opens its tab, with this photo's numbers), go Back once, and turn
presenter mode off. A screenshot of the window after every step lands in test-artifacts/.

The app runs the 'tiny' checkpoint trained by conftest.py (32 px input, 4×4 patches, snapshots 1
and 2), so the test never depends on the checkpoints shipped in the repository.
"""

import re

import pytest

from browser import ARTIFACTS, browser_page, screenshot
from vitviz.app import i18n
from vitviz.app.serve import running_app
from vitviz.views import tour

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

WAIT_MS = 60_000  # a busy 2-core machine can take a while to redraw every tab
LANG = "ja"


def ja(key: str, **values) -> str:
    return i18n.text(key, LANG, **values)


def tab_title(tab_id: str) -> str:
    return ja(f"shell.tab_{tab_id}")


def window_shot(page, name: str) -> None:
    """What the projector shows: the 1280×720 window, not the whole page."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_the_whole_tour_in_japanese_in_presenter_mode(tiny_checkpoint, tmp_path):
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    page_errors: list[str] = []
    with running_app("--checkpoint", str(tiny_checkpoint), "--checkpoints-dir", str(empty),
                     "--runs-dir", str(tiny_checkpoint.parent)) as app, browser_page(1280, 720) as page:
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(app.url)
        expect(page.get_by_text("model input 32×32")).to_be_visible()  # English first: the browser is English

        # 1. Japanese: the labels, the tab titles and the texts the server writes all follow.
        page.locator("#language").get_by_text(i18n.LANGUAGES[LANG], exact=True).click()
        expect(page.get_by_role("tab", name=tab_title("journey"), exact=True)).to_be_visible()
        expect(page.get_by_role("tab", name=tab_title("attention"), exact=True)).to_be_visible()
        expect(page.get_by_label(ja("shell.checkpoint"), exact=True)).to_be_visible()
        expect(page.get_by_text(ja("shell.presenter"), exact=True)).to_be_visible()
        expect(page.get_by_text("モデル入力 32×32")).to_be_visible()  # the status line, rewritten by the server
        expect(page.get_by_text("model input 32×32")).to_have_count(0)
        screenshot(page, "tour-ja-00-switched")

        # 2. Presenter mode, switched in the browser alone: larger text.
        intro_size = "() => parseFloat(getComputedStyle(document.querySelector('#intro p')).fontSize)"
        normal = page.evaluate(intro_size)
        presenter = page.locator("#presenter").get_by_text(ja("shell.presenter"))
        presenter.click()
        expect(page.locator("body")).to_have_class(re.compile(r"\bpresenter\b"), timeout=5_000)
        assert page.evaluate(intro_size) >= normal * 1.3
        window_shot(page, "tour-ja-00-presenter")

        # 3. The tour: opening it shows step 1 and its tab; Next walks every step to the last.
        page.locator("#tour").get_by_text(ja("tour.panel", total=len(tour.STEPS))).click()
        progress, step_text = page.locator("#tour-progress"), page.locator("#tour-step")
        for index, step in enumerate(tour.STEPS):
            if index > 0:
                page.locator("#tour-next").click()
            expect(progress).to_contain_text(ja("tour.progress", step=index + 1, total=len(tour.STEPS)).strip("*"))
            expect(step_text).to_contain_text(ja(f"tour.{step.name}.title"))
            expect(page.get_by_role("tab", selected=True)).to_have_text(tab_title(step.tab))
            if step.name == "knockout":  # measured on this photo when the step is shown
                expect(step_text).to_contain_text("%")
            if step.tab == "attention":  # the browser-drawn pictures' own buttons are renamed too
                expect(page.locator("#attention-heads button")).to_have_attribute("title", ja("attention.full_screen"))
            if step.name == "patches":
                expect(step_text).to_contain_text("4×4")  # this photo's patch grid, from the forward pass
            if step.name == "training":  # a tab drawn only when shown: it draws now, in Japanese
                expect(page.locator("#epochs-metrics")).to_contain_text(ja("epochs.final_epoch", epoch=2))
                expect(page.locator("#epochs-large img")).to_be_visible()
            window_shot(page, f"tour-ja-{index + 1:02d}-{step.name}")
        expect(page.locator("#tour-next")).to_be_disabled()  # the last step
        expect(page.locator("#knockout-summary")).to_contain_text(ja("knockout.nothing_off"))  # the last tab, drawn
        screenshot(page, "tour-ja-10-last-step-page")

        page.locator("#tour-back").click()
        last = len(tour.STEPS) - 1
        expect(progress).to_contain_text(ja("tour.progress", step=last, total=len(tour.STEPS)).strip("*"))
        expect(page.get_by_role("tab", selected=True)).to_have_text(tab_title(tour.STEPS[last - 1].tab))

        presenter.click()  # and off again
        expect(page.locator("body")).not_to_have_class(re.compile(r"\bpresenter\b"), timeout=5_000)
        assert page.evaluate(intro_size) == normal

        expect(page.locator(".toast-body.error")).to_have_count(0)
        assert not page_errors, page_errors
