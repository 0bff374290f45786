"""Benchmarks, one command: `python -m vitviz.bench [--quick] [--json] [--out FILE]`.

Each measurement runs beside a named reference in the same process and reports the ratio:
  1. interactive latency of the app's computations (CPU, shipped default checkpoint):
     analysing a new photo vs a plain untraced forward; a click → attention view (every picture
     drawn, JPEG-encoded and cached, as served) vs re-running the traced forward;
  2. training throughput (forward + backward + optimizer step, images/s): our model vs timm's
     VisionTransformer configured identically, alternated round by round (torch.compile and bf16
     on a GPU);
  3. on a GPU, model FLOPs utilisation of the seed model in bf16 vs the GPU's peak;
  4. end to end, `python -m vitviz.train` with the photos decoded once onto the device and
     augmented there vs the per-sample DataLoader (on a GPU: the seed recipe, 50 epochs).
Absolute times are only meaningful on a GPU; on a CPU, read the ratios.
"""

import argparse
import contextlib
import importlib.util
import io
import os
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitviz.model.patches import unpatchify
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training.loop import git_commit, pick_device
from vitviz.training.checkpoint import load_model
from vitviz.training.presets import preset


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


def send_picture(image: np.ndarray, image_format: str, cache_dir: str) -> str:
    """What Gradio does with a picture a handler returns: encode it and write it to its cache."""
    from gradio.processing_utils import save_img_array_to_cache

    return save_img_array_to_cache(image, cache_dir, format=image_format)


