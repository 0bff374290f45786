"""The Epochs view: one photo's predicted mask at every saved snapshot of a run, that epoch's
metrics, and the progression as an animated GIF (the article's blocky-mask GIF, for any photo).

Why early masks are blocky: the per-patch head turns each token into one P·P·C block of logits,
and early in training a token only knows whether its patch is mostly pet or mostly background, so
every pixel of the block gets the same answer. Finer shapes appear as the tokens learn where
inside their patch the edge runs.
"""

import json
import os
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from PIL import Image

from vitviz.attention_maps import fit_size
from vitviz.checkpoint import list_snapshots
from vitviz.inference import Analysis, ModelCache
from vitviz.overlay import overlay_mask
from vitviz.render import caption_band, resize


def read_metrics(folder: str | os.PathLike) -> dict[int, dict]:
    """Epoch → that epoch's row (train_loss, and val_loss, pixel_accuracy, miou, iou when the
    epoch was validated), from metrics.jsonl (written every epoch) or else metrics.json's curve."""
    folder = Path(folder)
    rows: list[dict] = []
    if (folder / "metrics.jsonl").is_file():
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a blank or foreign line does not hide the others
    elif (folder / "metrics.json").is_file():
        try:
            rows = json.loads((folder / "metrics.json").read_text()).get("curve", [])
        except (json.JSONDecodeError, AttributeError):
            rows = []
    return {int(r["epoch"]): r for r in rows if isinstance(r, dict) and "epoch" in r}


def metrics_text(epoch: int, row: dict | None) -> str:
    """One Markdown line with the epoch's losses and test scores, or why there are none."""
    if row is None:
        return f"**Epoch {epoch}**: no metrics recorded for this epoch."
    parts = [f"train loss {row['train_loss']:.3f}"] if "train_loss" in row else []
    if "val_loss" in row:
        parts.append(f"validation loss {row['val_loss']:.3f}")
    if "pixel_accuracy" in row:
        parts.append(f"pixel accuracy **{row['pixel_accuracy']:.1%}**")
    if "miou" in row:
        per_class = ", ".join(f"{name} {v:.2f}" for name, v in row.get("iou", {}).items())
        parts.append(f"mIoU **{row['miou']:.3f}**" + (f" ({per_class})" if per_class else ""))
    elif "val_loss" not in row:
        parts.append("not validated this epoch")
    return f"**Epoch {epoch}**: " + " · ".join(parts)


def snapshot_analyses(cache: ModelCache, photo: np.ndarray, folder: str | os.PathLike) -> dict[int, Analysis]:
    """Epoch → the cached analysis of `photo` by that epoch's snapshot, for every snapshot."""
    return {epoch: cache.analysis(photo, folder, epoch) for epoch in list_snapshots(folder)}


def overlay_frame(analysis: Analysis, opacity: float, max_side: int) -> np.ndarray:
    """The photo with its predicted mask, scaled so its longer side is at most `max_side` (the
    probabilities are resampled straight to that size, which is quicker than the photo's)."""
    h, w = fit_size(*analysis.photo.shape[:2], max_side)
    probs = F.interpolate(analysis.probs[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    mask = probs.argmax(0).numpy().astype(np.uint8)
    return overlay_mask(resize(analysis.photo, (h, w)), mask, opacity, len(probs))


def export_gif(frames: list[np.ndarray], labels: list[str], path: str | os.PathLike, frame_ms: int = 700) -> Path:
    """Write an animated GIF, one frame per picture with its label in a band on top; the last
    frame stays three times as long so the final mask can be seen before the loop restarts."""
    if not frames or len(frames) != len(labels):
        raise ValueError(f"need one label per frame and at least one frame, got {len(frames)} frames, {len(labels)} labels")
    # Pillow's default palette search takes ~0.1 s a frame; the fast octree one is ~100× quicker
    # and looks the same on these photo-and-mask frames.
    images = [Image.fromarray(caption_band(frame, label)).quantize(256, method=Image.Quantize.FASTOCTREE)
              for frame, label in zip(frames, labels)]
    durations = [frame_ms] * (len(images) - 1) + [3 * frame_ms]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


def blocky_explanation(patch_size: int, out_channels: int) -> str:
    """Markdown: why the first epochs' masks are made of P×P blocks, with this model's numbers."""
    p, c = patch_size, out_channels
    return (
        f"**Why early masks are blocky.** The head turns each token into one block of "
        f"P·P·C = {p}·{p}·{c} = {p * p * c} logits, which is put back as its {p}×{p} square of the mask. "
        f"Early in training a token has only learned whether its {p}×{p} patch is *mostly pet or mostly "
        f"background*, so all {p * p} pixels of the square get the same answer and the mask is a mosaic of "
        f"squares. Later the tokens learn where inside their patch the edge runs, and the squares dissolve."
    )
