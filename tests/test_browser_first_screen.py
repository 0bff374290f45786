"""The explorer as a newcomer meets it, in a real browser (Debian's Chromium through Playwright), on
the shipped checkpoints: at 1440×900, and at 1280×720 in presenter mode, the photo and its mask are
on the first screen (checked from their bounding boxes) and so is each tab's main picture, no
picture's label runs under its buttons or covers a gallery's thumbnails, and no formula is wider
than its column; a clicked
point survives a tab switch and a checkpoint switch to another patch grid; a language switch
leaves no text of the old language; a webcam snapshot (Chromium's test camera) becomes the photo. Screenshots of every tab at both sizes land in test-artifacts/.

Beside the shipped checkpoints (8×8 patch grids) the app offers the tests' 'tiny' run (4×4), so
the point is seen mapped onto two grids.
"""

import json
import re
import time

import pytest

from browser import ARTIFACTS, browser_page, click_at, screenshot
from vitviz.app import i18n
from vitviz.app.serve import running_app

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

WAIT_MS = 60_000
# Each tab's main picture: on screen when the tab opens.
MAIN_PICTURE = {"segment": "segment-overlay", "journey": None, "positions": "positions-similarity-learned",
                "attention": "attention-heads", "knockout": "knockout-after", "epochs": "epochs-strip"}
SIZES = [(1440, 900, False), (1280, 720, True)]


# The pictures (with a download button) whose floating label overlaps their buttons.
LABELS_UNDER_BUTTONS = """() => [...document.querySelectorAll('.block')]
    .filter(block => block.offsetParent && block.querySelector(':scope > .image-container a.download-link'))
    .filter(block => {
        const label = block.querySelector(':scope > label[data-testid=block-label]');
        const buttons = block.querySelector(':scope > .image-container .icon-button-wrapper');
        if (!label || !buttons) return false;
        const a = label.getBoundingClientRect(), b = buttons.getBoundingClientRect();
        return a.right > b.left && b.right > a.left && a.bottom > b.top && b.bottom > a.top;
    })
    .map(block => block.id || block.innerText.slice(0, 40))"""


# The galleries whose floating label covers the top of their first thumbnail.
THUMBNAILS_UNDER_LABELS = """() => [...document.querySelectorAll('.block')]
    .filter(block => block.offsetParent && block.querySelector(':scope > .gallery-container .thumbnail-item'))
    .filter(block => {
        const label = block.querySelector(':scope > label[data-testid=block-label]');
        const thumbnail = block.querySelector(':scope > .gallery-container .thumbnail-item');
        return label && thumbnail.getBoundingClientRect().top < label.getBoundingClientRect().bottom;
    })
    .map(block => block.id || block.innerText.slice(0, 40))"""

# The display formulas on screen that are wider than their column (cut off, or scrolled sideways).
FORMULAS_TOO_WIDE = """() => [...document.querySelectorAll('.katex-display')]
    .filter(formula => formula.offsetParent && formula.scrollWidth > formula.clientWidth + 1)
    .map(formula => formula.innerText.slice(0, 40))"""


def on_first_screen(page, elem_id: str, height: int) -> dict:
    box = page.locator(f"#{elem_id}").bounding_box()
    assert box is not None, elem_id
    assert box["y"] >= 0 and box["y"] + box["height"] <= height, (elem_id, box, height)
    return box


@pytest.mark.parametrize("width, height, presenter", SIZES, ids=["1440x900", "1280x720-presenter"])
def test_the_photo_and_its_mask_come_first(width, height, presenter, tiny_checkpoint):
    page_errors: list[str] = []
    with running_app("--checkpoint", "checkpoints/default", "--runs-dir", str(tiny_checkpoint.parent)) as app, \
            browser_page(width, height) as page:
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        events = []  # what the page asks the server to run: {"fn_index": …, "trigger_id": …}
        page.on("request", lambda r: events.append(json.loads(r.post_data)) if "queue/join" in r.url else None)
        page.goto(app.url)
        expect(page.get_by_text("model input 128×128")).to_be_visible(timeout=WAIT_MS)
        page.wait_for_function("() => document.querySelector('#segment-overlay img')?.complete")
        page.wait_for_timeout(1500)
        # The page load draws the tab on screen and the tour panel, each by a change of its State; the
        # other tabs draw when opened (an unwanted change event per tab cost 1.5 s of a core per page load).
        states = page.evaluate("() => window.gradio_config.components.filter(c => c.type === 'state').map(c => c.id)")
        assert len([event for event in events if event["trigger_id"] in states]) == 2, events
        if presenter:
            page.locator("#presenter").get_by_text(i18n.text("shell.presenter")).click()
            expect(page.locator("body")).to_have_class(re.compile(r"\bpresenter\b"), timeout=5_000)
        photo, mask = on_first_screen(page, "segment-photo", height), on_first_screen(page, "segment-overlay", height)
        assert photo["height"] >= 300 and mask["height"] >= 300  # large enough to see the mask
        # every tab title on screen (none folded into a menu), each tab's main picture on the first screen
        for tab_id, picture in MAIN_PICTURE.items():
            title = i18n.text(f"shell.tab_{tab_id}")
            page.get_by_role("tab", name=title, exact=True).click()
            if picture:
                page.wait_for_function(f"() => document.querySelector('#{picture} img')?.complete")
                on_first_screen(page, picture, height)
            assert page.evaluate(LABELS_UNDER_BUTTONS) == [], tab_id  # a long label wraps short of them
            assert page.evaluate(FORMULAS_TOO_WIDE) == [], tab_id  # each formula fits its column
            assert page.evaluate(THUMBNAILS_UNDER_LABELS) == [], tab_id  # a gallery starts below its label
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"first-screen-{width}-{tab_id}.png"))  # the window, not the page
    assert not page_errors, page_errors


