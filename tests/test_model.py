"""The model: parameter count, options, the two attention paths, the two patch embeddings."""

import math

import pytest
import torch

from vitviz.model.attention import MultiHeadSelfAttention
from vitviz.model.patches import LinearPatchEmbed, conv_to_linear, linear_to_conv, patchify, unpatchify
from vitviz.model.posembed import PositionEmbedding, sincos_1d, sincos_2d
from vitviz.model.trace import Trace
from vitviz.model.vit import SegmentationViT, ViTConfig

SMALL = dict(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, dropout=0.0)


def test_reference_config_has_86_28M_parameters():
    with torch.device("meta"):
        model = SegmentationViT(ViTConfig())
    assert model.num_params() == 86_284_806
    assert f"{model.num_params() / 1e6:.2f}M" == "86.28M"


def test_patchify_orders_patches_row_major_and_unpatchify_inverts_it():
    x = torch.randn(2, 3, 32, 48)
    p = patchify(x, 16)
    assert p.shape == (2, 6, 16 * 16 * 3)
    # patch 4 is row 1, column 1: pixel (16, 16) of channel 0 is its first value
    assert p[0, 4, 0] == x[0, 0, 16, 16]
    assert torch.equal(unpatchify(p, 16, (2, 3)), x)


def test_linear_and_conv_patch_embeddings_are_the_same_map():
    torch.manual_seed(0)
    linear = LinearPatchEmbed(16, 3, 64)
    conv = linear_to_conv(linear)
    x = torch.randn(2, 3, 64, 80)
    assert torch.allclose(linear(x), conv(x), atol=1e-5)
    back = conv_to_linear(conv)
    assert torch.allclose(back.proj.weight, linear.proj.weight)


