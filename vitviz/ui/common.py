"""What the app shell shares with every tab.

The shell owns the photo upload, the checkpoint and epoch pickers, and one `gr.State` holding an
`AnalysisKey`. Whenever that key changes (new photo, checkpoint or epoch), the shell offers each
tab's `Refresh` the new key; a tab never runs the model itself, it reads `ctx.analysis_for(key)`,
which is served from the cache (one forward pass per photo, checkpoint and epoch).

A tab module exposes `build(ctx: Context) -> Refresh`, called inside its `gr.Tab`. The shell
wraps every tab's Refresh with `only_when_shown`: a tab draws while it is on screen, or when it
is opened, never in the background. A new photo then costs the drawing of one tab, not five: on
a 2-core server shared by a classroom that is the difference between a queue and none.

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

from vitviz.i18n import DEFAULT, text
from vitviz.inference import Analysis, ModelCache, photo_id

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


@dataclass
class Refresh:
    """How the shell updates a tab after a new analysis: fn(key, *inputs) -> outputs."""

    fn: Callable
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


def only_when_shown(refresh: Refresh, tab_id: str, shown_tab: gr.State) -> Refresh:
    """`refresh` made to draw only while tab `tab_id` is the one on screen (`shown_tab` holds its
    id), and only when its key or inputs differ from its last drawing. The shell calls it after
    every new analysis and whenever a tab is opened, so the tab computes once, when looked at.
    Inputs the tab also writes (its clicked patch, its own controls) are left out of the comparison:
    the tab's own handlers keep its views in step with them. Call it inside the tab: it adds a
    `gr.State` there."""
    drawn = gr.State(None)  # (key, *watched inputs) of the tab's last drawing
    written = {id(block) for block in refresh.outputs}
    watched = [i for i, block in enumerate(refresh.inputs) if id(block) not in written]

    def draw_if_shown(key: AnalysisKey | None, shown: str, last: tuple | None, *inputs) -> list:
        mark = (key, *(inputs[i] for i in watched))
        if shown != tab_id or mark == last:
            return [gr.skip()] * (len(refresh.outputs) + 1)
        return [*refresh.fn(key, *inputs), mark]

    return Refresh(draw_if_shown, [shown_tab, drawn, *refresh.inputs], [*refresh.outputs, drawn])


def as_one(refreshes: list[Refresh]) -> Refresh:
    """`refreshes` run as one event: each event waits its own turn in the server's queue, so a chain
    of five mostly-skipped redraws cost five waits where one does. Each fn returns one value per output."""
    starts = [0]
    for r in refreshes:
        starts.append(starts[-1] + len(r.inputs))

    def run_all(key: AnalysisKey | None, *inputs) -> list:
        return [out for r, start, end in zip(refreshes, starts, starts[1:]) for out in r.fn(key, *inputs[start:end])]

    return Refresh(run_all, [i for r in refreshes for i in r.inputs], [o for r in refreshes for o in r.outputs])


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

    def get(self, photo_id: str, lang: str = DEFAULT) -> np.ndarray:
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
        """The localized components, in the order of `translations`."""
        return [component for component, _ in self.localized_components]

    def translations(self, lang: str) -> list[dict]:
        """One update per localized component, in registration order: its texts in `lang`."""
        return [gr.update(**{prop: resolve(value, lang) for prop, value in texts.items()})
                for _, texts in self.localized_components]
