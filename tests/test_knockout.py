"""Knock-outs in the model's forward (vitviz.model.knockout) and the numbers of the Knock-out view."""

import gradio as gr
import numpy as np
import pytest
import torch
from session import handler

from app import build_app
from vitviz.app import sources
from vitviz.app.inference import photo_to_input
from vitviz.app.photos import load_photo_rgb
from vitviz.app.sources import EXAMPLES_DIR
from vitviz.model.attention import MultiHeadSelfAttention
from vitviz.model.knockout import NOTHING, KnockOut
from vitviz.model.trace import Trace
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training.checkpoint import load_model
from vitviz.ui import knockout as knockout_tab
from vitviz.views.knockout import (CHANGED, changed_share, chart_cell, class_flows, head_importance, importance_chart,
                                   knocked_out_probs, pixel_accuracy)

SMALL = dict(image_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, dropout=0.0)


def model_with_biases(**overrides) -> SegmentationViT:
    """A small model whose biases are not zero (as after training), so that the heads' shares of
    the output projection's bias matter."""
    torch.manual_seed(0)
    model = SegmentationViT(ViTConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "pos_embed" in name:
                p.normal_(0, 0.5)
    return model


def test_nothing_knocked_out_is_the_normal_forward():
    model = model_with_biases()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        normal = model(x).mask_logits
        assert torch.equal(model(x, knockout=NOTHING).mask_logits, normal)
        assert torch.equal(model(x, knockout=KnockOut(heads=set(), attention=[], mlp=())).mask_logits, normal)
    assert not KnockOut() and KnockOut(position=True) and KnockOut(shuffle="after_position")


def test_all_heads_of_a_block_off_equals_skipping_its_attention():
    model = model_with_biases()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        heads_off = model(x, knockout=KnockOut(heads={(1, h) for h in range(4)})).mask_logits
        skipped = model(x, knockout=KnockOut(attention={1})).mask_logits
        assert torch.allclose(heads_off, skipped, atol=1e-5)
        assert not torch.allclose(skipped, model(x).mask_logits, atol=1e-3)  # the block's attention did matter


def test_heads_are_terms_of_a_sum_their_shares_of_the_bias_included():
    torch.manual_seed(1)
    attn = MultiHeadSelfAttention(32, 4).eval()
    with torch.no_grad():
        attn.proj.bias.normal_()
        x = torch.randn(2, 5, 32)
        whole = attn(x)[0]
        first_two = attn(x, head_mask=torch.tensor([1.0, 1, 0, 0]))[0]
        last_two = attn(x, head_mask=torch.tensor([0.0, 0, 1, 1]))[0]
        assert torch.allclose(first_two + last_two, whole, atol=1e-5)
        assert torch.allclose(attn(x, head_mask=torch.ones(4))[0], whole, atol=1e-6)
        assert torch.equal(attn(x, head_mask=torch.zeros(4))[0], torch.zeros_like(whole))


def test_one_head_or_one_mlp_off_changes_the_output():
    model = model_with_biases()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        normal = model(x).mask_logits
        for knockout in (KnockOut(heads={(0, 2)}), KnockOut(mlp={2}), KnockOut(position=True)):
            assert not torch.allclose(model(x, knockout=knockout).mask_logits, normal, atol=1e-4), knockout


def test_a_whole_block_off_is_the_model_without_that_block():
    model = model_with_biases()
    x = torch.randn(1, 3, 32, 32)
    shorter = SegmentationViT(ViTConfig(**{**SMALL, "depth": 2})).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("blocks.1.", "blocks.2."))}
    state.update({k.replace("blocks.2.", "blocks.1."): v for k, v in model.state_dict().items()
                  if k.startswith("blocks.2.")})
    shorter.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(model(x, knockout=KnockOut(attention={1}, mlp={1})).mask_logits,
                              shorter(x).mask_logits, atol=1e-5)


