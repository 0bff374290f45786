"""The explorer in a real browser (Debian's Chromium through Playwright): start the app, upload a
photo, click patches, switch layer, direction and colour scale, move the epoch slider, download a
PNG and the GIF. A screenshot of the whole page after every step lands in test-artifacts/.

The app runs a 64 px 'tiny' checkpoint trained here in a few seconds, with an empty checkpoints
folder, so the test never depends on the checkpoints shipped in the repository.
"""

import base64
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from browser import ARTIFACTS, browser_page, click_at, screenshot
from vitviz import train
from vitviz.app.inference import analyse
from vitviz.training.checkpoint import load_model
from vitviz.views.attention import attention_pictures
from vitviz.views.pictures import OUTLINE
from vitviz.app.serve import running_app

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHOTO_W, PHOTO_H = 320, 240  # the uploaded photo; the 64 px model cuts it into 8×8 patches
ASPECT = PHOTO_W / PHOTO_H
WAIT_MS = 60_000  # a busy 2-core machine can take a while for a full redraw of every tab


@pytest.fixture(scope="module")
def browser_run(tiny_data, tmp_path_factory) -> Path:
    """A 'tiny' run at 64 px (8×8 patches of 8 px, 2 layers): 2 epochs, snapshots 1 and 2."""
    runs = tmp_path_factory.mktemp("browser-runs")
    code = train.main(["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(runs), "--name", "tiny64",
                       "--workers", "0", "--image-size", "64", "--epochs", "2", "--snapshot-epochs", "1", "2"])
    assert code == 0
    return runs / "tiny64"


