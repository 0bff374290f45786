"""The Tensor journey's computations: clicks → patches, the shape table, the pictures, what-if
shapes and the linear-vs-conv check."""

import dataclasses

import numpy as np
import pytest
import torch

from vitviz.app.inference import ModelCache
from vitviz.model.patches import LinearPatchEmbed, patchify
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training.presets import preset
from vitviz.ui.journey import DISPLAY_SIDE
from vitviz.views.journey import (comparison_embed, forward_flops, journey_pictures, journey_rows,
                                  linear_conv_difference, matrix_picture, model_summary, patch_mosaic, what_if)
from vitviz.views.pictures import CLICKABLE_SIDE, click_to_patch, patch_box

SEED = preset("seed")[0]


@pytest.fixture(scope="module")
def analysis(tiny_checkpoint):
    photo = np.random.default_rng(0).integers(0, 256, (61, 97, 3), dtype=np.uint8)  # odd, not square
    return ModelCache().analysis(photo, tiny_checkpoint)


@pytest.mark.parametrize("width, height, grid", [(451, 300, (8, 8)), (97, 61, (4, 4)), (61, 97, (16, 16)), (37, 23, (2, 3))])
def test_every_pixel_of_a_displayed_picture_maps_to_the_patch_drawn_around_it(width, height, grid):
    for y in range(height):
        for x in range(width):
            patch = click_to_patch(x, y, width, height, grid)
            x0, y0, x1, y1 = patch_box(patch, grid, width, height)
            assert x0 <= x <= x1 and y0 <= y <= y1


def test_clicks_on_a_non_square_photo_split_width_and_height_evenly():
    # 451×300 shown, 8×8 grid: columns are 56.4 px wide, rows 37.5 px tall.
    assert click_to_patch(0, 0, 451, 300, (8, 8)) == 0
    assert click_to_patch(450, 0, 451, 300, (8, 8)) == 7
    assert click_to_patch(0, 299, 451, 300, (8, 8)) == 56
    assert click_to_patch(56, 37, 451, 300, (8, 8)) == 0
    assert click_to_patch(57, 38, 451, 300, (8, 8)) == 9
    assert click_to_patch(361, 90, 451, 300, (8, 8)) == 2 * 8 + 6


def test_the_clickable_photo_keeps_the_aspect_ratio_of_the_photo(analysis):
    shown = analysis.click_target(DISPLAY_SIDE, None)
    h, w = analysis.photo.shape[:2]  # a small photo, enlarged so that a patch is big enough to click
    assert max(shown.shape[:2]) == CLICKABLE_SIDE and shown.shape[0] / shown.shape[1] == pytest.approx(h / w, abs=0.01)
    big = dataclasses.replace(analysis, photo=np.zeros((1200, 1800, 3), np.uint8), _fitted={})
    assert big.click_target(DISPLAY_SIDE, 0).shape == (427, 640, 3)


def test_the_table_has_one_row_per_traced_stage_and_a_total(analysis, tiny_checkpoint):
    model = ModelCache().model(tiny_checkpoint)
    rows = journey_rows(analysis.trace, model.num_params())
    assert len(rows) == len(analysis.trace.stages) + 1
    for row, stage in zip(rows, analysis.trace.stages):
        assert row[0].startswith(f"{stage.step}. ")
        assert row[1] == stage.name
        assert row[2] == stage.shape_str()
        assert row[3] == (f"{stage.params:,}" if stage.params else "–")
    assert rows[-1][3].startswith(f"{model.num_params():,}")
    assert sum(s.params for s in analysis.trace.stages) == model.num_params()
    assert [s.step for s in analysis.trace.stages][0] == 1 and analysis.trace.stages[-1].step == 8


def test_one_picture_per_stage_and_the_clicked_patch_changes_every_token_matrix(analysis):
    plain = journey_pictures(analysis)
    clicked = journey_pictures(analysis, selected=5)
    assert len(plain) == len(analysis.trace.stages) + 1  # the model input comes first
    for (a, caption), (b, _), in zip(plain, clicked):
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        assert a.shape == b.shape and not np.array_equal(a, b), caption


def test_matrix_picture_marks_the_selected_row_only():
    matrix = np.random.default_rng(1).normal(size=(16, 40))
    picture = matrix_picture(matrix, selected_row=3, min_height=64)  # 4 px per row
    marker = (picture[:, :12] != 255).any(axis=(1, 2))
    assert marker[9:19].all() and not marker[:9].any() and not marker[19:].any()  # row 3 is pixels 12–15