def test_without_position_embedding_the_position_knock_out_and_any_shuffle_change_nothing():
    model = model_with_biases(pos_embed="none")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        normal = model(x).mask_logits
        assert torch.equal(model(x, knockout=KnockOut(position=True)).mask_logits, normal)
        for shuffle in ("before_position", "after_position"):
            assert torch.allclose(model(x, knockout=KnockOut(shuffle=shuffle, seed=3)).mask_logits, normal, atol=1e-5)


@pytest.mark.parametrize("head", ["linear", "skip"])
def test_shuffling_after_the_position_embedding_changes_nothing_before_it_does(head):
    model = model_with_biases(head=head, patch_embed="convstem" if head == "skip" else "linear", class_token=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        normal = model(x).mask_logits
        after = model(x, knockout=KnockOut(shuffle="after_position", seed=1)).mask_logits
        before = model(x, knockout=KnockOut(shuffle="before_position", seed=1)).mask_logits
    assert torch.allclose(after, normal, atol=1e-5)  # attention treats the tokens as a set
    # each patch is told it sits elsewhere (an untrained skip decoder passes little of the tokens on)
    assert (before - normal).abs().max() > 100 * (after - normal).abs().max() + 1e-6
    assert KnockOut(shuffle="before_position", seed=1).permutation(16).tolist() != list(range(16))


def test_impossible_knock_outs_are_refused():
    model = model_with_biases()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="outside a model of 3 blocks × 4 heads"):
        model(x, knockout=KnockOut(heads={(0, 4)}))
    with pytest.raises(ValueError, match="outside"):
        model(x, knockout=KnockOut(mlp={3}))
    with pytest.raises(ValueError, match="shuffle must be one of"):
        KnockOut(shuffle="sideways")
    with pytest.raises(ValueError, match="Trace"):
        model(x, Trace(), knockout=KnockOut(position=True))


def test_changed_share_and_class_flows():
    before = torch.tensor([[0, 0], [1, 2]])
    after = torch.tensor([[0, 1], [1, 1]])
    assert changed_share(before, after) == 0.5
    assert class_flows(before, after, 3) == [("pet", "background", 0.25), ("border", "background", 0.25)]
    truth = torch.tensor([[0, 0], [1, -1]])
    assert pixel_accuracy(after, truth, 3) == pytest.approx(2 / 3)
    assert np.isnan(pixel_accuracy(after, torch.full((2, 2), -1), 3))


def test_head_importance_is_the_share_each_head_changes_alone():
    model = model_with_biases()
    image = torch.rand(3, 32, 32)
    mask = knocked_out_probs(model, image, NOTHING).argmax(0)
    steps = list(head_importance(model, image, mask))
    assert len(steps) == 3 and np.isnan(steps[0][1:]).all() and not np.isnan(steps[0][0]).any()
    shares = steps[-1]
    assert shares.shape == (3, 4) and ((shares >= 0) & (shares <= 1)).all()
    b, h = np.unravel_index(shares.argmax(), shares.shape)
    alone = knocked_out_probs(model, image, KnockOut(heads={(b, h)})).argmax(0)
    assert shares[b, h] == changed_share(mask, alone)


def test_a_click_on_the_chart_finds_its_cell():
    shares = np.array([[0.1, 0.0], [np.nan, 0.3]])
    chart = importance_chart(shares, off={(1, 1)})
    assert chart.shape == (28 + 2 * 56 + 1, 56 + 2 * 56 + 1, 3)
    assert chart_cell(56 + 56 + 10, 28 + 56 + 10, shares.shape) == (1, 1)
    assert chart_cell(56 + 5, 28 + 5, shares.shape) == (0, 0)
    assert chart_cell(10, 40, shares.shape) is None and chart_cell(70, 10, shares.shape) is None


def example_image(size: int) -> torch.Tensor:
    return photo_to_input(load_photo_rgb(EXAMPLES_DIR / "chelsea-cat.png"), size)