def bench_interactive(checkpoint: str, repeats: int) -> dict:
    # The app's modules, imported here: a GPU machine that runs the rest may lack the app's packages.
    from vitviz.app.inference import analyse
    from vitviz.ui.attention import status_text
    from vitviz.views.attention import attention_pictures, mean_attention_distance
    from vitviz.views.attention_browser import attention_maps_data
    from vitviz.views.pictures import click_to_patch

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

    cache = tempfile.TemporaryDirectory(prefix="vitviz-bench-")
    layer = len(result.trace.attentions) // 2 + 1

    def random_patch() -> int:
        return click_to_patch(int(rng.integers(0, w)), int(rng.integers(0, h)), w, h, grid)

    def click():
        """The Attention tab's server work for one click: its status line. The browser draws the
        pictures (vitviz/ui/attention_maps.js)."""
        status_text(result, random_patch(), layer, "query")

    def drawn_on_server(image_format: str = "jpeg"):
        """The reference: a click's pictures drawn on the server, encoded in `image_format` and written
        to a Gradio cache folder, as the tab did before the browser drew them."""
        for picture in attention_pictures(result, random_patch(), layer, "query", "local").named("click").values():
            send_picture(picture, image_format, cache.name)

    def maps_data() -> str:
        """What the tab sends once per photo for the browser to draw from, JSON-encoded."""
        return json.dumps(attention_maps_data(result, random_patch(), layer, "query", "local"))

    click_times = timed(click, repeats)
    server_drawn_times = timed(drawn_on_server, repeats)
    png_click_times = timed(lambda: drawn_on_server("png"), repeats)
    data_times = timed(maps_data, repeats)
    rerun_times = timed(lambda: analyse(model, photos[0]), repeats)
    distance_times = timed(lambda: mean_attention_distance(result.trace.attentions, grid, result.patch_size,
                                                           result.has_class_token), repeats)
    analysis, plain = summary_ms(analysis_times), summary_ms(plain_times)
    clicked, server_drawn, rerun = summary_ms(click_times), summary_ms(server_drawn_times), summary_ms(rerun_times)
    data = summary_ms(data_times)
    cache.cleanup()
    return {
        "checkpoint": checkpoint,
        "analyse_new_photo": {**analysis, "target_ms": 150, "reference": "untraced fast forward",
                              "reference_median_ms": plain["median_ms"],
                              "ratio": analysis["median_ms"] / plain["median_ms"]},
        "click_attention": {**clicked, "target_ms": 50,
                            "includes": "the status line; the browser draws the pictures",
                            "reference": "the click's pictures drawn on the server, JPEG-encoded and cached as served",
                            "reference_median_ms": server_drawn["median_ms"],
                            "ratio": clicked["median_ms"] / server_drawn["median_ms"],
                            "rerun_traced_forward_median_ms": rerun["median_ms"],
                            "server_drawn_as_png_median_ms": summary_ms(png_click_times)["median_ms"]},
        "attention_data_per_photo": {**data, "bytes": len(maps_data()), "reference": "untraced fast forward",
                                     "reference_median_ms": plain["median_ms"],
                                     "ratio": data["median_ms"] / plain["median_ms"]},
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


def maybe_compiled(model: nn.Module, device: torch.device) -> nn.Module:
    """torch.compile on a GPU, where it pays off within a benchmark; eager on a CPU."""
    return torch.compile(model) if device.type == "cuda" else model


def bench_training(preset_name: str, batch: int, rounds: int, steps: int, device: torch.device) -> dict:
    cfg = preset(preset_name)[0]
    cfg.patch_embed = "linear" if cfg.patch_embed != "convstem" else "conv"  # timm has no conv stem
    ours = train_step_fn(maybe_compiled(SegmentationViT(cfg), device), batch, cfg.image_size, device,
                         lambda out: out.mask_logits)
    theirs = train_step_fn(maybe_compiled(TimmSegmenter(cfg), device), batch, cfg.image_size, device, lambda out: out)
    ours_s, theirs_s = [], []
    for fn in (ours, theirs):
        timed(fn, 0, warmup=2)
    for _ in range(rounds):  # alternate so both see the same machine state
        ours_s.append(sum(timed(ours, steps, warmup=0)) / steps)
        theirs_s.append(sum(timed(theirs, steps, warmup=0)) / steps)
    ours_ips, theirs_ips = batch / statistics.median(ours_s), batch / statistics.median(theirs_s)
    return {"preset": preset_name, "batch": batch, "device": str(device), "ours_images_per_s": ours_ips,
            "timm_images_per_s": theirs_ips, "ratio": ours_ips / theirs_ips, "target_ratio": 1.0,
            "compiled": device.type == "cuda", "reference": "timm.models.vision_transformer.VisionTransformer"}


# --- 3. GPU efficiency: model FLOPs utilisation --------------------------------------------------

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks


def training_step_flops(model: nn.Module, batch: int, size: int, device: torch.device) -> float:
    """FLOPs of one forward + backward pass, as counted by torch's FlopCounterMode (every matmul,
    attention and convolution; the backward pass counts about twice the forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(batch, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).mask_logits.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak of a known GPU, else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def bench_mfu(device: torch.device, batch: int, steps: int) -> dict:
    """Model FLOPs utilisation of the article's seed model (86.28M parameters, 128 px, patch 16)
    training in bf16 with torch.compile: counted FLOPs per step / step time / the GPU's peak."""
    peak = peak_flops(device)
    if peak is None:
        return {"skipped": f"needs a GPU with a known bf16 peak ({', '.join(PEAK_BF16_FLOPS)}); this run has {device}"}
    cfg = preset("seed")[0]
    model = SegmentationViT(cfg).to(device)
    flops = training_step_flops(model, batch, cfg.image_size, device)
    seconds = statistics.median(timed(train_step_fn(maybe_compiled(model, device), batch, cfg.image_size, device,
                                                    lambda out: out.mask_logits), steps, warmup=3))
    return {"preset": "seed", "batch": batch, "gpu": torch.cuda.get_device_name(device), "flops_per_step": flops,
            "step_ms": seconds * 1000, "achieved_tflops": flops / seconds / 1e12, "peak_tflops": peak / 1e12,
            "mfu": flops / seconds / peak, "target_mfu": 0.40, "reference": "the GPU's dense bf16 peak"}


# --- 4. end to end: the training recipe with the photos on the device vs a DataLoader -------------

def bench_end_to_end(preset_name: str, data_root: str | None, epochs: int, device: torch.device) -> dict:
    """Wall time of `python -m vitviz.train` for `epochs` epochs, photos decoded once onto the
    device and augmented there (`--data-on-device true`) vs the per-sample DataLoader. Without a
    data root it trains on a generated dataset of the same size as the labeled set."""
    from vitviz import train
    from vitviz.training.synthetic import make_tiny_pet_dataset

    with tempfile.TemporaryDirectory(prefix="vitviz-bench-") as scratch:
        if data_root is None:
            data_root = str(make_tiny_pet_dataset(scratch, per_breed=100, size=128).parent)
        seconds = {}
        for pipeline, on_device in (("dataloader", "false"), ("data_on_device", "true")):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = train.main(["--preset", preset_name, "--epochs", str(epochs), "--data-root", data_root,
                                   "--runs-dir", scratch, "--name", pipeline, "--device", str(device),
                                   "--data-on-device", on_device, "--val-masks", "0",
                                   "--snapshot-epochs", str(epochs), *(["--compile"] if device.type == "cuda" else [])])
            if code != 0:
                raise RuntimeError(f"training with {pipeline} failed (exit code {code})")
            seconds[pipeline] = time.perf_counter() - t0
    return {"preset": preset_name, "epochs": epochs, "device": str(device), "data_on_device_s": seconds["data_on_device"],
            "dataloader_s": seconds["dataloader"], "ratio": seconds["dataloader"] / seconds["data_on_device"],
            "reference": "the same run with a per-sample DataLoader (2 workers)",
            **({"target_s": 60} if preset_name == "seed" and epochs == 50 and device.type == "cuda" else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, small training config only")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--checkpoint", default="checkpoints/default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    parser.add_argument("--data-root", default=None,
                        help="dataset for the end-to-end run (or $VITVIZ_DATA; default: a generated one)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    results = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "device": str(device),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "commit": git_commit(),
               "date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    repeats = 10 if args.quick else 40
    if not Path(args.checkpoint, "config.json").is_file():
        results["interactive"] = {"skipped": f"no checkpoint at {args.checkpoint}"}
    elif any(importlib.util.find_spec(name) is None for name in ("gradio", "plotly")):
        results["interactive"] = {"skipped": "the app's packages are not installed (pip install -r requirements.txt)"}
    else:
        results["interactive"] = bench_interactive(args.checkpoint, repeats)
    if importlib.util.find_spec("timm") is None:  # a benchmark-only dependency
        results["training"] = {"skipped": "timm is not installed (pip install -r requirements-bench.txt)"}
    else:
        presets = ["seed-small"] if args.quick else ["seed-small", "default", "seed"]
        results["training"] = [bench_training(p, 8 if p == "seed" else 32, 3 if args.quick else 5,
                                              2 if p == "seed" else 4, device) for p in presets]
    results["mfu"] = bench_mfu(device, 256, 10 if args.quick else 30)
    # On a GPU the reference recipe itself (seed, 50 epochs); on a CPU a small model for a few epochs.
    gpu = device.type == "cuda"
    results["end_to_end"] = bench_end_to_end("seed" if gpu else "seed-small", args.data_root or os.environ.get("VITVIZ_DATA"),
                                             (50 if gpu else 3) if not args.quick else 1, device)
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
        a, c, d = inter["analyse_new_photo"], inter["click_attention"], inter["attention_data_per_photo"]
        lines.append(f"analyse a new photo: median {a['median_ms']:.1f} ms, p95 {a['p95_ms']:.1f} ms (target ≤ 150); "
                     f"{a['ratio']:.2f}× an untraced forward ({a['reference_median_ms']:.1f} ms)")
        lines.append(f"click → attention:   median {c['median_ms']:.2f} ms, p95 {c['p95_ms']:.2f} ms (target ≤ 50) on the "
                     f"server, the browser draws; {c['ratio']:.3f}× drawing the pictures on the server "
                     f"({c['reference_median_ms']:.1f} ms as JPEG, {c['server_drawn_as_png_median_ms']:.1f} ms as PNG)")
        lines.append(f"attention data sent once per photo: median {d['median_ms']:.1f} ms, {d['bytes'] / 1e3:.0f} kB; "
                     f"{d['ratio']:.2f}× an untraced forward")
    if isinstance(r["training"], dict):
        lines.append(f"training: skipped ({r['training']['skipped']})")
    else:
        for t in r["training"]:
            lines.append(f"training {t['preset']:<10} batch {t['batch']}: ours {t['ours_images_per_s']:.1f} img/s, "
                         f"timm {t['timm_images_per_s']:.1f} img/s, ratio {t['ratio']:.2f} (target ≥ 1.0)")
    m = r.get("mfu", {})
    lines.append(f"MFU: skipped ({m['skipped']})" if "skipped" in m else
                 f"MFU {m['gpu']}: {m['achieved_tflops']:.0f} of {m['peak_tflops']:.0f} TFLOP/s = {m['mfu']:.1%} "
                 f"(target ≥ 40%), seed model, batch {m['batch']}, bf16 + torch.compile")
    e = r.get("end_to_end")
    if e:
        target = f" (target ≤ {e['target_s']} s)" if "target_s" in e else ""
        lines.append(f"end to end {e['preset']}, {e['epochs']} epochs: data on device {e['data_on_device_s']:.1f} s"
                     f"{target}, DataLoader {e['dataloader_s']:.1f} s, {e['ratio']:.2f}× faster")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
