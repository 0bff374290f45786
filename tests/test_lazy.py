"""The lazy-drawing core (`vitviz.ui.lazy`) on its own: which views `want` asks to draw, and what
`lazy` watches and wires."""

import gradio as gr

from vitviz.ui.context import AnalysisKey
from vitviz.ui.lazy import Refresh, lazy, want

KEY = AnalysisKey("photo", "/checkpoints/tiny", 3)


def views_of_two_tabs_and_the_tour():
    """A view on tab "a" watching one slider, one on tab "b" depending on the checkpoint only, and an
    always-shown view (tab None) watching nothing."""
    with gr.Blocks() as demo:
        analysis, shown = gr.State(None), gr.State("a")
        slider, picture, table, panel = gr.Slider(), gr.Image(), gr.Markdown(), gr.Markdown()
        views = [lazy(Refresh(lambda key, value: picture, [slider], [picture]), "a", analysis),
                 lazy(Refresh(lambda key: table, [], [table], depends_on=lambda key: key and key.checkpoint), "b",
                      analysis),
                 lazy(Refresh(lambda key: panel, [], [panel]), None, analysis)]
    return demo, analysis, shown, slider, views


def test_want_asks_only_the_views_on_screen_for_what_they_should_show():
    _, analysis, shown, slider, views = views_of_two_tabs_and_the_tour()
    wanted = want(views, analysis, shown)
    assert wanted.inputs == [analysis, shown, slider] and wanted.outputs == [view.wanted for view in views]
    assert wanted.fn(KEY, "a", 0.7) == {views[0].wanted: (KEY, 0.7), views[2].wanted: (KEY,)}
    assert wanted.fn(KEY, "b", 0.7) == {views[1].wanted: ("/checkpoints/tiny",), views[2].wanted: (KEY,)}
    assert wanted.fn(None, "train", 0.7) == {views[2].wanted: (None,)}  # a tab without views: the tour only


def test_lazy_draws_on_a_change_of_wanted_and_watches_only_inputs_it_does_not_write():
    with gr.Blocks() as demo:
        analysis, patch, layer, picture = gr.State(None), gr.State(None), gr.Slider(), gr.Image()
        refresh = Refresh(lambda key, patch_, layer_: {patch: 1, picture: None}, [patch, layer], [patch, picture])
        view = lazy(refresh, "attention", analysis)
    assert view.tab_id == "attention" and view.watched == [layer]  # the clicked patch is its own output
    listener = next(fn for fn in demo.fns.values() if fn.targets == [(view.wanted._id, "change")])
    assert listener.fn is refresh.fn
    assert listener.inputs == [analysis, patch, layer] and listener.outputs == [patch, picture]
