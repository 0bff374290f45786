"""What the app shell shares with every tab: the `Context` (model cache, photos, checkpoints, the
shell's analysis and language States) and the `AnalysisKey` that names one forward pass.

The shell owns the photo upload, the checkpoint and epoch pickers, and one `gr.State` holding an
`AnalysisKey`. A tab never runs the model itself: it reads `ctx.analysis_for(key)`, which is served
from the cache (one forward pass per photo, checkpoint and epoch).

Languages: the shell's language picker is `ctx.language`. A component whose label or text the
picker must change is made with `ctx.localized(...)`; the picker's change event sends every such
component its texts in the new language, then the shell redraws the tabs, whose handlers take
`ctx.language` as their last input (a `lang` parameter, English by default) for the texts they write.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import gradio as gr
import numpy as np

from vitviz.app.i18n import DEFAULT, text
from vitviz.app.inference import Analysis, ModelCache, photo_id

C = TypeVar("C")
# A component property's text: a catalog key, or a function of the language (choices, composed texts).
Text = str | Callable[[str], Any]


def resolve(value: Text, lang: str) -> Any:
    """The property value of `value` in language `lang`."""
    return value(lang) if callable(value) else text(value, lang)


def localized_choices(*pairs: tuple[str, Any]) -> Callable[[str], list[tuple[str, Any]]]:
    """(catalog key, value) pairs → a `Text` for the choices of a Radio or Dropdown."""
    return lambda lang: [(text(key, lang), value) for key, value in pairs]


@dataclass(frozen=True)
class AnalysisKey:
    photo_id: str  # sha1 of the decoded photo
    checkpoint: str  # resolved checkpoint folder
    epoch: int | None  # a snapshot epoch, or None for the final weights


class PhotoStore:
    """Decoded photos by id, shared by all sessions (so a State holds only a short key); bounded
    by their number and their memory, the newest photo always kept. A photo of the data set keeps
    its trimap beside it (its "truth"), so views can score the model on it."""

    def __init__(self, capacity: int = 64, max_bytes: int = 1 << 30):
        self._photos: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._capacity, self._max_bytes = capacity, max_bytes
        self._lock = threading.Lock()

    def put(self, photo: np.ndarray, truth: np.ndarray | None = None) -> str:
        """Keep `photo` (and its (H, W) class indices `truth`, when known); → its id."""
        pid = photo_id(photo)
        with self._lock:
            self._photos[pid] = photo, truth
            self._photos.move_to_end(pid)
            while len(self._photos) > 1 and (len(self._photos) > self._capacity or sum(
                    sum(a.nbytes for a in kept if a is not None) for kept in self._photos.values()) > self._max_bytes):
                self._photos.popitem(last=False)
        return pid

    def get(self, photo_id: str, lang: str = DEFAULT) -> np.ndarray:
        return self._kept(photo_id, lang)[0]

    def truth(self, photo_id: str, lang: str = DEFAULT) -> np.ndarray | None:
        """The photo's trimap as class indices (IGNORE where unknown), or None for a photo without one."""
        return self._kept(photo_id, lang)[1]

    def _kept(self, photo_id: str, lang: str) -> tuple[np.ndarray, np.ndarray | None]:
        with self._lock:
            if photo_id not in self._photos:
                raise gr.Error(text("shell.photo_gone", lang))
            return self._photos[photo_id]


@dataclass
class Context:
    cache: ModelCache
    photos: PhotoStore
    checkpoints: dict[str, Path]  # display name → folder
    analysis: gr.State | None = None  # holds AnalysisKey | None; created by the shell
    point: gr.State | None = None  # the selected point on the photo (`widgets.Point`) or None; created by the shell
    runs_dir: Path = Path("runs")  # where training runs live (the Train tab starts new ones there)
    data_root: str | None = None  # the dataset folder given to the app, if any
    language: gr.components.Component | None = None  # holds a code of i18n.LANGUAGES; created by the shell
    localized_components: list[tuple[Any, dict[str, Text]]] = field(default_factory=list)

    def analysis_for(self, key: AnalysisKey | None, lang: str = DEFAULT) -> Analysis | None:
        if key is None:
            return None
        return self.cache.analysis(self.photos.get(key.photo_id, lang), key.checkpoint, key.epoch)

    def localized(self, make: Callable[..., C], texts: dict[str, Text], **kwargs) -> C:
        """`make(**kwargs)` with the properties in `texts` (e.g. {"label": "segment.opacity"}) set
        to their English texts, registered so that the language picker changes them."""
        component = make(**kwargs, **{prop: resolve(value, DEFAULT) for prop, value in texts.items()})
        self.localized_components.append((component, texts))
        return component

    def localized_outputs(self) -> list:
        """The localized components: the outputs of `translations`."""
        return [component for component, _ in self.localized_components]

    def translations(self, lang: str) -> dict:
        """{localized component: update with its texts in `lang`}."""
        return {component: gr.update(**{prop: resolve(value, lang) for prop, value in texts.items()})
                for component, texts in self.localized_components}