def test_on_the_shipped_default_a_block_off_breaks_the_mask_and_an_ordered_shuffle_changes_nothing():
    model = load_model("checkpoints/default")
    image = example_image(model.cfg.image_size)
    mask = knocked_out_probs(model, image, NOTHING).argmax(0)
    second_block = knocked_out_probs(model, image, KnockOut(attention={1}, mlp={1})).argmax(0)
    after = knocked_out_probs(model, image, KnockOut(shuffle="after_position")).argmax(0)
    assert changed_share(mask, second_block) > 0.05  # measured: 9.5 % of the pixels
    assert changed_share(mask, after) < 0.001


def test_on_the_shipped_seed_small_the_position_embedding_holds_half_the_mask():
    model = load_model("checkpoints/seed-small")
    image = example_image(model.cfg.image_size)
    mask = knocked_out_probs(model, image, NOTHING).argmax(0)
    for knockout in (KnockOut(position=True), KnockOut(shuffle="before_position")):
        assert changed_share(mask, knocked_out_probs(model, image, knockout).argmax(0)) > 0.3  # measured: 51 %, 49 %



# --- the tab's handlers, called in-process as the UI calls them ----------------------------------

NOTHING_OFF = ([], [], [], False, "none")  # heads, attention blocks, MLP blocks, position, shuffle


def select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None, "selected": True})


@pytest.fixture(scope="module")
def app(tiny_checkpoint, tiny_data, tmp_path_factory):
    """The app on the tiny checkpoint (2 blocks × 2 heads) with the tiny data set's test photos
    among its examples (after the 3 bundled ones), and a key for the first of them."""
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path_factory.mktemp("none"),
                     runs_dir=tiny_checkpoint.parent, data_root=tiny_data)
    photo_id, _ = handler(demo, "pick_example")(select(3), "en")
    key, status, _ = handler(demo, "analyse")(photo_id, f"{tiny_checkpoint.parent.name}/tiny", sources.FINAL, "en")
    assert key is not None, status
    return demo, key


def tab(demo) -> dict:
    return {name: handler(demo, name, knockout_tab) for name in ("refresh", "on_control", "on_reset", "on_chart_click")}


def test_the_tab_offers_the_models_heads_and_blocks_and_starts_with_nothing_off(app):
    demo, key = app
    shape, heads, attention, mlp, note, before, after, changed, summary, chart = tab(demo)["refresh"](
        key, None, None, *NOTHING_OFF, "en")
    assert shape == (2, 2) and [value for _, value in heads["choices"]] == ["1.1", "1.2", "2.1", "2.2"]
    assert [value for _, value in attention["choices"]] == [1, 2] == [value for _, value in mlp["choices"]]
    assert "Nothing is switched off" in summary and np.array_equal(before, after)
    assert (changed != CHANGED).any(axis=-1).all()  # no pixel marked as changed
    assert "Not measured yet" in note and chart.shape[2] == 3


def test_another_model_redraws_once_even_when_it_drops_switches(app):
    """Switches the new model lacks (block 3 of a 2-block model) are dropped from the controls, whose
    change event then draws: the refresh must not draw too (that cost two more forward passes)."""
    demo, key = app
    kept = tab(demo)["refresh"](key, (3, 2), None, ["3.1"], [1, 3], [], False, "none", "en")
    shape, heads, attention, mlp, note, before, after, changed, summary, chart = kept
    assert shape == (2, 2) and heads["value"] == [] and attention["value"] == [1] and mlp["value"] == []
    assert all(value == gr.skip() for value in (before, after, changed, summary, chart))  # left to the switches
    # Nothing dropped (no change event will fire): the refresh draws.
    redrawn = tab(demo)["refresh"](key, (3, 2), None, [], [1], [], False, "none", "en")
    assert redrawn[6] is not None and "attention of block 1" in redrawn[8]


def test_a_knock_out_redraws_the_mask_and_scores_it_against_the_photos_trimap(app):
    demo, key = app
    before, after, changed, summary, chart = tab(demo)["on_control"](key, None, [], [1, 2], [1, 2], False, "none",
                                                                     "en")
    assert "Switched off: whole blocks 1, 2." in summary
    assert "of the 32×32 pixels the model predicts changed class" in summary
    assert "Pixel accuracy against this photo's trimap" in summary  # a data-set photo: it has one
    share = float(summary.split("**")[1].rstrip("%")) / 100
    assert ((changed == CHANGED).all(axis=-1).mean() > 0) == (share > 0)