@pytest.mark.parametrize("class_token", [False, True])
def test_fast_attention_equals_the_path_that_returns_weights(class_token):
    torch.manual_seed(0)
    model = SegmentationViT(ViTConfig(**SMALL, class_token=class_token, num_classes=5 if class_token else 0)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast = model(x)
        trace = Trace()
        slow = model(x, trace)
    assert torch.allclose(fast.mask_logits, slow.mask_logits, atol=1e-5)
    t = 16 + (1 if class_token else 0)
    assert [a.shape for a in trace.attentions] == [(2, 4, t, t)] * 2
    for a in trace.attentions:
        assert torch.allclose(a.sum(-1), torch.ones(2, 4, t), atol=1e-5)


def test_attention_module_paths_match_in_isolation():
    torch.manual_seed(1)
    attn = MultiHeadSelfAttention(48, 6).eval()
    x = torch.randn(3, 10, 48)
    fast, none = attn(x)
    slow, weights = attn(x, need_weights=True)
    assert none is None and weights.shape == (3, 6, 10, 10)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_sinusoidal_tables_follow_the_brief_formulas():
    d = 16
    t1 = sincos_1d(9, d)
    for x in (0, 3, 8):
        for i in range(d // 2):
            assert t1[x, 2 * i].item() == pytest.approx(math.sin(x / 10000 ** (2 * i / d)), abs=1e-6)
            assert t1[x, 2 * i + 1].item() == pytest.approx(math.cos(x / 10000 ** (2 * i / d)), abs=1e-6)
    t2 = sincos_2d((3, 4), d)  # 3 rows, 4 columns
    for y in range(3):
        for x in range(4):
            n = y * 4 + x
            for i in range(d // 4):
                w = 10000 ** (4 * i / d)
                assert t2[n, 2 * i].item() == pytest.approx(math.sin(x / w), abs=1e-6)
                assert t2[n, 2 * i + 1].item() == pytest.approx(math.cos(x / w), abs=1e-6)
                assert t2[n, 2 * i + d // 2].item() == pytest.approx(math.sin(y / w), abs=1e-6)
                assert t2[n, 2 * i + 1 + d // 2].item() == pytest.approx(math.cos(y / w), abs=1e-6)


@pytest.mark.parametrize("kind", ["learned", "sin1d", "sin2d", "none"])
@pytest.mark.parametrize("size", [48, 64])
def test_every_position_kind_runs_at_other_image_sizes(kind, size):
    model = SegmentationViT(ViTConfig(**SMALL, pos_embed=kind)).eval()
    trace = Trace()
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size), trace)
    assert out.mask_logits.shape == (1, 3, size, size)
    n = (size // 8) ** 2
    assert trace.stage("patches → mask").shape == (1, 3, size, size)
    assert trace.attentions[0].shape[-1] == n
    if kind != "none":
        assert trace.stage("position embedding").shape == (n, 32)


def test_learned_embedding_is_resampled_not_recomputed():
    pos = PositionEmbedding("learned", (4, 4), 8, class_token=False)
    assert torch.equal(pos.table((4, 4)), pos.weight)
    assert pos.table((6, 6)).shape == (36, 8)


def test_class_token_model_classifies_and_segments():
    model = SegmentationViT(ViTConfig(**SMALL, class_token=True, num_classes=37)).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.mask_logits.shape == (2, 3, 32, 32) and out.class_logits.shape == (2, 37)


def test_mlp_head_and_conv_tokenizers_build_and_run():
    for extra in (dict(head="mlp"), dict(patch_embed="conv"), dict(patch_embed="convstem"),
                  dict(patch_embed="convstem", head="skip"), dict(patch_embed="deepstem", head="skip_full")):
        model = SegmentationViT(ViTConfig(**SMALL, **extra)).eval()
        assert model(torch.randn(1, 3, 32, 32)).mask_logits.shape == (1, 3, 32, 32)


def test_trace_records_the_eight_steps_with_shapes_and_parameters():
    model = SegmentationViT(ViTConfig(**SMALL)).eval()
    trace = Trace()
    model(torch.randn(1, 3, 32, 32), trace)
    assert sorted({s.step for s in trace.stages}) == list(range(1, 9))
    assert trace.stage("patchify").axes == ("B", "N", "PPC") and trace.stage("patchify").shape == (1, 16, 192)
    assert sum(s.params for s in trace.stages) == model.num_params()


@pytest.mark.parametrize("bad", [dict(image_size=30), dict(embed_dim=30), dict(num_classes=3), dict(head="conv"),
                                 dict(head="skip"),
                                 dict(patch_embed="pixels")])
def test_invalid_configs_say_why(bad):
    with pytest.raises(ValueError):
        ViTConfig(**{**SMALL, **bad})


@pytest.mark.parametrize("head", ["skip", "skip_full"])
def test_skip_decoder_trace_adds_up_and_keeps_attention_paths_equal(head):
    torch.manual_seed(0)
    model = SegmentationViT(ViTConfig(**SMALL, patch_embed="convstem", head=head)).eval()
    x = torch.randn(2, 3, 32, 32)
    trace = Trace()
    with torch.no_grad():
        fast, slow = model(x), model(x, trace)
    assert torch.allclose(fast.mask_logits, slow.mask_logits, atol=1e-5)
    assert slow.mask_logits.shape == (2, 3, 32, 32)
    assert sum(s.params for s in trace.stages) == model.num_params()
    assert sorted({s.step for s in trace.stages}) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_the_full_resolution_decoder_reads_the_photo_at_its_last_step():
    """`skip_full` ends with a step at the photo's own size that mixes in the (normalised) photo:
    its last decoder map has the photo's size, and a pixel change moves that pixel's logits even
    with the encoder's tokens and the stem's maps held fixed."""
    torch.manual_seed(0)
    model = SegmentationViT(ViTConfig(**SMALL, patch_embed="convstem", head="skip_full")).eval()
    trace = Trace()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32), trace)
    assert trace.stage("decoder 1/1 size").shape[-2:] == (32, 32)
    decoder, photo = model.seg_head, torch.randn(1, 3, 32, 32)
    tokens, grid = torch.randn(1, 16, 32), (4, 4)
    with torch.no_grad():
        _, stem_maps = model.patch_embed.forward_with_skips(photo)
        edited = photo.clone()
        edited[..., 5, 7] += 3
        logits = [decoder(tokens, grid, [p, *stem_maps], (32, 32)) for p in (photo, edited)]
    changed = (logits[0] - logits[1]).abs().sum(1)[0] > 1e-6
    assert changed[5, 7] and not changed[20:, 20:].any()  # only around the edited pixel (3×3 convolution)
