"""The benchmark's pieces that run without a GPU: FLOP counting, the MFU guard and the
end-to-end comparison of the two data pipelines (on the tiny preset and generated data)."""

import torch

from vitviz import bench
from vitviz.model.vit import SegmentationViT
from vitviz.training.presets import preset


def test_training_step_flops_follow_the_six_n_d_rule():
    cfg = preset("tiny")[0]
    model = SegmentationViT(cfg)
    one, two = (bench.training_step_flops(model, b, cfg.image_size, torch.device("cpu")) for b in (1, 2))
    assert two == 2 * one
    tokens = (cfg.image_size // cfg.patch_size) ** 2
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    # forward 2·N·D per token through the linear layers, backward twice that; attention adds a little
    assert 1.0 <= one / (6 * tokens * linear) <= 2.0


def test_mfu_needs_a_known_gpu():
    assert "skipped" in bench.bench_mfu(torch.device("cpu"), 2, 1)


def test_end_to_end_compares_both_pipelines(tiny_data):
    result = bench.bench_end_to_end("tiny", str(tiny_data), 1, torch.device("cpu"))
    assert result["data_on_device_s"] > 0 and result["dataloader_s"] > 0
    report = bench.format_report({"device": "cpu", "threads": 1, "torch": "x", "commit": "abc",
                                  "interactive": {"skipped": "no checkpoint"}, "training": {"skipped": "no timm"},
                                  "mfu": bench.bench_mfu(torch.device("cpu"), 2, 1), "end_to_end": result})
    assert "MFU: skipped" in report and "end to end tiny, 1 epochs" in report
