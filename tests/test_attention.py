"""Attention views: slices, rollout, mean distance, clicks and the attention tab, on hand-made
tensors and on real traced forward passes of the tiny checkpoints."""

import base64
import io
import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from session import drawn, handler
from vitviz.app.i18n import text
from vitviz.app.inference import ModelCache, analyse
from vitviz.training.checkpoint import load_model
from vitviz.ui import attention as attention_tab
from vitviz.ui.context import AnalysisKey, Context, PhotoStore
from vitviz.ui.widgets import patch_at
from vitviz.views import attention as av, attention_browser, pictures as am
from vitviz.views.pictures import patch_centre


def _photo(height: int = 45, width: int = 61) -> np.ndarray:
    """A small photo with an odd, non-square size."""
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def plain_analysis(tiny_checkpoint):
    return analyse(load_model(tiny_checkpoint), _photo())


@pytest.fixture(scope="module")
def class_analysis(tiny_class_checkpoint):
    return analyse(load_model(tiny_class_checkpoint), _photo())


# ───────────────────────── real traced attention ─────────────────────────


@pytest.mark.parametrize("which", ["plain_analysis", "class_analysis"])
def test_traced_attention_rows_sum_to_one(which, request):
    analysis = request.getfixturevalue(which)
    rows, cols = analysis.grid
    tokens = rows * cols + int(analysis.has_class_token)
    assert len(analysis.trace.attentions) == 2  # the tiny preset has 2 blocks
    for weights in analysis.trace.attentions:
        assert weights.shape == (1, 2, tokens, tokens)
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, tokens))


def test_real_patch_attention_is_the_patch_row(plain_analysis):
    weights = plain_analysis.trace.attentions[1]
    maps = av.patch_attention(plain_analysis.trace.attentions, 1, 5, False, "query", plain_analysis.grid)
    assert maps.shape == (2, *plain_analysis.grid)
    torch.testing.assert_close(maps.flatten(1), weights[0, :, 5, :])


def test_real_class_token_model(class_analysis):
    attentions, grid = class_analysis.trace.attentions, class_analysis.grid
    assert class_analysis.has_class_token
    cls = av.class_token_attention(attentions, 0, grid)
    assert cls.shape == (2, *grid)
    torch.testing.assert_close(cls.flatten(1), attentions[0][0, :, 0, 1:])
    key = av.patch_attention(attentions, 0, 0, True, "key", grid)  # column of token 1, patch rows only
    torch.testing.assert_close(key.flatten(1), attentions[0][0, :, 1:, 1])


@pytest.mark.parametrize("which", ["plain_analysis", "class_analysis"])
def test_real_rollout_rows_sum_to_one(which, request):
    attentions = request.getfixturevalue(which).trace.attentions
    for residual in (True, False):
        rollout = av.attention_rollout(attentions, residual)
        t = attentions[0].shape[-1]
        assert rollout.shape == (t, t)
        torch.testing.assert_close(rollout.sum(-1), torch.ones(t))


# ───────────────────────── hand-made tensors ─────────────────────────


def test_rollout_matches_hand_computation():
    # Layer 1: heads [[1,0],[0,1]] and [[0,1],[1,0]] average to [[.5,.5],[.5,.5]];
    #   0.5·A + 0.5·I = [[.75,.25],[.25,.75]].
    # Layer 2: heads [[1,0],[1,0]] and [[1,0],[0,1]] average to [[1,0],[.5,.5]];
    #   0.5·A + 0.5·I = [[1,0],[.25,.75]].
    # R = layer2 · layer1 = [[.75,.25],[.25·.75 + .75·.25, .25·.25 + .75·.75]] = [[.75,.25],[.375,.625]].
    layer1 = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    layer2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]])
    torch.testing.assert_close(av.attention_rollout([layer1, layer2]), torch.tensor([[0.75, 0.25], [0.375, 0.625]]))
    # Without the residual it is the plain product [[1,0],[.5,.5]] · [[.5,.5],[.5,.5]].
    torch.testing.assert_close(av.attention_rollout([layer1, layer2], residual=False), torch.full((2, 2), 0.5))


def _numbered(tokens: int) -> torch.Tensor:
    """(1, 1, T, T) with entry (i, j) = 10·i + j, so a slice tells which row or column it came from."""
    i = torch.arange(tokens, dtype=torch.float32)
    return (10 * i[:, None] + i[None, :])[None, None]


