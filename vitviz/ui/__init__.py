"""The app's Gradio wiring: computation lives in `vitviz.views`; a tab here only connects
components to those functions.

The contract between a tab and the shell (`app.py`): a tab is one module `ui/<id>.py` (its id is the
module's name, its title the text "shell.tab_<id>") with `build(ctx: Context) -> Refresh` (or a
list of them, for parts of the tab that depend on different things), called inside its `gr.Tab`.
A `Refresh` names the handler that redraws the tab for a new analysis, its inputs and its outputs;
the handler returns `{component: value}` for the outputs it changes. The shell makes every Refresh
`lazy` (`ui.lazy`). What tabs share is in `ui.context` (the shell's state) and `ui.widgets`
(pictures, saved files, the checks of clicks and controls); no tab imports another.
"""