def test_patch_mosaic_lays_the_patches_out_in_order():
    image = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(1, 3, 4, 6) % 7
    patches = patchify(image, 2)[0].numpy()  # a 2×3 grid of 2×2 patches
    mosaic = patch_mosaic(patches, (2, 3), 2, min_tile=2, gap=1)
    assert mosaic.shape == (2 * 3 + 1, 3 * 3 + 1, 3)
    tile = mosaic[1 + 3:1 + 3 + 2, 1 + 2 * 3:1 + 2 * 3 + 2]  # row 1, column 2: patch 5
    lo, hi = image.amin(dim=(0, 2, 3)), image.amax(dim=(0, 2, 3))
    expected = ((image[0, :, 2:4, 4:6] - lo[:, None, None]) / (hi - lo)[:, None, None] * 255).round()
    assert np.array_equal(tile, expected.permute(1, 2, 0).numpy().astype(np.uint8))


def test_what_if_the_article_model_has_86_284_806_parameters():
    cfg, trace, total = what_if(SEED, 128, 16, 768, 8, 12, False, "learned")
    assert total == 86_284_806
    assert trace.stage("patchify").shape == (1, 64, 768)
    assert trace.stage("position embedding").shape == (64, 768)
    assert trace.stage("output projection").shape == (1, 64, 16 * 16 * 3)
    assert trace.stage("patches → mask").shape == (1, 3, 128, 128)
    assert "86,284,806" in model_summary(cfg, total)


def test_what_if_follows_every_setting():
    cfg, trace, total = what_if(SEED, 96, 8, 64, 4, 2, True, "sin2d")
    assert trace.stage("prepend class token").shape == (1, 12 * 12 + 1, 64)
    assert trace.stage("encoder block 2").shape == (1, 145, 64)
    assert sum(1 for s in trace.stages if s.step == 6) == 2
    with torch.device("meta"):
        assert SegmentationViT(cfg).num_params() == total
    assert forward_flops(145, 64, 2) == 2 * (24 * 145 * 64**2 + 4 * 145**2 * 64)


@pytest.mark.parametrize("values, message", [
    ((128, 10, 768, 8, 12, False, "learned"), "not a multiple of patch size 10"),
    ((128, 16, 100, 8, 12, False, "learned"), "not divisible by 8 heads"),
    ((128, 16, 98, 2, 12, False, "sin2d"), "divisible by 4"),
    ((128.5, 16, 768, 8, 12, False, "learned"), "whole number"),
    ((None, 16, 768, 8, 12, False, "learned"), "whole number"),
    ((128, 16, 768, 8, 0, False, "learned"), "between 1 and 48"),
    ((128, 16, 768, 8, 12, False, "spiral"), "position embedding must be one of"),
])
def test_what_if_refuses_impossible_settings_with_one_line(values, message):
    with pytest.raises(ValueError, match=message) as error:
        what_if(SEED, *values)
    assert "\n" not in str(error.value)


def test_removing_the_class_token_removes_the_class_head():
    with_head = ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, class_token=True, num_classes=4)
    cfg, trace, _ = what_if(with_head, 32, 8, 16, 2, 1, False, "learned")
    assert cfg.num_classes == 0 and "class head" not in [s.name for s in trace.stages]


def test_a_linear_patch_embedding_and_its_conv2d_copy_agree():
    torch.manual_seed(0)
    embed = LinearPatchEmbed(16, 3, 64)
    assert linear_conv_difference(embed, torch.randn(2, 3, 64, 96)) < 1e-5


def test_the_comparison_uses_the_models_own_linear_embedding_or_a_fresh_one(analysis, tiny_checkpoint):
    model = ModelCache().model(tiny_checkpoint)
    assert comparison_embed(model) is model.patch_embed
    images = analysis.trace.stage("input BatchNorm").tensor
    assert linear_conv_difference(comparison_embed(model), images) < 1e-5
    conv_model = SegmentationViT(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                                           patch_embed="convstem"))
    fresh = comparison_embed(conv_model)
    assert isinstance(fresh, LinearPatchEmbed) and fresh.proj.weight.shape == (16, 8 * 8 * 3)
    assert linear_conv_difference(fresh, images) < 1e-5
