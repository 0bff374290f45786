"""The guided tour without a browser: its steps, their tabs, and their texts for a real forward pass."""

import numpy as np
import pytest

from app import TABS, tab_id
from vitviz.app import i18n
from vitviz.app.inference import ModelCache
from vitviz.training.checkpoint import list_snapshots
from vitviz.views import tour

PHOTO = np.random.default_rng(3).integers(0, 256, (45, 70, 3), dtype=np.uint8)


def test_the_tour_walks_from_the_patches_to_the_knock_outs_through_existing_tabs():
    assert [step.name for step in tour.STEPS] == ["patches", "embedding", "position", "attention", "mlp", "head",
                                                  "mask", "training", "knockout"]
    assert {step.tab for step in tour.STEPS} <= {tab_id(module) for module in TABS}
    assert [tour.clamp(i) for i in (-3, 0, 4, 8, 9, 99)] == [0, 0, 4, 8, 8, 8]


@pytest.mark.parametrize("lang", list(i18n.LANGUAGES))
def test_the_progress_line_says_where_the_step_is(lang):
    line = tour.progress_markdown(2, lang)
    assert i18n.text("tour.progress", lang, step=3, total=9) in line
    names = [i18n.text(f"tour.{step.name}.name", lang) for step in tour.STEPS]
    assert f"**{names[2]}**" in line and all(name in line for name in names)


@pytest.fixture(scope="module")
def numbers(tiny_checkpoint):
    """The tour's numbers for PHOTO by the tiny model (32 px input, 8 px patches, 2 blocks)."""
    cache = ModelCache()
    analysis = cache.analysis(PHOTO, tiny_checkpoint)
    model = cache.model(tiny_checkpoint)
    measured = tour.knockout_facts(model, analysis)
    return {lang: {**tour.facts(analysis, model.cfg, list_snapshots(tiny_checkpoint), lang), **measured}
            for lang in i18n.LANGUAGES}


def test_the_numbers_come_from_the_forward_pass(numbers):
    facts = numbers["en"]
    assert (facts["width"], facts["height"], facts["size"]) == (70, 45, 32)
    assert (facts["rows"], facts["cols"], facts["patches"], facts["ppc"]) == (4, 4, 16, 8 * 8 * 3)
    assert facts["embedded"].startswith("(B=1, N=16, D=")
    assert facts["snapshots"] == "1, 2"
    assert facts["shares"].startswith("pet ") and facts["shares"].count("%") == 3
    assert numbers["zh"]["shares"].startswith("宠物 ")
    assert facts["block"] in (1, 2) and 0 <= facts["position"] <= 1 and 0 <= facts["block_share"] <= 1


@pytest.mark.parametrize("lang", list(i18n.LANGUAGES))
def test_every_step_has_a_title_a_text_and_its_numbers(numbers, lang):
    for index, step in enumerate(tour.STEPS):
        markdown = tour.step_markdown(index, lang, numbers[lang])
        assert markdown.startswith(f"### {i18n.text(f'tour.{step.name}.title', lang)}")
        assert i18n.text(f"tour.{step.name}.numbers", lang, **numbers[lang]) in markdown
    assert "4×4" in tour.step_markdown(0, lang, numbers[lang])  # the patch grid of this photo
    assert i18n.text("tour.no_photo", lang) in tour.step_markdown(0, lang, None)
