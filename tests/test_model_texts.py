"""Texts that state a property of the model on screen are computed from that model: each one is
checked on every shipped checkpoint against what the checkpoint is and what was measured on it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vitviz.app import i18n
from vitviz.app.inference import ModelCache
from vitviz.app.photos import load_photo_rgb
from vitviz.app.sources import EXAMPLES_DIR
from vitviz.training.checkpoint import load_model
from vitviz.model.patches import PATCH_EMBEDS
from vitviz.model.vit import HEADS
from vitviz.ui.attention import locality_text
from vitviz.ui.segment import expectation_text
from vitviz.views import tour
from vitviz.views.attention import LOCAL_BELOW, locality, mean_attention_distance, uniform_attention_distance
from vitviz.views.positions import (ACCURACY_RUNS, accuracy_markdown, accuracy_verdict, embedding_tables,
                                    read_final_metrics, table_structure)
from vitviz.views.segment import UNSURE_BELOW, expectations, overlay_mask, unsure_pixels

SHIPPED = sorted(p.parent.name for p in Path("checkpoints").glob("*/config.json"))


def test_every_shipped_checkpoint_is_checked():
    assert {"default", "class-token", "seed-small", "pos-none", "pos-sin1d", "pos-sin2d"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_what_to_expect_quotes_the_checkpoints_own_evaluation(name):
    folder = Path("checkpoints") / name
    metrics = json.loads((folder / "metrics.json").read_text())
    evaluation = metrics["evaluation"]  # python -m vitviz.evaluate --record, flip-averaged as the app predicts
    assert evaluation["flip"] and evaluation["split"] == "test" and evaluation["epoch"] is None
    facts = expectations(folder)
    assert facts["accuracy"] == evaluation["pixel_accuracy"] and facts["photos"] == evaluation["n_images"]
    assert facts["epochs"] == metrics["epochs_done"]
    for lang in i18n.LANGUAGES:
        shown = expectation_text(str(folder), lang)
        assert f"{evaluation['pixel_accuracy']:.1%}" in shown and str(metrics["epochs_done"]) in shown
        assert str(evaluation["training_photos"]["with_trimap"]) in shown
        # only the class-token model also learned from the photos without a mask (their breed names)
        without = i18n.text("segment.expect_without", lang, without_trimap=3280)
        assert (without in shown) == (name == "class-token") == (evaluation["training_photos"]["without_trimap"] == 3280)


def test_a_run_without_metrics_says_so(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert expectations(tmp_path) is None
    assert "no metrics yet" in expectation_text(str(tmp_path), "en")


def test_unsure_pixels_are_those_whose_top_class_is_below_the_threshold():
    probs = torch.tensor([[[0.9, 0.5]], [[0.05, 0.3]], [[0.05, 0.2]]])  # (C=3, H=1, W=2)
    assert unsure_pixels(probs).tolist() == [[False, True]] and UNSURE_BELOW == 0.6
    photo = np.zeros((1, 2, 3), np.uint8)
    marked = overlay_mask(photo, np.array([[0, 0]]), 1.0, 3, unsure_pixels(probs))
    assert marked[0, 1].tolist() == [255, 255, 255] and marked[0, 0].tolist() == [230, 159, 0]


# --- Attention: are the heads local? Measured on the photo --------------------------------------

@pytest.fixture(scope="module")
def cache():
    return ModelCache()


CAT = load_photo_rgb(EXAMPLES_DIR / "chelsea-cat.png")


@pytest.mark.parametrize("name", SHIPPED)
def test_the_locality_text_holds_for_the_heads_on_screen(name, cache):
    analysis = cache.analysis(CAT, Path("checkpoints") / name)
    distances = mean_attention_distance(analysis.trace.attentions, analysis.grid, analysis.patch_size,
                                        analysis.has_class_token)
    uniform = uniform_attention_distance(analysis.grid, analysis.patch_size)
    kind, numbers = locality(distances, uniform)
    local = distances < LOCAL_BELOW * uniform
    assert (kind == "none") == (not local.any())
    if kind == "early":
        assert distances[0].mean() < distances[-1].mean()
    shown = locality_text(distances, uniform, "en")
    assert f"{distances.min().item():.0f}–{distances.max().item():.0f} px" in shown or kind != "none"
    assert "Early layers tend to be local" not in i18n.text("attention.overview_text")
    # measured: no shipped model has a local head on this photo (every head 55–85 px, uniform 66 px)
    assert kind == "none" and "no head of this model is local" in shown


# --- Position embeddings: what the model's own table shows ----------------------------------------

# Measured on the shipped tables (vitviz.views.positions.table_structure).
STRUCTURE = {"default": "neighbours", "class-token": "ring", "seed-small": "ring", "pos-sin1d": "neighbours",
             "pos-sin2d": "neighbours", "pos-none": None}


@pytest.mark.parametrize("name", SHIPPED)
def test_the_table_text_says_what_the_models_table_shows(name):
    model = load_model(Path("checkpoints") / name)
    tables = embedding_tables(model, model.cfg.grid)
    note = tables.model_note("en")
    if model.cfg.pos_embed == "none":
        assert note == i18n.text("positions.model_uses_none") and STRUCTURE[name] is None
        return
    sims = tables.similarities(model.cfg.pos_embed)
    kind, numbers = table_structure(sims, tables.grid)
    assert kind == STRUCTURE[name]
    assert i18n.text(f"positions.structure_{kind}", "en", **numbers) in note
    rows, cols = tables.grid
    if kind == "ring":  # a corner's most similar patches (itself left out) lie mostly on the grid's edge
        order = sims[0].flatten().argsort(descending=True)[1:rows + cols]
        on_edge = [(i // cols in (0, rows - 1)) or (i % cols in (0, cols - 1)) for i in order.tolist()]
        assert sum(on_edge) > 0.7 * len(on_edge)
    else:  # neighbours more alike than far patches
        assert numbers["near"] > numbers["far"]


def test_the_accuracy_verdict_names_the_kind_that_is_clearly_worse():
    table = accuracy_markdown(lang="en")
    scores = {kind: read_final_metrics(Path("checkpoints") / run).pixel_accuracy for kind, run in ACCURACY_RUNS.items()}
    worst = min(scores, key=scores.get)
    assert worst == "none" and max(scores.values()) - scores[worst] > 0.03  # measured: 67.9 % against 76.3 %
    assert "**Measured here:** no position embedding is clearly worse" in table
    assert accuracy_verdict({"learned": 0.75, "sin1d": 0.76}, "en").strip().startswith("**Measured here:** no kind")
    assert "no embedding clearly worse" not in i18n.text("positions.accuracy_text")


# --- Tour: the tokenizer and the head are the model's own -----------------------------------------

TOKENIZER_WORDS = {"linear": "learned linear map", "conv": "Conv2d", "convstem": "conv stem",
                   "deepstem": "deep conv stem"}
HEAD_WORDS = {"linear": "blocky", "mlp": "small MLP", "skip": "feature maps at each step.", "skip_full": "the photo itself"}


@pytest.mark.parametrize("name", SHIPPED)
def test_the_tour_describes_the_models_own_tokenizer_and_head(name, cache):
    folder = Path("checkpoints") / name
    analysis, cfg = cache.analysis(CAT, folder), cache.model(folder).cfg
    numbers = tour.facts(analysis, cfg, [], "en")
    embedding, head = tour.step_markdown(1, "en", numbers), tour.step_markdown(5, "en", numbers)
    assert TOKENIZER_WORDS[cfg.patch_embed] in embedding
    assert all(words not in embedding for kind, words in TOKENIZER_WORDS.items()
               if kind != cfg.patch_embed and words not in TOKENIZER_WORDS[cfg.patch_embed])
    assert HEAD_WORDS[cfg.head] in head and all(w not in head for k, w in HEAD_WORDS.items() if k != cfg.head)


def test_every_kind_of_tokenizer_and_head_has_its_tour_words_in_every_language():
    """A model trained from the Train tab may use any kind: its tour text must exist, and say it."""
    assert set(TOKENIZER_WORDS) == set(PATCH_EMBEDS) and set(HEAD_WORDS) == set(HEADS)
    for lang in i18n.LANGUAGES:
        for kind in HEADS:
            assert i18n.text(f"tour.head_kind.{kind}", lang, ppc=192, patch=8)
    for kind, words in HEAD_WORDS.items():
        assert words in i18n.text(f"tour.head_kind.{kind}", "en", ppc=192, patch=8)
