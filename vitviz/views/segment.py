"""The Segment view's pictures: the predicted mask over the photo (and where the model is unsure),
per-class probability maps, the class-token head's top guesses, and what the checkpoint's metrics
say to expect from it.

The model sees the photo squashed to its input size (S×S); its mask is resampled back onto the
photo's own size, so the overlay lines up with the photo the user gave.
"""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vitviz.training.data import CLASS_NAMES
from vitviz.views.pictures import VIRIDIS, colourise, with_colour_bar

# Okabe–Ito colours (safe for colour-blind viewers), one per class of data.CLASS_NAMES
CLASS_COLOURS = {"pet": (230, 159, 0), "background": (0, 114, 178), "border": (240, 228, 66)}


def class_names(num_classes: int) -> list[str]:
    """The mask classes' names: pet, background, border for the 3-class models."""
    return list(CLASS_NAMES) if num_classes == len(CLASS_NAMES) else [f"class {i}" for i in range(num_classes)]


def palette(num_classes: int) -> np.ndarray:
    """(K, 3) uint8: the colour of each class index (a grey ramp for models with other classes)."""
    names = class_names(num_classes)
    if all(n in CLASS_COLOURS for n in names):
        return np.array([CLASS_COLOURS[n] for n in names], np.uint8)
    return np.linspace(40, 220, num_classes)[:, None].repeat(3, 1).astype(np.uint8)


def resampled(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, S, S) probabilities at the model's size → (C, H, W) at `size` (bilinear): how every view
    brings the model's answer onto the photo."""
    return F.interpolate(probs[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def class_mask(probs: torch.Tensor) -> np.ndarray:
    """(C, H, W) probabilities → (H, W) uint8 index of the most probable class."""
    return probs.argmax(0).numpy().astype(np.uint8)


def colour_mask(mask: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(H, W) class indices → (H, W, 3) uint8 class colours."""
    return palette(num_classes)[mask]


def overlay_mask(photo: np.ndarray, mask: np.ndarray, opacity: float, num_classes: int = len(CLASS_NAMES),
                 unsure: np.ndarray | None = None) -> np.ndarray:
    """Blend the class colours over the photo: opacity 0 shows the photo, 1 the mask alone. Pixels
    where `unsure` is True get `UNSURE_COLOUR` instead of their class's colour."""
    if photo.shape[:2] != mask.shape:
        raise ValueError(f"photo {photo.shape[:2]} and mask {mask.shape} differ in size")
    alpha = float(np.clip(opacity, 0, 1))
    colours = colour_mask(mask, num_classes)
    if unsure is not None:
        colours[unsure] = UNSURE_COLOUR
    blended = (1 - alpha) * photo.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.round(blended).astype(np.uint8)


# The model is "unsure" of a pixel when its most probable class gets less than this: with three
# classes, no class clearly ahead of the others.
UNSURE_BELOW = 0.6
UNSURE_COLOUR = (255, 255, 255)


def unsure_pixels(probs: torch.Tensor) -> np.ndarray:
    """(C, H, W) probabilities → (H, W) True where the top class's probability is under UNSURE_BELOW."""
    return (probs.max(0).values < UNSURE_BELOW).numpy()


def legend_html(num_classes: int = len(CLASS_NAMES), labels: list[str] | None = None, unsure: str | None = None) -> str:
    """One coloured swatch and name per class (or per `labels`, e.g. translated names), and one for
    the unsure pixels when `unsure` names them, for a gr.HTML next to the overlay."""
    entries = list(zip(labels or class_names(num_classes), palette(num_classes)))
    if unsure:
        entries.append((unsure, UNSURE_COLOUR))
    swatches = [
        f'<span style="display:inline-flex;align-items:center;margin-right:14px">'
        f'<span style="width:14px;height:14px;border:1px solid #333;margin-right:5px;'
        f'background:rgb{tuple(int(v) for v in colour)}"></span>{name}</span>'
        for name, colour in entries
    ]
    return "<div>" + "".join(swatches) + "</div>"


def probability_maps(probs: torch.Tensor, photo_shape: tuple[int, ...], side: int = 320) -> dict[str, np.ndarray]:
    """One viridis map per class of the (C, S, S) probabilities, stretched back to the photo's
    aspect ratio with its longer side `side` pixels, and a 0–1 colour bar underneath."""
    scale = side / max(photo_shape[:2])
    size = max(1, round(photo_shape[0] * scale)), max(1, round(photo_shape[1] * scale))
    maps = resampled(probs, size).numpy()
    return {name: with_colour_bar(colourise(p), VIRIDIS, "0", "1") for name, p in zip(class_names(len(probs)), maps)}


def class_shares(mask: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> dict[str, float]:
    """Fraction of the photo's pixels predicted as each class."""
    counts = np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
    return dict(zip(class_names(num_classes), (counts / max(1, mask.size)).tolist()))


def top_guesses(class_probs: torch.Tensor, labels: list[str], k: int = 5) -> dict[str, float]:
    """The k most probable classes of the class-token head, name → probability."""
    values, indices = class_probs.float().topk(min(k, len(class_probs)))
    names = [labels[i] if i < len(labels) else f"class {i}" for i in indices.tolist()]
    return dict(zip(names, values.tolist()))


def expectations(folder: str | Path) -> dict | None:
    """What the checkpoint's metrics.json says to expect, for the Segment tab: its scores on the
    test photos ("evaluation", written by `python -m vitviz.evaluate --record`, flip-averaged as
    the app predicts; else the last epoch's one-pass "final" scores), and what it was trained on.
    None when the folder has no readable metrics."""
    try:
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        config = json.loads((Path(folder) / "config.json").read_text())
        scores = metrics.get("evaluation") or {**metrics["final"], "split": metrics.get("final_split"),
                                               "flip": False, "n_images": None}
        facts = dict(accuracy=float(scores["pixel_accuracy"]), miou=float(scores["miou"]), split=scores["split"],
                     flip=bool(scores["flip"]), photos=scores["n_images"], epochs=int(metrics["epochs_done"]),
                     size=int(config["model"]["image_size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {**facts, **scores.get("training_photos", {})}
