"""The Attention tab's pictures as the browser draws them (vitviz/ui/attention_maps.js), compared
pixel by pixel with the server's pictures of the same view (vitviz.views.attention.attention_pictures).

The script runs alone in a blank Chromium page, on the data the server would send
(`attention_browser.attention_maps_data`) for a photo of one flat colour, so that nothing but the
drawing itself can differ (a flat JPEG decodes to its colour), and with attention weights far from
uniform, so that drawing the wrong patch, head, layer, direction or scale shows.
"""

import base64
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from browser import browser_page
from vitviz.app.inference import analyse
from vitviz.model.trace import Trace
from vitviz.training.checkpoint import load_model
from vitviz.views.attention import HEAD_SIDE, THUMB_SIDE, attention_pictures
from vitviz.views.attention_browser import attention_maps_data
from vitviz.views.pictures import font

SCRIPT = Path(__file__).resolve().parents[1] / "vitviz" / "ui" / "attention_maps.js"
ROLES = {"click": "photo", "heads": "heads", "overview": "overview", "rollout": "rollout",
         "classToken": "class_token"}  # the script's picture → AttentionPictures' field


@pytest.fixture(scope="module")
def peaked_analysis(tiny_class_checkpoint):
    """The tiny class-token model's analysis of a flat 45×61 photo, its attention replaced by
    sharply peaked random weights (rows still sum to 1)."""
    analysis = analyse(load_model(tiny_class_checkpoint), np.full((45, 61, 3), (90, 140, 200), np.uint8))
    generator = torch.Generator().manual_seed(0)
    peaked = [(torch.randn(w.shape, generator=generator) * 3).softmax(-1) for w in analysis.trace.attentions]
    return dataclasses.replace(analysis, trace=Trace(attentions=peaked), _fitted={})


def map_areas(picture: np.ndarray, tiles: int, columns: int, tile_h: int, tile_w: int, gap: int = 6) -> np.ndarray:
    """True on the maps of a `vitviz.views.pictures.tile` sheet, False on its labels and margins
    (the labels' font differs between Pillow and the browser)."""
    label_h = font(max(10, min(18, tile_w // 8))).size + 6
    areas = np.zeros(picture.shape[:2], bool)
    for i in range(tiles):
        row, col = divmod(i, columns)
        x, y = gap + col * (tile_w + gap), gap + row * (tile_h + label_h + gap) + label_h
        areas[y:y + tile_h, x:x + tile_w] = True
    return areas


def drawn_in_browser(page, data: dict, click: tuple[float, float] | None = None) -> tuple[dict, list]:
    """Mount the script's five pictures on a blank page with `data` as the photo's value, click the
    photo at (x, y) of its own pixels if asked; → ({role: RGB array}, what it sent to the server)."""
    page.set_content("<html><body></body></html>")
    page.add_script_tag(content=SCRIPT.read_text())
    page.evaluate("""data => {
        window.sent = [];
        for (const role of ["click", "heads", "overview", "rollout", "classToken"]) {
            const element = document.createElement("div");
            element.id = role;
            element.innerHTML = "<img>";
            document.body.appendChild(element);
            const props = {role, label: role, value: role === "click" ? data : null};
            window.vitvizAttention.mount(element, props, (event, detail) => window.sent.push([event, detail]),
                                         () => {});
        }
    }""", data)
    page.wait_for_function("() => [...document.images].every(img => img.complete && img.naturalWidth > 0)")
    if click is not None:
        before = page.evaluate("() => document.querySelector('#heads img').src")
        size = page.evaluate("() => { const img = document.querySelector('#click img');"
                             " const box = img.getBoundingClientRect();"
                             " return [box.x, box.y, box.width / img.naturalWidth]; }")
        page.mouse.click(size[0] + click[0] * size[2], size[1] + click[1] * size[2])
        page.wait_for_function("old => document.querySelector('#heads img').src !== old", arg=before)
    pictures = {}
    for role in ROLES:
        src = page.evaluate("role => document.querySelector(`#${role} img`).src", role)
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as png:
            pictures[role] = np.asarray(png.convert("RGB")).astype(int)
    return pictures, page.evaluate("() => window.sent")


def compare(shown: dict, expected, analysis) -> dict[str, float]:
    """Mean |difference| per picture, on the maps only for the tiled ones."""
    layers, heads = len(analysis.trace.attentions), analysis.trace.attentions[0].shape[1]
    differences = {}
    for role, name in ROLES.items():
        picture = getattr(expected, name)
        assert shown[role].shape == picture.shape, role
        difference = np.abs(shown[role] - picture).mean(-1)
        if role in ("heads", "classToken", "overview"):
            tile_h, tile_w = analysis.photo_fitted(THUMB_SIDE if role == "overview" else HEAD_SIDE).shape[:2]
            tiles, columns = (layers * heads, heads) if role == "overview" else (heads, min(4, heads))
            difference = difference[map_areas(picture, tiles, columns, tile_h, tile_w)]
        differences[role] = float(difference.mean())
    return differences


def test_the_browser_draws_the_servers_pictures(peaked_analysis):
    data = json.loads(json.dumps(attention_maps_data(peaked_analysis, 5, 2, "key", "local")))  # as sent
    with browser_page() as page:
        shown, sent = drawn_in_browser(page, data)
        same = compare(shown, attention_pictures(peaked_analysis, 5, 2, "key", "local"), peaked_analysis)
        assert max(same.values()) < 1.0, same  # the same pictures, up to rounding
        for view in [(6, 2, "key", "local"), (5, 1, "key", "local"), (5, 2, "query", "local"),
                     (5, 2, "key", "global")]:  # another patch, layer, direction or scale
            other = compare(shown, attention_pictures(peaked_analysis, *view), peaked_analysis)
            assert max(other.values()) > 10 * max(same.values()) and max(other.values()) > 3, (view, other)
        assert sent == []

        # A click on patch 14 (row 4, column 3 of the 4×4 grid): drawn at once, then sent to the server
        # as gr.SelectData would report it, in the photo's pixels.
        height, width = data["sizes"]["click"]
        x, y = 2.5 / 4 * width, 3.5 / 4 * height
        shown, sent = drawn_in_browser(page, data, click=(x, y))
        clicked = compare(shown, attention_pictures(peaked_analysis, 14, 2, "key", "local"), peaked_analysis)
        assert max(clicked.values()) < 1.0, clicked
        assert len(sent) == 1 and sent[0][0] == "select"
        assert sent[0][1]["index"] == pytest.approx([x, y], abs=1.5)
