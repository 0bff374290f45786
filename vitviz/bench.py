"""Benchmarks, one command: `python -m vitviz.bench [--quick] [--json] [--out FILE]`.

Each measurement runs beside a named reference in the same process and reports the ratio:
  1. interactive latency of the app's computations (CPU, shipped default checkpoint):
     analysing a new photo vs a plain untraced forward; a click → attention view (every picture
     drawn and PNG-encoded, as served) vs re-running the traced forward;
  2. training throughput (forward + backward + optimizer step, images/s): our model vs timm's
     VisionTransformer configured identically, alternated round by round.
Absolute times are only meaningful on a GPU; on a CPU, read the ratios.
"""

import argparse
import importlib.util
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
import torch.nn.functional as F
from torch import nn

from vitviz.checkpoint import load_model
from vitviz.inference import analyse
from vitviz.model import SegmentationViT, ViTConfig
from vitviz.patches import unpatchify
from vitviz.presets import preset
from vitviz.train import git_commit, pick_device


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Seconds per call, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary_ms(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {"median_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))], "n": len(ms)}


# --- 1. interactive latency --------------------------------------------------------------------

def random_photo(rng: np.random.Generator, height: int = 480, width: int = 640) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_bytes(image: np.ndarray) -> int:
    """Encode as the server does before sending a picture (PIL's default PNG settings)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.tell()


def bench_interactive(checkpoint: str, repeats: int) -> dict:
    from vitviz.attention_maps import click_to_patch, mean_attention_distance
    from vitviz.ui.attention import patch_views

    model = load_model(checkpoint)
    rng = np.random.default_rng(0)
    photos = [random_photo(rng) for _ in range(repeats + 2)]
    it = iter(photos)

    analysis_times = timed(lambda: analyse(model, next(it)), repeats)
    x = torch.rand(1, 3, model.cfg.image_size, model.cfg.image_size)
    with torch.no_grad():
        plain_times = timed(lambda: model(x), repeats)

    result = analyse(model, photos[0])
    grid, h, w = result.grid, *result.photo.shape[:2]

    def click():  # the attention tab's whole server-side work for one click, PNG encoding included
        patch = click_to_patch(int(rng.integers(0, w)), int(rng.integers(0, h)), w, h, grid)
        views = patch_views(result, patch, len(result.trace.attentions) // 2 + 1, "query", "local")
        for view in views:
            picture = getattr(view, "value", view)  # a component update carries its picture in .value
            if isinstance(picture, np.ndarray):
                png_bytes(picture)

    click_times = timed(click, repeats)
    rerun_times = timed(lambda: analyse(model, photos[0]), repeats)
    distance_times = timed(lambda: mean_attention_distance(result.trace.attentions, grid, result.patch_size,
                                                           result.has_class_token), repeats)
    analysis, plain = summary_ms(analysis_times), summary_ms(plain_times)
    clicked, rerun = summary_ms(click_times), summary_ms(rerun_times)
    return {
        "checkpoint": checkpoint,
        "analyse_new_photo": {**analysis, "target_ms": 150, "reference": "untraced fast forward",
                              "reference_median_ms": plain["median_ms"],
                              "ratio": analysis["median_ms"] / plain["median_ms"]},
        "click_attention": {**clicked, "target_ms": 50, "includes": "every per-head, layer and rollout picture, PNG-encoded",
                            "reference": "re-run traced forward per click",
                            "reference_median_ms": rerun["median_ms"],
                            "ratio": clicked["median_ms"] / rerun["median_ms"]},
        "mean_attention_distance": summary_ms(distance_times),
    }


# --- 2. training throughput vs timm ---------------------------------------------------------------

class TimmSegmenter(nn.Module):
    """timm's VisionTransformer with the same width, depth, heads, patch, tokens and MLP ratio
    (no class token), and the same per-patch linear head and unpatchify as ours."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.cfg = cfg
        self.vit = VisionTransformer(
            img_size=cfg.image_size, patch_size=cfg.patch_size, in_chans=cfg.in_channels, num_classes=0,
            global_pool="", embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio, class_token=False, final_norm=False, drop_rate=cfg.dropout,
            proj_drop_rate=cfg.dropout, attn_drop_rate=cfg.dropout)
        self.head = nn.Linear(cfg.embed_dim, cfg.patch_size**2 * cfg.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // self.cfg.patch_size, x.shape[-1] // self.cfg.patch_size)
        return unpatchify(self.head(self.vit.forward_features(x)), self.cfg.patch_size, grid)


def train_step_fn(model: nn.Module, batch: int, size: int, device: torch.device, logits_of) -> Callable[[], None]:
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 3, (batch, size, size), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = logits_of(model(x))
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def bench_training(preset_name: str, batch: int, rounds: int, steps: int, device: torch.device) -> dict:
    cfg = preset(preset_name)[0]
    cfg.patch_embed = "linear" if cfg.patch_embed != "convstem" else "conv"  # timm has no conv stem
    ours = train_step_fn(SegmentationViT(cfg), batch, cfg.image_size, device, lambda out: out.mask_logits)
    theirs = train_step_fn(TimmSegmenter(cfg), batch, cfg.image_size, device, lambda out: out)
    ours_s, theirs_s = [], []
    for fn in (ours, theirs):
        timed(fn, 0, warmup=2)
    for _ in range(rounds):  # alternate so both see the same machine state
        ours_s.append(sum(timed(ours, steps, warmup=0)) / steps)
        theirs_s.append(sum(timed(theirs, steps, warmup=0)) / steps)
    ours_ips, theirs_ips = batch / statistics.median(ours_s), batch / statistics.median(theirs_s)
    return {"preset": preset_name, "batch": batch, "device": str(device), "ours_images_per_s": ours_ips,
            "timm_images_per_s": theirs_ips, "ratio": ours_ips / theirs_ips, "target_ratio": 1.0,
            "reference": "timm.models.vision_transformer.VisionTransformer"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, small training config only")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--checkpoint", default="checkpoints/default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    results = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "device": str(device),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "commit": git_commit(),
               "date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    repeats = 10 if args.quick else 40
    if Path(args.checkpoint, "config.json").is_file():
        results["interactive"] = bench_interactive(args.checkpoint, repeats)
    else:
        results["interactive"] = {"skipped": f"no checkpoint at {args.checkpoint}"}
    if importlib.util.find_spec("timm") is None:  # a benchmark-only dependency
        results["training"] = {"skipped": "timm is not installed (pip install -r requirements-bench.txt)"}
    else:
        presets = ["seed-small"] if args.quick else ["seed-small", "default", "seed"]
        results["training"] = [bench_training(p, 8 if p == "seed" else 32, 3 if args.quick else 5,
                                              2 if p == "seed" else 4, device) for p in presets]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(format_report(results))
    return 0


def format_report(r: dict) -> str:
    lines = [f"vitviz bench — {r['device']} ({r['threads']} threads), torch {r['torch']}, commit {r['commit'][:12]}"]
    inter = r["interactive"]
    if "skipped" in inter:
        lines.append(f"interactive: skipped ({inter['skipped']})")
    else:
        a, c = inter["analyse_new_photo"], inter["click_attention"]
        lines.append(f"analyse a new photo: median {a['median_ms']:.1f} ms, p95 {a['p95_ms']:.1f} ms (target ≤ 150); "
                     f"{a['ratio']:.2f}× an untraced forward ({a['reference_median_ms']:.1f} ms)")
        lines.append(f"click → attention:   median {c['median_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms (target ≤ 50), "
                     f"pictures drawn and PNG-encoded; {c['ratio']:.1f}× re-running the traced forward "
                     f"({c['reference_median_ms']:.1f} ms)")
    if isinstance(r["training"], dict):
        lines.append(f"training: skipped ({r['training']['skipped']})")
    else:
        for t in r["training"]:
            lines.append(f"training {t['preset']:<10} batch {t['batch']}: ours {t['ours_images_per_s']:.1f} img/s, "
                         f"timm {t['timm_images_per_s']:.1f} img/s, ratio {t['ratio']:.2f} (target ≥ 1.0)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
