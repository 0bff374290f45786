"""What the app shell shares with every tab.

The shell owns the photo upload, the checkpoint and epoch pickers, and one `gr.State` holding an
`AnalysisKey`. Whenever that key changes (new photo, checkpoint or epoch), the shell offers each
tab's `Refresh` the new key; a tab never runs the model itself, it reads `ctx.analysis_for(key)`,
which is served from the cache (one forward pass per photo, checkpoint and epoch).

A tab module exposes `build(ctx: Context) -> Refresh` (or a list of them, for parts of the tab
that depend on different things), called inside its `gr.Tab`. The shell
makes every tab's Refresh `lazy`: a tab draws while it is on screen, or when it is opened, never
in the background. A new photo then costs the drawing of one tab, not five: on a 2-core server
shared by a classroom that is the difference between a queue and none.

Languages: the shell's language picker is `ctx.language`. A component whose label or text the
picker must change is made with `ctx.localized(...)`; the picker's change event sends every such
component its texts in the new language, then the shell redraws the tabs, whose handlers take
`ctx.language` as their last input (a `lang` parameter, English by default) for the texts they write.
"""

import math
import reprlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import gradio as gr
import numpy as np

from vitviz.app.i18n import DEFAULT, text
from vitviz.app.inference import Analysis, ModelCache, photo_id
from vitviz.views.pictures import click_to_patch

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


def whole_key(key: "AnalysisKey | None") -> Any:
    return key


@dataclass
class Refresh:
    """How the shell updates a tab after a new analysis: fn(key, *inputs) -> outputs. `depends_on`
    picks what of the key the drawing depends on: the whole key by default; the Position tab's
    photo-independent tables only its checkpoint and epoch, so a new photo leaves them as they are."""

    fn: Callable
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    depends_on: Callable[["AnalysisKey | None"], Any] = whole_key


@dataclass
class LazyView:
    """A view that draws only when it should show something new. `wanted` holds what it should
    show: (what of the analysis key it depends on, *watched inputs). The shell sets it (`want`) for the tab on screen, after a
    new analysis and when a tab is opened; its change event draws the view. Setting it to what it
    already holds fires nothing, so reopening a tab for the same photo costs nothing, and a tab off
    screen is not even part of the event: in Gradio 6 every output an event skips still costs a
    rebuild of that component's config (about a millisecond each, dozens per tab)."""

    tab_id: str | None  # the tab it lives in; None for a view always on screen (the tour panel)
    wanted: gr.State
    watched: list  # the inputs its drawing depends on, other than those it writes itself
    depends_on: Callable[["AnalysisKey | None"], Any]  # the part of the analysis key it depends on


def lazy(refresh: Refresh, tab_id: str | None, analysis: gr.State) -> LazyView:
    """`refresh` drawn whenever its LazyView's `wanted` changes. Call it inside the tab: the State
    it adds, placed between two tabs, would shift the later tabs' order in the browser. Inputs the
    view also writes (its clicked patch, its own controls) are not watched: the view's own handlers
    keep it in step with them."""
    wanted = gr.State(None)
    written = {id(block) for block in refresh.outputs}
    wanted.change(refresh.fn, [analysis, *refresh.inputs], refresh.outputs, show_progress="minimal")
    return LazyView(tab_id, wanted, [block for block in refresh.inputs if id(block) not in written],
                    refresh.depends_on)


def want(views: list[LazyView], analysis: gr.State, shown_tab: gr.State) -> Refresh:
    """fn(key, shown tab id, *watched inputs of every view) → each view's new `wanted`: what it
    should show if it is on screen, else left as it is (a State costs nothing to skip)."""
    starts = [0]
    for view in views:
        starts.append(starts[-1] + len(view.watched))

    def wanted(key: AnalysisKey | None, shown: str, *inputs) -> list:
        return [(view.depends_on(key), *inputs[start:end]) if view.tab_id in (shown, None) else gr.skip()
                for view, start, end in zip(views, starts, starts[1:])]

    return Refresh(wanted, [analysis, shown_tab, *(i for view in views for i in view.watched)],
                   [view.wanted for view in views])


def saved_files(ctx: "Context", elem_id: str) -> gr.File:
    """Where a tab lists the PNG files its "save" button wrote. Hidden until a save; a tab hides it
    again when it draws a new photo (`HIDE_SAVED`). Clicks leave it as it is: the file names say
    which patch and layer they show, and every output an event returns, even a gr.skip(), costs
    Gradio a rebuild of that component's config."""
    return ctx.localized(gr.File, {"label": "attention.saved"}, file_count="multiple", visible=False,
                         interactive=False, elem_id=elem_id)


def show_saved(paths: list[Path]) -> dict:
    return gr.update(value=[str(p) for p in paths], visible=True)


HIDE_SAVED = gr.update(value=None, visible=False)


# --- what the browser sends: every handler checks it here -------------------------------------
# A browser sends what its widgets allow, but anyone can call the API with anything. What cannot be
# used gets a one-line gr.Error, logged without a traceback, and the views stay as they are.

def clicked_patch(index: Any, shown: tuple[int, int], grid: tuple[int, int], lang: str = DEFAULT) -> int | None:
    """The patch under a click on a picture shown at `shown` (height, width), from the click's
    `gr.SelectData.index`: the one place where the tabs' clicks become patches. Anything but two
    finite numbers (["a", "b"], [1], "xyz", None, NaN) is refused; a click outside the picture (an
    edge pixel that a browser rounds out) gets a warning and None, and the tab draws nothing new."""
    if not (isinstance(index, (list, tuple)) and len(index) == 2 and all(map(_finite, index))):
        raise gr.Error(text("shell.bad_click", lang, index=reprlib.repr(index)), print_exception=False)
    height, width = shown
    try:
        return click_to_patch(index[0], index[1], width, height, grid)
    except ValueError as e:
        gr.Warning(text("shell.click_outside", lang, reason=e))
        return None


def whole_number(value: Any, low: int, high: int, what: str, lang: str = DEFAULT) -> int:
    """A slider's value, rounded and clamped to low…high. Out of range is no error: a slider may
    still hold a value for the previous checkpoint (layer 12 of a 4-layer model). Anything but a
    finite number is refused, naming `what` (the slider's label in `lang`)."""
    return min(max(round(number(value, what, lang)), low), high)


def number(value: Any, what: str, lang: str = DEFAULT) -> int | float:
    """`value` when it is a finite number, else refused, naming `what` (the field's label in `lang`)."""
    if not _finite(value):
        raise gr.Error(text("shell.bad_number", lang, what=what, value=reprlib.repr(value)), print_exception=False)
    return value


def one_of(value: Any, choices: Sequence[str], what: str, lang: str = DEFAULT) -> str:
    """`value` when it is one of `choices` (a radio button's values), else refused, naming `what`."""
    if value not in choices:
        raise gr.Error(text("shell.bad_choice", lang, what=what, choices=", ".join(choices),
                            value=reprlib.repr(value)), print_exception=False)
    return value


def _finite(value: Any) -> bool:
    """A number a widget can send: not a bool, a string, None, NaN, infinity, or an integer too
    large for a float (a click or a layer that far out is no click or layer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


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
