"""Position-embedding views: similarity maps against the brief's formulas written out by hand,
dimension maps, the tables of a real checkpoint, accuracy per kind, and the Gradio tab."""

import json
import math
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from session import drawn, handler
from vitviz.app.i18n import text
from vitviz.app.inference import ModelCache
from vitviz.model.posembed import sincos_1d, sincos_2d
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training.checkpoint import load_model
from vitviz.ui import positions as positions_tab
from vitviz.ui.context import AnalysisKey, Context, PhotoStore
from vitviz.views import positions as pv
from vitviz.views.pictures import CLICKABLE_SIDE, draw_patch_grid, fit_photo, outline_patch, patch_centre


def pe_1d(x: int, dim: int) -> list[float]:
    """Brief §4: PE(x, 2i) = sin(x / 10000^(2i/D)), PE(x, 2i+1) = cos(x / 10000^(2i/D))."""
    row = [0.0] * dim
    for i in range(dim // 2):
        row[2 * i] = math.sin(x / 10000 ** (2 * i / dim))
        row[2 * i + 1] = math.cos(x / 10000 ** (2 * i / dim))
    return row


def pe_2d(x: int, y: int, dim: int) -> list[float]:
    """Brief §4: the column x in dimensions 0 … D/2−1, the row y in D/2 … D−1, with 10000^(4i/D)."""
    row = [0.0] * dim
    for i in range(dim // 4):
        row[2 * i] = math.sin(x / 10000 ** (4 * i / dim))
        row[2 * i + 1] = math.cos(x / 10000 ** (4 * i / dim))
        row[2 * i + dim // 2] = math.sin(y / 10000 ** (4 * i / dim))
        row[2 * i + 1 + dim // 2] = math.cos(y / 10000 ** (4 * i / dim))
    return row


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(p * q for p, q in zip(a, b))
    return dot / math.sqrt(sum(p * p for p in a) * sum(q * q for q in b))


GRID, DIM = (3, 4), 16


def test_1d_similarity_maps_match_the_formula():
    rows, cols = GRID
    table = [pe_1d(x, DIM) for x in range(rows * cols)]
    maps = pv.cosine_similarity_maps(sincos_1d(rows * cols, DIM), GRID)
    assert maps.shape == (rows * cols, rows, cols)
    for a in range(rows * cols):
        expected = [[cosine(table[a], table[r * cols + c]) for c in range(cols)] for r in range(rows)]
        torch.testing.assert_close(maps[a], torch.tensor(expected), atol=1e-5, rtol=0)


def test_2d_similarity_maps_match_the_formula():
    rows, cols = GRID
    table = [pe_2d(p % cols, p // cols, DIM) for p in range(rows * cols)]  # x = column, y = row
    maps = pv.cosine_similarity_maps(sincos_2d(GRID, DIM), GRID)
    for a in range(rows * cols):
        expected = [[cosine(table[a], table[r * cols + c]) for c in range(cols)] for r in range(rows)]
        torch.testing.assert_close(maps[a], torch.tensor(expected), atol=1e-5, rtol=0)


def test_similarity_of_a_patch_to_itself_is_one():
    maps = pv.cosine_similarity_maps(torch.randn(12, 8), GRID)
    torch.testing.assert_close(maps.flatten(1).diagonal(), torch.ones(12))
    with pytest.raises(ValueError, match="grid"):
        pv.cosine_similarity_maps(torch.randn(10, 8), GRID)


def test_dimension_map_is_the_table_column():
    table = torch.randn(12, 8)
    for d in (0, 5, 7):
        torch.testing.assert_close(pv.dimension_map(table, GRID, d).flatten(), table[:, d])
    assert pv.dimension_map(table, GRID, 2)[1, 3] == table[1 * 4 + 3, 2]
    with pytest.raises(ValueError, match="dimension 8"):
        pv.dimension_map(table, GRID, 8)


def test_tables_of_a_learned_checkpoint(tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    tables = pv.embedding_tables(model, model.cfg.grid)
    assert set(tables.tables) == {"learned", "sin1d", "sin2d"} and not tables.missing
    torch.testing.assert_close(tables.tables["learned"], model.pos_embed.weight.detach())
    torch.testing.assert_close(tables.tables["sin2d"], sincos_2d((4, 4), 32))
    assert "learned" in tables.model_note()
    assert pv.embedding_tables(model, model.cfg.grid) is tables  # kept with the model: clicks read them
    torch.testing.assert_close(tables.similarities("sin2d"), pv.cosine_similarity_maps(tables.tables["sin2d"], (4, 4)))
    assert tables.similarities("sin2d") is tables.similarities("sin2d")


def test_tables_of_a_sinusoidal_checkpoint(tiny_class_checkpoint):
    model = load_model(tiny_class_checkpoint)
    tables = pv.embedding_tables(model, model.cfg.grid)
    assert set(tables.tables) == {"sin1d", "sin2d"}
    assert "2D sinusoidal" in tables.missing["learned"] and "2D sinusoidal" in tables.model_note()


def test_a_width_the_2d_formula_cannot_use():
    model = SegmentationViT(ViTConfig(image_size=16, patch_size=8, embed_dim=6, depth=1, num_heads=2, pos_embed="none"))
    tables = pv.embedding_tables(model, (2, 2))
    assert set(tables.tables) == {"sin1d"} and "divisible by 4" in tables.missing["sin2d"]
    assert "no position embedding" in tables.model_note()


def test_pictures_have_the_sizes_clicks_are_mapped_with():
    maps = pv.cosine_similarity_maps(sincos_2d(GRID, DIM), GRID)
    cell = pv.map_cell(GRID)
    for colour_range in ("fixed", "stretch"):
        assert pv.similarity_image(maps, 5, GRID, colour_range).shape == (3 * cell, 4 * cell, 3)
        # 4 columns of 4 patches, about 512 px: (512 / 4 - 2) / 4 ≈ 32 px per patch, 2 px between maps.
        assert pv.all_similarities_image(maps, GRID, colour_range).shape == (3 * (3 * 32 + 2) + 2, 4 * (4 * 32 + 2) + 2, 3)
    assert pv.dimension_image(sincos_2d(GRID, DIM), GRID, 3).shape == (3 * cell, 4 * cell, 3)
    assert pv.matrix_image(sincos_2d(GRID, DIM)).dtype == np.uint8
    with pytest.raises(ValueError):
        pv.similarity_colours(maps[0], "loud")


def test_accuracy_table_reads_metrics_and_never_invents(tmp_path):
    (tmp_path / "pos-sin2d").mkdir()
    (tmp_path / "pos-sin2d" / "metrics.json").write_text(json.dumps(
        {"final": {"pixel_accuracy": 0.8123, "miou": 0.6234, "iou": [0.7, 0.8, 0.3]}, "final_split": "test"}))
    (tmp_path / "pos-none").mkdir()
    (tmp_path / "pos-none" / "metrics.json").write_text("{ half a file")
    table = pv.accuracy_markdown(tmp_path)
    assert "| 2D sinusoidal | `checkpoints/pos-sin2d` | 81.23% | 0.623 | test |" in table
    assert "| learned | `checkpoints/seed-small` | not trained yet |" in table
    assert "| 1D sinusoidal | `checkpoints/pos-sin1d` | not trained yet |" in table
    assert "unreadable" in table


@pytest.mark.parametrize("which", ["tiny_checkpoint", "tiny_class_checkpoint"])
def test_positions_tab_builds_refreshes_and_clicks(which, request):
    checkpoint = request.getfixturevalue(which)
    with gr.Blocks() as demo:
        ctx = Context(ModelCache(), PhotoStore(), {"tiny": checkpoint}, analysis=gr.State(None),
                      point=gr.State(None), language=gr.State("en"))
        refresh, tables_refresh = positions_tab.build(ctx)
    photo = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    key = AnalysisKey(ctx.photos.put(photo), str(checkpoint), None)
    inputs = [c.value for c in refresh.inputs]
    out = drawn(refresh, key, *inputs)
    assert len(out) == len(refresh.outputs)
    learned_map = out[2]
    assert (learned_map is None) == (which == "tiny_class_checkpoint")
    maps = [np.asarray(Image.open(path)) for path in out[3:5]]  # 1D and 2D similarity maps, as PNG files
    assert maps[0].shape == maps[1].shape == (256, 256, 3)  # a 4x4 grid
    assert out[3:5] == drawn(refresh, key, *inputs)[3:5]  # the same maps again: the same files, encoded once
    assert out[5]["visible"] is False  # no PNG saved for the previous photo left on screen
    tables = drawn(tables_refresh, key, *[c.value for c in tables_refresh.inputs])
    assert len(tables) == len(tables_refresh.outputs) and tables[-1] == positions_tab.accuracy_markdown()
    assert np.asarray(Image.open(tables[5])).ndim == 3  # the 1D table's every-patch sheet, a PNG file
    # A new photo of the same model: only the photo's views depend on it; the tables stay as drawn.
    other = AnalysisKey(ctx.photos.put(photo[::-1].copy()), str(checkpoint), None)
    assert refresh.depends_on(other) != refresh.depends_on(key)
    assert tables_refresh.depends_on(other) == tables_refresh.depends_on(key) != tables_refresh.depends_on(None)

    assert sum(f.fn is not None and f.fn.__name__ == "on_click" for f in demo.fns.values()) == 4
    handlers = [handler(demo, "on_click", positions_tab, nth) for nth in range(4)]  # the photo, the three maps
    clicked = handlers[-1](key, "fixed", gr.SelectData(None, {"index": [255, 0], "value": None}))
    assert clicked[0] == patch_centre(3, (4, 4))  # top-right patch of a similarity map: its centre is the point
    assert "Patch **3**" in clicked[2]
    with pytest.warns(UserWarning, match="Upload or pick a photo first"):
        handlers[0](None, "fixed", gr.SelectData(None, {"index": [1, 1], "value": None}))
    assert drawn(refresh, None, *inputs)[1] == text("shell.no_photo")

    on_save = handler(demo, "on_save", positions_tab)
    saved = on_save(key, patch_centre(3, (4, 4)))
    assert saved["visible"] and Path(saved["value"][0]).name == "positions-patch3-photo.png"
    photo = fit_photo(ctx.analysis_for(key).photo, positions_tab.PHOTO_SIDE, CLICKABLE_SIDE)
    expected = outline_patch(draw_patch_grid(photo, (4, 4)), 3, (4, 4))
    with Image.open(saved["value"][0]) as png:
        assert png.format == "PNG" and np.array_equal(np.asarray(png), expected)  # lossless, patch 3 outlined