def test_a_click_on_the_chart_switches_a_head_off_then_on_again(app):
    demo, key = app
    click = tab(demo)["on_chart_click"]
    cell_2_1 = select([56 + 10, 28 + 56 + 10])  # block 2, head 1 (beside the 56 px of block labels)
    assert click(key, [], cell_2_1, "en") == ["2.1"]
    assert click(key, ["2.1", "1.2"], cell_2_1, "en") == ["1.2"]
    assert click(key, [], select([3, 3]), "en") == gr.skip()  # a block label, not a cell
    # the switch it sets draws like any other: its change redraws the mask
    summary = tab(demo)["on_control"](key, None, ["2.1"], [], [], False, "none", "en")[3]
    assert "Switched off: head 2·1." in summary
    summary = tab(demo)["on_control"](key, None, ["2.1", "1.2"], [2], [], False, "none", "en")[3]
    assert "Switched off: heads 1·2, 2·1; attention of block 2." in summary  # one head, or several


def test_every_switch_draws_through_one_listener_whose_last_change_lands_last(app):
    """Two quick clicks on two switches (attention of block 2, then its MLP) once ran as two events
    side by side, and the first one's drawing, without the MLP, could land last (seen in CI). One
    listener that the page defers while it is busy (always_last) sends the second click after the
    first is drawn, with both switches on."""
    demo, _ = app
    switches = [block._id for block in demo.blocks.values()
                if getattr(block, "elem_id", None) in ("knockout-heads", "knockout-attention", "knockout-mlp",
                                                       "knockout-position", "knockout-shuffle")]
    drawing = [fn for fn in demo.fns.values() if any(target in switches for target, _ in fn.targets)
               and fn.fn is not None and fn.fn.__name__ == "on_control"]
    assert len(drawing) == 1 and drawing[0].trigger_mode == "always_last"
    assert sorted(target for target, event in drawing[0].targets if event == "change") == sorted(switches)
    assert tab(demo)["on_reset"]() == [[], [], [], False, "none"]  # the reset only sets the switches


def test_measuring_every_head_fills_the_chart_block_by_block(app):
    demo, key = app
    on_measure = next(fn.fn for fn in demo.fns.values() if fn.fn is not None and fn.fn.__name__ == "on_measure")
    steps = list(on_measure(key, *NOTHING_OFF, "en"))
    assert len(steps) == 2  # one update per block
    measured = next(value for value in steps[-1].values() if isinstance(value, tuple))
    assert measured[0] == key and np.isfinite(measured[1]).all() and np.shape(measured[1]) == (2, 2)
    note = next(value for value in steps[-1].values() if isinstance(value, str))
    assert note.startswith("Measured in") and "4 heads, 8 forward passes" in note


def test_malformed_controls_get_one_line(app):
    demo, key = app
    handlers = tab(demo)
    for bad, words in ((("xyz", [], [], False, "none"), "Heads switched off"),
                       (([], "1", [], False, "none"), "Attention switched off"),
                       (([], [], [True], False, "none"), "MLP switched off"),
                       (([], [], [], "yes", "none"), "Switch off the position embedding"),
                       (([], [], [], False, "sideways"), "Shuffle the patch tokens must be one of")):
        with pytest.raises(gr.Error) as caught:
            handlers["on_control"](key, None, *bad, "en")
        assert words in caught.value.message and "\n" not in caught.value.message
    for index in (["a", "b"], [1], "xyz", None):
        with pytest.raises(gr.Error, match="That click cannot be read"):
            handlers["on_chart_click"](key, [], select(index), "en")
    # a head or block of a bigger model (kept from another checkpoint) is dropped, not refused
    summary = handlers["on_control"](key, None, ["6.6", "1.1"], [9], [], False, "none", "en")[3]
    assert "Switched off: head 1·1." in summary