def make_photo(path: Path) -> Path:
    """A 'pet' (an orange ellipse with two eyes) on a noisy blue-green background."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:PHOTO_H, 0:PHOTO_W]
    background = np.stack([40 + 60 * x / PHOTO_W, 120 + 60 * y / PHOTO_H, 150 + 0 * x], axis=-1)
    background += rng.normal(0, 12, background.shape)
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((90, 50, 250, 200), fill=(215, 130, 40))
    draw.ellipse((130, 95, 150, 115), fill=(20, 20, 20))
    draw.ellipse((190, 95, 210, 115), fill=(20, 20, 20))
    image.save(path)
    return path


def img_src(page, elem_id: str) -> str | None:
    """The `src` of the picture inside the component with this elem_id (None when it shows none)."""
    return page.evaluate("id => document.querySelector(`#${id} img`)?.getAttribute('src') ?? null", elem_id)


def shown_picture(page, elem_id: str) -> np.ndarray:
    """The RGB pixels of the picture the component shows (a data URL drawn by the page)."""
    src = img_src(page, elem_id)
    assert src and src.startswith("data:image/png;base64,"), (elem_id, src and src[:40])
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as picture:
        return np.asarray(picture.convert("RGB"))


def wait_for_new_picture(page, elem_id: str, old: str | None, aspect: float | None = None) -> str:
    """Wait until the component shows a loaded picture other than `old` (and, given `aspect`, with
    that width / height ratio, i.e. of our photo rather than the example); return its src."""
    page.wait_for_function(
        """([id, old, aspect]) => {
            const img = document.querySelector(`#${id} img`);
            return img !== null && img.getAttribute('src') !== old && img.complete && img.naturalWidth > 0
                && (aspect === null || Math.abs(img.naturalWidth / img.naturalHeight - aspect) < 0.02);
        }""", arg=[elem_id, old, aspect], timeout=WAIT_MS)
    return img_src(page, elem_id)


def test_explorer_in_a_browser(browser_run, tmp_path):
    started = time.monotonic()
    photo = make_photo(tmp_path / "my-pet.png")
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    page_errors: list[str] = []
    with running_app("--checkpoint", str(browser_run), "--checkpoints-dir", str(empty),
                     "--runs-dir", str(browser_run.parent)) as app, browser_page() as page:
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: page_errors.append(str(e)))

        # 1. The app loads and analyses its first example photo.
        page.goto(app.url)
        expect(page.get_by_text("model input 64×64")).to_be_visible(timeout=WAIT_MS)
        example_overlay = wait_for_new_picture(page, "segment-overlay", None)
        screenshot(page, "browser-01-loaded")

        # 2. Upload our own photo: the status line and the Segment tab's overlay follow it.
        upload = page.locator("div.block").filter(has=page.get_by_text("Your photo (drop or click)", exact=True))
        upload.locator("input[type=file]").set_input_files(str(photo))
        expect(page.get_by_text(f"photo {PHOTO_W}×{PHOTO_H} → model input 64×64")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text(f"Photo {PHOTO_W}×{PHOTO_H} px · predicted share of pixels")).to_be_visible()
        wait_for_new_picture(page, "segment-overlay", example_overlay, ASPECT)
        size = page.locator("#segment-overlay img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert size == [PHOTO_W, PHOTO_H], "the mask overlay should have the photo's own size"
        screenshot(page, "browser-02-uploaded")

        # 3. Attention tab (Gradio renders a tab when it is first opened): once the redraw has reached
        # it, it shows our photo with the centre patch outlined; two clicks move the patch.
        page.get_by_role("tab", name="Attention", exact=True).click()
        photo_src = wait_for_new_picture(page, "attention-photo", None, ASPECT)
        size = page.locator("#attention-photo img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert size == [384, 288], "the clickable photo should be the uploaded one, enlarged to 384 px to be clicked"
        heads = wait_for_new_picture(page, "attention-heads", None)  # drawn with the photo
        status = page.locator("#attention-status")
        expect(status).to_contain_text("of the 8×8 grid")
        expect(status).to_contain_text("layer 1 of 2")
        screenshot(page, "browser-03-attention")

        click_at(page, "attention-photo", 1.5 / 8, 1.5 / 8)  # the centre of row 2, column 2
        expect(status).to_contain_text("Patch 9: row 2, column 2 of the 8×8 grid")
        heads_1 = wait_for_new_picture(page, "attention-heads", heads)
        photo_1 = wait_for_new_picture(page, "attention-photo", photo_src)  # the outline moved
        screenshot(page, "browser-04-attention-click-1")

        click_at(page, "attention-photo", 6.5 / 8, 5.5 / 8)  # the centre of row 6, column 7
        expect(status).to_contain_text("Patch 46: row 6, column 7 of the 8×8 grid")
        heads_2 = wait_for_new_picture(page, "attention-heads", heads_1)
        wait_for_new_picture(page, "attention-photo", photo_1)
        screenshot(page, "browser-05-attention-click-2")

        # 4. Layer slider (keyboard, as a user would), then direction and colour scale.
        page.locator("#attention-layer input[type=range]").press("ArrowRight")
        expect(status).to_contain_text("layer 2 of 2")
        expect(status).to_contain_text("Patch 46")  # the clicked patch is kept
        heads_3 = wait_for_new_picture(page, "attention-heads", heads_2)
        screenshot(page, "browser-06-attention-layer-2")

        page.locator("#attention-direction").get_by_label("key: what attends to this patch").check()
        expect(status).to_contain_text("what attends to it")
        heads_4 = wait_for_new_picture(page, "attention-heads", heads_3)
        screenshot(page, "browser-07-attention-key")

        page.get_by_label("global: one scale for all maps in a figure").check()
        wait_for_new_picture(page, "attention-heads", heads_4)
        expect(status).to_contain_text("layer 2 of 2")
        screenshot(page, "browser-08-attention-global")

        # The browser drew these pictures itself (attention_maps.js), at the sizes of the server's
        # pictures of the same view (how they compare pixel by pixel: test_browser_attention_maps.py).
        analysis = analyse(load_model(browser_run), np.asarray(Image.open(photo).convert("RGB")))
        server = attention_pictures(analysis, 46, 2, "key", "global")
        for elem_id, name in (("attention-photo", "photo"), ("attention-heads", "heads"),
                              ("attention-overview", "overview"), ("attention-rollout", "rollout")):
            assert shown_picture(page, elem_id).shape == getattr(server, name).shape, elem_id
        outlined = np.all(server.photo == OUTLINE, axis=-1)  # the clicked patch's outline, in the same place
        assert np.abs(shown_picture(page, "attention-photo")[outlined].astype(int) - OUTLINE).max() <= 2

        # 5. The PNG button writes the pictures on screen as PNG files, drawn again on the server,
        # and the per-head one downloads from the file list.
        page.locator("#attention-save").click()
        files = page.locator("#attention-png")
        heads_row = files.get_by_role("row", name=re.compile(r"-(local|global)-heads\.png"))
        expect(heads_row).to_be_visible(timeout=60_000)
        with page.expect_download() as info:
            heads_row.get_by_role("link").click()
        download = info.value
        data = Path(download.path()).read_bytes()
        assert data.startswith(PNG_SIGNATURE), f"{download.suggested_filename} is not a PNG"
        assert download.suggested_filename.endswith(".png")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "browser-download-heads.png").write_bytes(data)
        with Image.open(download.path()) as png:
            assert png.width > 100 and png.height > 100

        # 6. Epochs tab (drawn when opened): the strip ends on the final weights, where the large
        # view starts; the slider goes back to snapshot 1.
        page.get_by_role("tab", name="Epochs", exact=True).click()
        large = wait_for_new_picture(page, "epochs-large", None, ASPECT)
        metrics = page.locator("#epochs-metrics")
        expect(page.locator("#epochs-large")).to_contain_text("Mask: final (epoch 2)")
        expect(metrics).to_contain_text("Final (epoch 2)")
        expect(page.locator("#epochs-strip")).to_contain_text("final (epoch 2)")
        metrics_2 = metrics.inner_text()
        screenshot(page, "browser-09-epochs-2")

        page.locator("#epochs-snapshot input[type=range]").press("ArrowLeft")
        expect(page.locator("#epochs-large")).to_contain_text("Mask: epoch 1")
        wait_for_new_picture(page, "epochs-large", large)
        expect(metrics).to_contain_text("Epoch 1")
        assert metrics.inner_text() != metrics_2
        screenshot(page, "browser-10-epochs-1")

        # 7. The progression GIF downloads too.
        with page.expect_download() as info:
            page.get_by_role("button", name="Download the progression (GIF)").click()
        assert Path(info.value.path()).read_bytes()[:6] in (b"GIF87a", b"GIF89a")

        # Nothing went wrong on the way: no error toast, no uncaught script error.
        expect(page.locator(".toast-body.error")).to_have_count(0)
        assert not page_errors, page_errors
    # Keep an eye on the budget (about 90 s on a busy 2-core machine, the training included).
    print(f"browser test took {time.monotonic() - started:.1f} s")
