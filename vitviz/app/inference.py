"""One traced forward pass per (photo, checkpoint, epoch), cached: everything the views draw.

A click never re-runs the model: the attention, shape and position views all read the
`Analysis` computed here.
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vitviz.model.trace import Trace
from vitviz.model.vit import SegmentationViT
from vitviz.training.checkpoint import load_model, read_config
from vitviz.training.predict import flip_averaged
from vitviz.views.attention import attention_rollout
from vitviz.views.pictures import CLICKABLE_SIDE, draw_patch_grid, fit_photo, fit_size, outline_patch
from vitviz.views.segment import class_mask, resampled, unsure_pixels


@dataclass
class Analysis:
    photo: np.ndarray  # (H0, W0, 3) uint8, the user's photo as uploaded (orientation applied)
    image: torch.Tensor  # (3, S, S) in [0, 1]: the photo resized to the model's input size
    trace: Trace  # every stage's tensor, and one (1, heads, T, T) attention tensor per layer
    probs: torch.Tensor  # (C, S, S) class probabilities at model size, flip-averaged
    class_probs: torch.Tensor | None  # (K,) when the model has a class-token head
    labels: list[str]  # names of the class-token head's classes
    patch_size: int
    has_class_token: bool
    _fitted: dict[tuple[int, bool, int], np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _mask: np.ndarray | None = field(default=None, repr=False, compare=False)  # `mask_at_photo_size`, once
    _unsure: np.ndarray | None = field(default=None, repr=False, compare=False)  # `unsure_at_photo_size`, once

    @property
    def image_size(self) -> int:
        return self.image.shape[-1]

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size // self.patch_size, self.image_size // self.patch_size

    def photo_fitted(self, max_side: int, with_grid: bool = False, min_side: int = 0) -> np.ndarray:
        """The photo resized to fit `max_side` (and enlarged to `min_side`: `fit_photo`), with faint
        lines between its patches when `with_grid`; kept: every click redraws on it."""
        if (max_side, with_grid, min_side) not in self._fitted:
            fitted = fit_photo(self.photo, max_side, min_side)
            self._fitted[max_side, with_grid, min_side] = draw_patch_grid(fitted, self.grid) if with_grid else fitted
        return self._fitted[max_side, with_grid, min_side]

    def clickable_size(self, max_side: int) -> tuple[int, int]:
        """(height, width) of the photo as a tab shows it for clicks: at most `max_side`, at least
        `CLICKABLE_SIDE` on its longer side."""
        return fit_size(*self.photo.shape[:2], max_side, CLICKABLE_SIDE)

    def click_target(self, max_side: int, patch: int | None) -> np.ndarray:
        """The photo at `clickable_size` with its patch grid, and `patch` outlined: what a tab's
        clickable photo shows."""
        lined = self.photo_fitted(max_side, with_grid=True, min_side=CLICKABLE_SIDE)
        return lined if patch is None else outline_patch(lined, patch, self.grid)

    @property
    def nbytes(self) -> int:
        """Memory it holds: the traced stage tensors and attention maps (layers × heads × tokens²
        floats), the photo and its fitted copies. 2.4 MB for the default model on a 128 px photo
        (0.6 MB of it attention: 64 tokens), 22 MB for the article's (mostly attention)."""
        tensors = [self.image, self.probs, *(stage.tensor for stage in self.trace.stages), *self.trace.attentions]
        kept = [*self._fitted.values(), *(array for array in (self._mask, self._unsure) if array is not None)]
        return self.photo.nbytes + sum(a.nbytes for a in kept) + sum(t.numel() * t.element_size() for t in tensors)

    @cached_property
    def rollout(self) -> torch.Tensor:
        """(T, T) attention rollout of this forward pass: the same for every click, so computed once."""
        return attention_rollout(self.trace.attentions)

    def probs_at_photo_size(self) -> torch.Tensor:
        """(C, H0, W0): probabilities resampled onto the photo's own size."""
        return resampled(self.probs, self.photo.shape[:2])

    def mask_at_photo_size(self) -> np.ndarray:
        """(H0, W0) class index per pixel of the original photo; kept: the Segment tab and the tour
        both read it, for every session that shows this photo."""
        if self._mask is None:
            self._mask = class_mask(self.probs_at_photo_size())
        return self._mask

    def unsure_at_photo_size(self) -> np.ndarray:
        """(H0, W0) True where the model is unsure (`unsure_pixels`) at the photo's own size; kept
        once asked for (a byte a pixel, like the mask), so an opacity change does not resample the
        probabilities again."""
        if self._unsure is None:
            self._unsure = unsure_pixels(self.probs_at_photo_size())
        return self._unsure


def photo_to_input(photo: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, size, size) float in [0, 1]: the same bilinear, non-aspect-preserving
    resize the model was trained with."""
    x = torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


@torch.no_grad()
def analyse(model: SegmentationViT, photo: np.ndarray, labels: list[str] | None = None) -> Analysis:
    image = photo_to_input(photo, model.cfg.image_size)
    trace = Trace()
    out = model(image[None], trace)
    class_probs = out.class_logits[0].softmax(-1) if out.class_logits is not None else None
    probs = flip_averaged(model, image[None], out.mask_logits)[0]  # as `evaluate` scores it
    return Analysis(photo, image, trace, probs, class_probs, labels or [], model.cfg.patch_size, model.cfg.class_token)


def photo_id(photo: np.ndarray) -> str:
    return hashlib.sha1(photo.tobytes() + str(photo.shape).encode()).hexdigest()


def model_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class ModelCache:
    """Loaded models and analyses, bounded LRU, safe to share between the server's threads.

    Models are bounded by their memory, not their number: a run's ten snapshots of a small model
    all fit (the Epochs view runs every one of them for each photo), the 86M-parameter model a few
    times. Analyses are bounded by both: of the default model (a few MB each) the 64 most recent
    fit; 512 MB bounds larger models such as the article's. The most recently used model and
    analysis always stay, whatever their size."""

    def __init__(self, max_model_bytes: int = 1 << 30, max_analyses: int = 64, max_analysis_bytes: int = 512 << 20):
        self._models: OrderedDict = OrderedDict()
        self._analyses: OrderedDict = OrderedDict()
        self._max_model_bytes, self._max_analyses = max_model_bytes, max_analyses
        self._max_analysis_bytes = max_analysis_bytes
        self._lock = threading.Lock()

    def model(self, folder: str | Path, epoch: int | None = None) -> SegmentationViT:
        key = (str(Path(folder).resolve()), epoch)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        model = load_model(folder, epoch)
        with self._lock:
            self._models[key] = model
            while len(self._models) > 1 and sum(map(model_bytes, self._models.values())) > self._max_model_bytes:
                self._models.popitem(last=False)
        return model

    def analysis(self, photo: np.ndarray, folder: str | Path, epoch: int | None = None) -> Analysis:
        key = (photo_id(photo), str(Path(folder).resolve()), epoch)
        with self._lock:
            if key in self._analyses:
                self._analyses.move_to_end(key)
                return self._analyses[key]
        labels = read_config(folder).get("labels", [])
        result = analyse(self.model(folder, epoch), photo, labels)
        with self._lock:
            self._analyses[key] = result
            while len(self._analyses) > 1 and (len(self._analyses) > self._max_analyses or sum(
                    a.nbytes for a in self._analyses.values()) > self._max_analysis_bytes):
                self._analyses.popitem(last=False)
        return result