def test_query_is_the_row_and_key_is_the_column_without_class_token():
    weights = [_numbered(4)]  # a 2x2 grid, no class token
    query = av.patch_attention(weights, 0, 2, False, "query")
    key = av.patch_attention(weights, 0, 2, False, "key")
    torch.testing.assert_close(query, torch.tensor([[[20.0, 21.0], [22.0, 23.0]]]))
    torch.testing.assert_close(key, torch.tensor([[[2.0, 12.0], [22.0, 32.0]]]))


def test_query_and_key_skip_the_class_token():
    weights = [_numbered(5)]  # class token at 0, then a 2x2 grid: patch 2 is token 3
    query = av.patch_attention(weights, 0, 2, True, "query")
    key = av.patch_attention(weights, 0, 2, True, "key")
    torch.testing.assert_close(query, torch.tensor([[[31.0, 32.0], [33.0, 34.0]]]))
    torch.testing.assert_close(key, torch.tensor([[[13.0, 23.0], [33.0, 43.0]]]))
    torch.testing.assert_close(av.class_token_attention(weights, 0), torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]))


def test_grid_comes_from_the_tokens_or_the_argument():
    weights = [_numbered(6)]  # 6 patches: not square, so the grid must be given
    with pytest.raises(ValueError, match="square"):
        av.patch_attention(weights, 0, 0, False)
    assert av.patch_attention(weights, 0, 4, False, "query", grid=(2, 3)).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="grid"):
        av.patch_attention(weights, 0, 0, False, "query", grid=(2, 2))
    with pytest.raises(ValueError, match="outside"):
        av.patch_attention(weights, 0, 6, False, "query", grid=(2, 3))
    with pytest.raises(ValueError, match="layer"):
        av.patch_attention(weights, 1, 0, False, "query", grid=(2, 3))
    with pytest.raises(ValueError, match="direction"):
        av.patch_attention(weights, 0, 0, False, "sideways", grid=(2, 3))


# ───────────────────────── clicks ─────────────────────────


@pytest.mark.parametrize("x, y, patch", [
    (0, 0, 0), (31, 0, 0), (32, 0, 1), (126, 0, 3),  # columns split at 31.75, 63.5, 95.25
    (127, 95, 15),  # the far edge is clamped into the last patch
    (0, 23, 0), (0, 24, 4), (64, 48, 10), (0.5, 94.9, 12),
])
def test_click_to_patch_on_an_odd_size(x, y, patch):
    assert am.click_to_patch(x, y, 127, 95, (4, 4)) == patch


@pytest.mark.parametrize("x, y", [(-1, 0), (0, -0.5), (128, 10), (10, 96)])
def test_click_outside_the_image_is_refused(x, y):
    with pytest.raises(ValueError, match="outside the 127x95 image"):
        am.click_to_patch(x, y, 127, 95, (4, 4))


def test_click_on_a_wide_display_and_a_non_square_grid():
    assert am.click_to_patch(199, 0, 200, 50, (2, 4)) == 3
    assert am.click_to_patch(50, 25, 200, 50, (2, 4)) == 5


