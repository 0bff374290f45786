"""The guided-tour panel above the tabs: where the step is in the journey, its title, its text and
its numbers for the current photo, and Back / Next. Opening the panel or moving to a step opens
the tab that shows that step (the steps themselves are in vitviz/views/tour.py)."""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from vitviz.app.i18n import DEFAULT, text
from vitviz.training.checkpoint import list_snapshots
from vitviz.ui.context import AnalysisKey, Context
from vitviz.ui.lazy import Refresh
from vitviz.ui.widgets import load_analysis
from vitviz.views import tour

# Bring the panel to the top of the window, so that the step's text and its tab's view are on screen together.
SCROLL_TO_PANEL = "(...inputs) => { document.getElementById('tour').scrollIntoView({block: 'start'}); return inputs; }"


@dataclass
class Tour:
    refresh: Refresh  # redraws the panel for a new photo or language
    follow: Callable[[gr.Tabs, gr.State], list]  # follow(tabs, shown tab id) wires the steps → their events


def build(ctx: Context) -> Tour:
    step = gr.State(0)  # the index of the step shown, in tour.STEPS
    with ctx.localized(gr.Accordion, {"label": lambda lang: text("tour.panel", lang, total=len(tour.STEPS))},
                       open=False, elem_id="tour") as accordion:
        progress = gr.Markdown(tour.progress_markdown(0, DEFAULT), elem_id="tour-progress")
        explanation = gr.Markdown(tour.step_markdown(0, DEFAULT, None), elem_id="tour-step")
        with gr.Row():
            back = ctx.localized(gr.Button, {"value": "tour.back"}, interactive=False, elem_id="tour-back")
            forward = ctx.localized(gr.Button, {"value": "tour.next"}, variant="primary", elem_id="tour-next")
    texts = [progress, explanation]

    @functools.lru_cache(maxsize=32)
    def knockout_numbers(key: AnalysisKey) -> dict:
        """The knock-out step's numbers for this analysis: 2 forward passes per block, so measured
        once, not again for each language or step back."""
        return tour.knockout_facts(ctx.cache.model(key.checkpoint, key.epoch), ctx.analysis_for(key))

    def panel(key: AnalysisKey | None, index: int, lang: str = DEFAULT) -> dict:
        """The texts of step `index`: progress, and the step's text (with the photo's numbers when
        there is a photo)."""
        analysis = load_analysis(ctx, key, warn=False, lang=lang)
        numbers = None
        if analysis is not None:
            model = ctx.cache.model(key.checkpoint, key.epoch)  # loaded for the analysis: a cache hit
            numbers = tour.facts(analysis, model.cfg, list_snapshots(key.checkpoint), lang)
            if tour.STEPS[index].name == "knockout":  # measured, so only for the step on screen
                numbers |= knockout_numbers(key)
        return {progress: tour.progress_markdown(index, lang), explanation: tour.step_markdown(index, lang, numbers)}

    def follow(tabs: gr.Tabs, shown_tab: gr.State) -> list:
        def go_to(key: AnalysisKey | None, index: int, lang: str) -> dict:
            """The step, its texts, Back / Next each usable only where there is a step to go to, the
            step's tab selected, and that tab's id for the shell's `shown_tab`."""
            index = tour.clamp(index)
            tab = tour.STEPS[index].tab
            return {step: index, **panel(key, index, lang), back: gr.update(interactive=index > 0),
                    forward: gr.update(interactive=index < len(tour.STEPS) - 1), tabs: gr.Tabs(selected=tab),
                    shown_tab: tab}

        def show_step(key: AnalysisKey | None, index: int, lang: str = DEFAULT) -> dict:
            return go_to(key, index, lang)

        def step_back(key: AnalysisKey | None, index: int, lang: str = DEFAULT) -> dict:
            return go_to(key, index - 1, lang)

        def step_next(key: AnalysisKey | None, index: int, lang: str = DEFAULT) -> dict:
            return go_to(key, index + 1, lang)

        inputs, outputs = [ctx.analysis, step, ctx.language], [step, *texts, back, forward, tabs, shown_tab]
        return [accordion.expand(show_step, inputs, outputs),
                back.click(step_back, inputs, outputs, js=SCROLL_TO_PANEL),
                forward.click(step_next, inputs, outputs, js=SCROLL_TO_PANEL)]

    # A new photo or language changes the texts; the buttons change only with the step.
    return Tour(Refresh(panel, [step, ctx.language], texts), follow)
