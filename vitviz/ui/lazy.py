"""Lazy drawing: a tab draws while it is on screen, or when it is opened, never in the background.

The shell offers each tab's `Refresh` every new `AnalysisKey` (new photo, checkpoint or epoch)
through `lazy` and `want`. A new photo then costs the drawing of one tab, not five: on a 2-core
server shared by a classroom that is the difference between a queue and none (measured with the
load script, README "Benchmarks").
"""

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Callable

import gradio as gr

from vitviz.ui.context import AnalysisKey


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
    refresh: Refresh
    wanted: gr.State
    watched: list  # the inputs its drawing depends on, other than those it writes itself
    depends_on: Callable[["AnalysisKey | None"], Any]  # the part of the analysis key it depends on


def lazy(refresh: Refresh, tab_id: str | None, analysis: gr.State) -> LazyView:
    """`refresh` drawn whenever its LazyView's `wanted` changes. Call it outside any tab, after the
    tabs: the page fires the change event of a State inside a tab the first time an event lists it
    as an output, even one that skips it, so every tab would draw at each page load; and a State
    placed between two tabs would shift the later tabs' order in the browser. Inputs the view also
    writes (its clicked patch, its own controls) are not watched: the view's own handlers keep it
    in step with them."""
    wanted = gr.State(None)
    written = {id(block) for block in refresh.outputs}
    wanted.change(refresh.fn, [analysis, *refresh.inputs], refresh.outputs, show_progress="minimal")
    return LazyView(tab_id, refresh, wanted, [block for block in refresh.inputs if id(block) not in written],
                    refresh.depends_on)


def on_screen(views: list[LazyView], inputs_of: Callable[[LazyView], list], shown: str,
              inputs: tuple) -> list[tuple[LazyView, tuple]]:
    """(view, its share of `inputs`) for each view on screen when tab `shown` is, where `inputs` are
    every view's `inputs_of(view)` one after another, as an event that serves all views receives them."""
    picked, start = [], 0
    for view in views:
        end = start + len(inputs_of(view))
        if view.tab_id in (shown, None):
            picked.append((view, inputs[start:end]))
        start = end
    return picked


def want(views: list[LazyView], analysis: gr.State, shown_tab: gr.State) -> Refresh:
    """fn(key, shown tab id, *watched inputs of every view) → {view's `wanted`: what it should show}
    for each view on screen; the others are left as they are (a State costs nothing to skip)."""
    def wanted(key: AnalysisKey | None, shown: str, *inputs) -> dict:
        return {view.wanted: (view.depends_on(key), *own)
                for view, own in on_screen(views, attrgetter("watched"), shown, inputs)}

    return Refresh(wanted, [analysis, shown_tab, *(i for view in views for i in view.watched)],
                   [view.wanted for view in views])


def draw_now(views: list[LazyView], analysis: gr.State, shown_tab: gr.State) -> Refresh:
    """fn(key, shown tab id, *inputs of every view) → the drawings of the views on screen, merged,
    for an event that must show them at once rather than through `wanted` (one more round trip to
    the server): the language switch. Their `wanted` is left as it was, so reopening such a tab
    draws it once more."""
    outputs = list({id(block): block for view in views for block in view.refresh.outputs}.values())

    def drawn(key: AnalysisKey | None, shown: str, *inputs) -> dict:
        return {block: value for view, own in on_screen(views, attrgetter("refresh.inputs"), shown, inputs)
                for block, value in view.refresh.fn(key, *own).items()}

    return Refresh(drawn, [analysis, shown_tab, *(i for view in views for i in view.refresh.inputs)], outputs)
