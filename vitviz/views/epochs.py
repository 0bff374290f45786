"""The Epochs view: one photo's predicted mask at every saved snapshot of a run, that epoch's
metrics, and the progression as an animated GIF (the article's blocky-mask GIF, for any photo).

Why early masks are blocky (for per-patch heads; a skip decoder's are not): the per-patch head turns each token into one P·P·C block of logits,
and early in training a token only knows whether its patch is mostly pet or mostly background, so
every pixel of the block gets the same answer. Finer shapes appear as the tokens learn where
inside their patch the edge runs.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from PIL import Image

from vitviz.app.downloads import write_privately
from vitviz.app.i18n import DEFAULT, class_values, text
from vitviz.app.inference import Analysis, ModelCache
from vitviz.model.vit import HEADS
from vitviz.training.checkpoint import list_snapshots, read_metrics
from vitviz.training.jobs import read_status
from vitviz.views.pictures import caption_band, fit_size, resize
from vitviz.views.segment import overlay_mask


def final_label(folder: str | os.PathLike, metrics: dict[int, dict] | None = None, lang: str = DEFAULT) -> str:
    """The name (in `lang`) of the folder's last weights: "final (epoch 50)" when training finished,
    else "latest saved (epoch 7, still training)", or "…, training stopped" for a run that stopped
    or crashed before its last epoch. `metrics` is `read_metrics(folder)` when known."""
    last = max(read_metrics(folder) if metrics is None else metrics, default=None)
    if (Path(folder) / "model.safetensors").is_file():
        return text("epochs.final_epoch", lang, epoch=last) if last else text("epochs.final", lang)
    if not last:
        return text("epochs.latest", lang)
    stopped = read_status(folder).state in ("stopped", "crashed")
    return text("epochs.stopped_epoch" if stopped else "epochs.latest_epoch", lang, epoch=last)


def metrics_text(label: str, row: dict | None, lang: str = DEFAULT) -> str:
    """One Markdown line (in `lang`) with the losses and test scores of the weights called `label`
    ("epoch 3", "final (epoch 50)"), or why there are none."""
    title = label[:1].upper() + label[1:]
    if row is None:
        return text("epochs.no_metrics", lang, title=title)
    parts = [text("epochs.train_loss", lang, value=row["train_loss"])] if "train_loss" in row else []
    if "val_loss" in row:
        parts.append(text("epochs.val_loss", lang, value=row["val_loss"]))
    if "pixel_accuracy" in row:
        parts.append(text("epochs.pixel_accuracy", lang, value=row["pixel_accuracy"]))
    if "miou" in row:
        per_class = class_values(row.get("iou", {}), lang, ".2f")
        parts.append(text("epochs.miou", lang, value=row["miou"]) + (f" ({per_class})" if per_class else ""))
    elif "val_loss" not in row:
        parts.append(text("epochs.not_validated", lang))
    return f"**{title}**: " + " · ".join(parts)


@dataclass(frozen=True)
class Frame:
    """One step of the progression: the photo as seen by a snapshot, or by the final weights."""

    epoch: int | None  # the snapshot's epoch; None for the folder's final (or latest saved) weights
    label: str  # "epoch 3", "final (epoch 50)"
    analysis: Analysis
    metrics: dict | None  # the epoch's row of the metrics, when one was recorded


def progression(cache: ModelCache, photo: np.ndarray, folder: str | os.PathLike) -> list[Frame]:
    """The cached analysis of `photo` by every snapshot, oldest first, then by the final weights.
    The snapshot of the final weights' own epoch is left out: training saves one at its last
    epoch, and it holds the same weights."""
    metrics = read_metrics(folder)
    last = max(metrics, default=None)
    frames = [Frame(epoch, f"epoch {epoch}", cache.analysis(photo, folder, epoch), metrics.get(epoch))
              for epoch in list_snapshots(folder) if epoch != last]
    return frames + [Frame(None, final_label(folder, metrics), cache.analysis(photo, folder), metrics.get(last))]


def overlay_frame(analysis: Analysis, opacity: float, max_side: int) -> np.ndarray:
    """The photo with its predicted mask, scaled so its longer side is at most `max_side` (the
    probabilities are resampled straight to that size, which is quicker than the photo's)."""
    h, w = fit_size(*analysis.photo.shape[:2], max_side)
    probs = F.interpolate(analysis.probs[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    mask = probs.argmax(0).numpy().astype(np.uint8)
    return overlay_mask(resize(analysis.photo, (h, w)), mask, opacity, len(probs))


def export_gif(frames: list[np.ndarray], labels: list[str], path: str | os.PathLike, frame_ms: int = 700) -> Path:
    """Write an animated GIF, one frame per picture with its label in a band on top; the last
    frame stays three times as long so the final mask can be seen before the loop restarts.
    Written like every picture of a user's photo (`downloads.write_privately`): mode 0600, whole."""
    if not frames or len(frames) != len(labels):
        raise ValueError(f"need one label per frame and at least one frame, got {len(frames)} frames, {len(labels)} labels")
    # Pillow's default palette search takes ~0.1 s a frame; the fast octree one is ~100× quicker
    # and looks the same on these photo-and-mask frames.
    images = [Image.fromarray(caption_band(frame, label)).quantize(256, method=Image.Quantize.FASTOCTREE)
              for frame, label in zip(frames, labels)]
    durations = [frame_ms] * (len(images) - 1) + [3 * frame_ms]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_privately(path, lambda file: images[0].save(
        file, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0))


def mask_explanation(head: str, patch_size: int, out_channels: int, lang: str = DEFAULT) -> str:
    """Markdown (in `lang`): why this model's early masks look as they do, with its numbers. A
    per-patch head paints each P×P square from one token, so early masks are mosaics of squares; a
    head that decodes with the conv stem's feature maps draws outlines finer than a patch from the
    first epoch, and saying "blocky" of it would be false."""
    p, c = patch_size, out_channels
    if HEADS[head].uses_stem_features:
        return text("epochs.smooth", lang, p=p)
    return text("epochs.blocky", lang, p=p, c=c, logits=p * p * c, pixels=p * p)
