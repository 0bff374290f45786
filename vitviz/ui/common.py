"""What the app shell shares with every tab.

The shell owns the photo upload, the checkpoint and epoch pickers, and one `gr.State` holding an
`AnalysisKey`. Whenever that key changes (new photo, checkpoint or epoch), the shell calls each
tab's `Refresh` once; a tab never runs the model itself, it reads `ctx.analysis_for(key)`, which
is served from the cache (one forward pass per photo, checkpoint and epoch).

A tab module exposes `build(ctx: Context) -> Refresh`, called inside its `gr.Tab`.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np

from vitviz.inference import Analysis, ModelCache, photo_id


@dataclass(frozen=True)
class AnalysisKey:
    photo_id: str  # sha1 of the decoded photo
    checkpoint: str  # resolved checkpoint folder
    epoch: int | None  # a snapshot epoch, or None for the final weights


@dataclass
class Refresh:
    """How the shell updates a tab after a new analysis: fn(key, *inputs) -> outputs."""

    fn: Callable
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


class PhotoStore:
    """Decoded photos by id, shared by all sessions (so a State holds only a short key); bounded
    by their number and their memory, the newest photo always kept."""

    def __init__(self, capacity: int = 64, max_bytes: int = 1 << 30):
        self._photos: OrderedDict[str, np.ndarray] = OrderedDict()
        self._capacity, self._max_bytes = capacity, max_bytes
        self._lock = threading.Lock()

    def put(self, photo: np.ndarray) -> str:
        pid = photo_id(photo)
        with self._lock:
            self._photos[pid] = photo
            self._photos.move_to_end(pid)
            while len(self._photos) > 1 and (len(self._photos) > self._capacity or
                                             sum(p.nbytes for p in self._photos.values()) > self._max_bytes):
                self._photos.popitem(last=False)
        return pid

    def get(self, photo_id: str) -> np.ndarray:
        with self._lock:
            if photo_id not in self._photos:
                raise gr.Error("This photo is no longer in memory: please upload it again.")
            return self._photos[photo_id]


@dataclass
class Context:
    cache: ModelCache
    photos: PhotoStore
    checkpoints: dict[str, Path]  # display name → folder
    analysis: gr.State | None = None  # holds AnalysisKey | None; created by the shell
    runs_dir: Path = Path("runs")  # where training runs live (the Train tab starts new ones there)
    data_root: str | None = None  # the dataset folder given to the app, if any

    def analysis_for(self, key: AnalysisKey | None) -> Analysis | None:
        if key is None:
            return None
        return self.cache.analysis(self.photos.get(key.photo_id), key.checkpoint, key.epoch)