def test_one_point_for_every_tab_and_checkpoint_and_a_complete_language_switch(tiny_checkpoint):
    tiny = f"{tiny_checkpoint.parent.name}/tiny"
    with running_app("--checkpoint", "checkpoints/default", "--runs-dir", str(tiny_checkpoint.parent)) as app, \
            browser_page(1440, 900) as page:
        page.set_default_timeout(WAIT_MS)
        page.goto(app.url)
        expect(page.get_by_text("model input 128×128")).to_be_visible(timeout=WAIT_MS)

        # Click near the bottom-right corner of the photo in the Attention tab: patch 63 of the 8×8 grid.
        page.get_by_role("tab", name="Attention", exact=True).click()
        click_at(page, "attention-photo", 0.95, 0.95)
        box = page.locator("#attention-photo img").bounding_box()
        assert max(box["width"], box["height"]) >= 384 * 0.99  # the clickable photo, at least 384 px
        status = page.locator("#attention-status")
        expect(status).to_contain_text("Patch 63: row 8, column 8 of the 8×8 grid", timeout=WAIT_MS)

        # Another tab shows the same point.
        page.get_by_role("tab", name="Tensor journey", exact=True).click()
        journey_patch = page.locator("#journey-patch")
        expect(journey_patch).to_contain_text("Patch 63", timeout=WAIT_MS)

        # Another checkpoint (a 4×4 grid): the same spot is its patch 15, in both tabs.
        page.get_by_label("Checkpoint", exact=True).click()
        page.get_by_role("option", name=tiny).click()
        expect(page.get_by_text("model input 32×32")).to_be_visible(timeout=WAIT_MS)
        expect(journey_patch).to_contain_text("Patch 15", timeout=WAIT_MS)
        page.get_by_role("tab", name="Attention", exact=True).click()
        expect(status).to_contain_text("Patch 15: row 4, column 4 of the 4×4 grid", timeout=WAIT_MS)
        screenshot(page, "point-kept-across-checkpoints")

        # Japanese: no English text is left on the page (tab titles, labels, status, tab texts).
        page.get_by_role("tab", name="Segment", exact=True).click()
        expect(page.locator("#segment-expect")).to_contain_text("What to expect", timeout=WAIT_MS)
        # Timed from a page at rest, as a user's switch is: the tab's pictures loaded, nothing pending.
        page.wait_for_function("() => document.querySelector('#segment-overlay img')?.complete")
        page.wait_for_timeout(1000)
        started = time.monotonic()
        page.locator("#language").get_by_text(i18n.LANGUAGES["ja"], exact=True).click()
        english = ["Segment", "Tensor journey", "Attention", "Knock-outs", "Guided tour", "Checkpoint",
                   "model input", "What to expect", "predicted share of pixels", "Mask opacity", "About this tab"]
        page.wait_for_function("""words => {
            const text = document.body.innerText;
            return words.every(w => !text.includes(w));
        }""", arg=english, timeout=WAIT_MS)
        seconds = time.monotonic() - started
        print(f"language switch complete in the browser: {seconds:.2f} s")
        expect(page.locator("#segment-expect")).to_contain_text("期待できること")
        # Gradio's own words in the upload and camera boxes (in the browser's language) give way to ours.
        shown = page.evaluate("""() => ['#upload [data-testid=upload-text]', '#camera [title="grant webcam access"] .wrap']
            .map(s => document.querySelector(s)).map(e => [getComputedStyle(e).fontSize, getComputedStyle(e, '::after').content])""")
        assert shown == [["0px", json.dumps(i18n.text("shell.drop_photo", "ja"), ensure_ascii=False).replace("\\n", "\\a ")],
                         ["0px", json.dumps(i18n.text("shell.use_camera", "ja"), ensure_ascii=False)]], shown
        screenshot(page, "language-switched-ja")


def test_a_webcam_snapshot_becomes_the_photo(tiny_checkpoint):
    """A classroom points the laptop's camera at a pet: one snapshot is analysed like an upload,
    and the camera box is ready for the next one."""
    with running_app("--checkpoint", "checkpoints/default", "--runs-dir", str(tiny_checkpoint.parent)) as app, \
            browser_page(1440, 900, fake_camera=True) as page:
        page.set_default_timeout(WAIT_MS)
        page.goto(app.url)
        expect(page.get_by_text("photo 451×300 → model input 128×128")).to_be_visible(timeout=WAIT_MS)
        camera = page.locator("#camera")
        camera.get_by_text("Click to Access Webcam").click()
        # The capture button shows before the camera streams; a capture then takes nothing.
        page.wait_for_function("() => { const v = document.querySelector('#camera video');"
                               " return v !== null && v.readyState >= 2 && v.videoWidth > 0; }")
        camera.get_by_label("capture photo").click()
        # Chromium's test camera: a frame of its own size, not the bundled cat's 451×300
        expect(page.locator("#status")).to_contain_text(re.compile(r"photo (?!451×300)\d+×\d+ → model input 128×128"),
                                                        timeout=WAIT_MS)
        expect(page.locator("#segment-shares")).not_to_contain_text("451×300", timeout=WAIT_MS)
        expect(camera.get_by_text("Click to Access Webcam")).to_be_visible(timeout=WAIT_MS)  # ready again
        screenshot(page, "camera-snapshot")