def test_patch_box_holds_exactly_the_pixels_that_click_to_that_patch():
    width, height, grid = 29, 13, (3, 4)
    for patch in range(12):
        x0, y0, x1, y1 = am.patch_box(patch, grid, width, height)
        inside = {(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}
        clicked = {(x, y) for x in range(width) for y in range(height) if am.click_to_patch(x, y, width, height, grid) == patch}
        assert inside == clicked


# ───────────────────────── mean attention distance ─────────────────────────


def test_attending_to_itself_has_distance_zero():
    self_attention = torch.eye(16).expand(1, 3, 16, 16)
    distances = av.mean_attention_distance([self_attention, self_attention], (4, 4), 16, False)
    assert distances.shape == (2, 3)
    assert torch.all(distances == 0)


def test_attending_to_a_neighbour_is_one_patch_width():
    rows, cols, patch_size = 3, 4, 16
    neighbour = torch.zeros(rows * cols, rows * cols)
    for p in range(rows * cols):
        row, col = divmod(p, cols)
        neighbour[p, row * cols + (col + 1 if col + 1 < cols else col - 1)] = 1  # right, or left at the edge
    distances = av.mean_attention_distance([neighbour[None, None]], (rows, cols), patch_size, False)
    assert distances.tolist() == [[16.0]]


def test_distance_leaves_out_the_class_token_and_renormalises():
    # Every patch gives 0.9 to the class token and 0.1 to itself: over patches alone, that is all self.
    weights = torch.zeros(5, 5)
    weights[0] = 0.2
    weights[1:, 0] = 0.9
    weights[1:, 1:] += torch.eye(4) * 0.1
    assert av.mean_attention_distance([weights[None, None]], (2, 2), 8, True).tolist() == [[0.0]]


def test_uniform_distance_reference():
    # A 1x2 grid of 10 px patches: pairs (0, 0), (0, 10), (10, 0), (0, 0) → mean 5.
    assert av.uniform_attention_distance((1, 2), 10) == pytest.approx(5.0)


# ───────────────────────── display helpers ─────────────────────────


def test_normalise_local_and_global():
    maps = torch.tensor([[[0.0, 2.0]], [[1.0, 4.0]]])
    torch.testing.assert_close(av.normalise_maps(maps, "local"), torch.tensor([[[0.0, 1.0]], [[0.25, 1.0]]]))
    torch.testing.assert_close(av.normalise_maps(maps, "global"), torch.tensor([[[0.0, 0.5]], [[0.25, 1.0]]]))
    assert torch.all(av.normalise_maps(torch.zeros(1, 2, 2), "local") == 0)  # no division by zero
    with pytest.raises(ValueError):
        av.normalise_maps(maps, "loud")


def test_colourise_ends_and_overlay_size():
    assert am.colourise(np.array([0.0, 1.0])).tolist() == [list(am.VIRIDIS[0]), list(am.VIRIDIS[-1])]
    photo = _photo(95, 127)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1
    picture = am.overlay(photo, heat, patch=15)
    assert picture.shape == photo.shape and picture.dtype == np.uint8
    assert tuple(picture[94, 126]) == am.OUTLINE  # the bottom-right corner of the outlined patch 15
    hot = np.round(photo[:24, :32] * 0.4 + am.VIRIDIS[-1] * 0.6)  # patch 0 is hot (fixed-point blend: ±1)
    assert np.abs(picture[:24, :32].astype(int) - hot).max() <= 1


def test_pictures_of_a_photo_smaller_than_the_grid():
    tiny = _photo(2, 3)
    for patch in range(16):  # most patches of a 4x4 grid have no pixel of their own here
        assert am.outline_patch(am.draw_patch_grid(tiny, (4, 4)), patch, (4, 4)).shape == (2, 3, 3)
        assert am.overlay(tiny, np.ones((4, 4)), patch).shape == (2, 3, 3)


def test_tile_and_distance_pictures():
    sheet = am.tile([np.zeros((20, 30, 3), np.uint8)] * 5, [f"head {i}" for i in range(5)], columns=4)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 4 * 36 + 6
    distances = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
    assert len(av.distance_figure(distances).data) == 2  # one trace per head
    chinese = av.distance_figure(distances, "zh")
    assert chinese.layout.xaxis.title.text == "层" and chinese.data[1].name == "注意力头 2"


def test_fit_photo_only_shrinks():
    assert am.fit_size(300, 451, 512) == (300, 451)
    assert am.fit_size(1000, 3000, 512) == (171, 512)
    assert am.fit_photo(_photo(1000, 3000), 512).shape == (171, 512, 3)


# ───────────────────────── the Gradio tab ─────────────────────────


def _tab(checkpoint):
    with gr.Blocks() as demo:
        ctx = Context(ModelCache(), PhotoStore(), {"tiny": checkpoint}, analysis=gr.State(None),
                      point=gr.State(None), language=gr.State("en"))
        refresh = attention_tab.build(ctx)
    return demo, ctx, refresh


def unpack(fixed_point: str, shape) -> np.ndarray:
    """The browser's reading of `attention_browser.fixed_point` (attention_maps.js `unpack`)."""
    return np.frombuffer(base64.b64decode(fixed_point), "<u2").reshape(shape) / attention_browser.FIXED_POINT


@pytest.mark.parametrize("which", ["tiny_checkpoint", "tiny_class_checkpoint"])
def test_attention_tab_builds_and_refreshes(which, request):
    checkpoint = request.getfixturevalue(which)
    demo, ctx, refresh = _tab(checkpoint)
    key = AnalysisKey(ctx.photos.put(_photo()), str(checkpoint), None)
    out = drawn(refresh, key, *[c.value for c in refresh.inputs])
    assert len(out) == len(refresh.outputs)
    data, status, class_note, class_map, saved, layer, distance_plot, locality_note = out
    # The browser draws the maps from the data sent once per photo (attention_maps.js).
    assert data["sizes"]["click"] == (283, 384)  # the 45×61 photo enlarged so that its longer side is 384 px
    with Image.open(io.BytesIO(base64.b64decode(data["photo"].split(",")[1]))) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (384, 283)
    assert data["view"] == {"patch": patch_at(None, (4, 4)), "layer": 1, "direction": "query", "scale": "local"}
    analysis = ctx.analysis_for(key)
    weights = torch.stack([w[0] for w in analysis.trace.attentions]).numpy()
    assert data["shape"] == list(weights.shape) and data["classToken"] == (which == "tiny_class_checkpoint")
    assert np.abs(unpack(data["attention"], data["shape"]) - weights).max() <= 0.5 / 65535 + 1e-7
    assert np.abs(unpack(data["rollout"], weights.shape[-2:]) - analysis.rollout.numpy()).max() <= 0.5 / 65535 + 1e-7
    assert "Patch **10**" in status
    assert len(distance_plot.data) == 2  # the distance chart: one trace per head
    assert locality_note.startswith("**Measured on this photo:**")  # whether the heads are local, from their distances
    assert ("no class token" in class_note) == (which == "tiny_checkpoint")
    assert class_map["visible"] == (which == "tiny_class_checkpoint")  # no empty box without a class token

    on_click = handler(demo, "on_click")
    clicked = on_click(key, 2, "key", "global", gr.SelectData(None, {"index": [383, 0], "value": None}))
    point, status = clicked  # the browser has drawn the maps: the server keeps the point and says where it is
    assert point == pytest.approx((383 / 384, 0)) and patch_at(point, (4, 4)) == 3  # top-right patch of the 4x4 grid
    assert "Patch **3**" in status and "layer 2 of 2" in status and "what attends to it" in status

    on_control = handler(demo, "on_control")
    status, class_note = on_control(key, point, 2, "query", "global")
    assert "Patch **3**" in status and "what it attends to" in status

    empty = drawn(refresh, None, *[c.value for c in refresh.inputs])
    assert empty[0] is None and empty[1] == text("shell.no_photo")


def test_attention_data_is_the_weights_at_two_bytes_each_and_one_jpeg():
    """Sent once per photo: for the shipped model (64 tokens, 6 layers × 6 heads) 0.4 MB of JSON."""
    model = load_model(Path(__file__).resolve().parents[1] / "checkpoints" / "default")
    smooth = np.linspace(0, 255, 300 * 400 * 3).reshape(300, 400, 3).astype(np.uint8)  # a photo, not noise
    analysis = analyse(model, smooth)
    data = attention_browser.attention_maps_data(analysis, 0, 1, "query", "local")
    tokens = analysis.grid[0] * analysis.grid[1]
    weights = (len(analysis.trace.attentions) * model.cfg.num_heads + 1) * tokens**2  # every layer's, the rollout
    assert weights * 2 * 4 / 3 < len(json.dumps(data)) < weights * 2 * 4 / 3 + 30_000 < 450_000


def test_click_before_a_photo_says_so(tiny_checkpoint):
    demo, _, _ = _tab(tiny_checkpoint)
    on_click = handler(demo, "on_click")
    with pytest.warns(UserWarning, match="Upload or pick a photo first"):
        on_click(None, 1, "query", "local", gr.SelectData(None, {"index": [1, 1], "value": None}))


def test_overlay_equals_colouring_every_pixel():
    """`overlay` colours the cells before enlarging them: the same picture as colouring each pixel."""
    photo = _photo(95, 127)
    heat = np.random.default_rng(1).random((5, 7))
    expected = photo * 0.4 + am.colourise(am.upsample_nearest(heat, 95, 127)) * 0.6
    assert np.abs(am.overlay(photo, heat).astype(int) - np.round(expected)).max() <= 1


# ───────────────────────── one click's pictures, and their PNG files ─────────────────────────


@pytest.mark.parametrize("which", ["plain_analysis", "class_analysis"])
def test_attention_pictures_and_their_png_files(which, request, tmp_path):
    from PIL import Image

    from vitviz.views.attention import attention_pictures
    from vitviz.app.downloads import save_pngs

    analysis = request.getfixturevalue(which)
    pictures = attention_pictures(analysis, patch=5, layer=99, direction="key", scale="global")  # layer clamped to 2
    assert max(pictures.photo.shape[:2]) == am.CLICKABLE_SIDE  # a small photo is enlarged to be clicked
    assert pictures.photo.shape[0] / pictures.photo.shape[1] == pytest.approx(analysis.photo.shape[0] / analysis.photo.shape[1], abs=0.01)
    assert (pictures.class_token is not None) == analysis.has_class_token
    named = pictures.named("attention patch 5/layer 2")
    assert len(named) == 4 + int(analysis.has_class_token)
    paths = save_pngs(named, tmp_path)
    assert [p.name for p in paths][:2] == ["attention-patch-5-layer-2-photo.png", "attention-patch-5-layer-2-heads.png"]
    for path, picture in zip(paths, named.values()):
        with Image.open(path) as png:
            assert png.format == "PNG" and np.array_equal(np.asarray(png), picture)  # lossless


def test_png_folders_are_separate_per_save_and_pruned(tmp_path, monkeypatch):
    import os

    from vitviz.app import downloads

    monkeypatch.setattr(downloads, "PRUNE_EVERY_S", 0)  # look over the folder at every save

    picture = {"x": np.zeros((4, 4, 3), np.uint8)}
    first, second = downloads.save_pngs(picture, tmp_path)[0], downloads.save_pngs(picture, tmp_path)[0]
    assert first.parent != second.parent and first.name == second.name == "x.png"
    os.utime(first.parent, (0, 0))  # as if saved long ago
    downloads.save_pngs(picture, tmp_path)
    assert not first.parent.exists() and second.exists()


def test_analysis_keeps_what_every_click_needs(plain_analysis):
    torch.testing.assert_close(plain_analysis.rollout, av.attention_rollout(plain_analysis.trace.attentions))
    assert plain_analysis.rollout is plain_analysis.rollout  # computed once
    fitted = plain_analysis.photo_fitted(32)
    assert fitted is plain_analysis.photo_fitted(32) and max(fitted.shape[:2]) == 32


def test_the_png_button_saves_the_pictures_on_screen(tiny_checkpoint):
    from PIL import Image

    demo, ctx, refresh = _tab(tiny_checkpoint)
    key = AnalysisKey(ctx.photos.put(_photo()), str(tiny_checkpoint), None)
    files = handler(demo, "on_save")(key, patch_centre(3, (4, 4)), 2, "query", "local")
    paths = files["value"]
    assert files["visible"] and len(paths) == 4  # photo, heads, layers × heads, rollout
    assert Path(paths[1]).name == "attention-patch3-layer2-query-local-heads.png"
    with Image.open(paths[1]) as heads:
        assert heads.format == "PNG"
        expected = attention_tab.attention_pictures(ctx.analysis_for(key), 3, 2, "query", "local").heads
        assert np.array_equal(np.asarray(heads), expected)
    assert handler(demo, "on_save")(None, 3, 2, "query", "local") is not None  # a warning, not a crash
    out = drawn(refresh, AnalysisKey(ctx.photos.put(_photo()[::-1].copy()), str(tiny_checkpoint), None),
                     *[c.value for c in refresh.inputs])
    assert out[4]["visible"] is False  # no stale PNG list next to a new photo


def test_a_shared_png_is_written_once_per_content(tmp_path):
    from PIL import Image

    from vitviz.app import downloads

    picture = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    path = downloads.shared_png("map", picture, tmp_path)
    written = path.stat().st_mtime_ns
    assert downloads.shared_png("map", picture.copy(), tmp_path) == path and path.stat().st_mtime_ns == written
    with Image.open(path) as png:
        assert np.array_equal(np.asarray(png), picture)
    other = downloads.shared_png("map", picture[::-1].copy(), tmp_path)
    assert other != path and [p.name for p in other.parent.iterdir()] == ["map.png"]  # no partial file left


def test_words_in_pictures_use_only_glyphs_the_bundled_font_has():
    """Pillow's bundled font draws any non-ASCII character as an empty box: "256 ⊠ 192"."""
    assert am.drawable("256 × 192 → 3 · N–D") == "256 x 192 -> 3 . N-D"
    assert am.drawable("ペット") == "???"
    blank = np.zeros((40, 120, 3), np.uint8)
    assert np.array_equal(am.caption_band(blank, "8 × 8"), am.caption_band(blank, "8 x 8"))
    assert np.array_equal(am.label_strip("L1 × H2", 80, 12), am.label_strip("L1 x H2", 80, 12))
