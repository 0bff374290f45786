"""A fix for Gradio's per-session copies of updated components, which grew without end.

When an event updates a component's properties (`gr.update(visible=...)`, or a component returned),
Gradio makes a new instance of it for that session and files it under the component's id. But the
instance draws a fresh id of its own, and the next event that sends the component a plain value
files it a second time under that new id, with a new copy of its config. Every update followed by
a value thus left one more entry in the session for good: under the load script the server's
sessions gained some 7 Dropdowns, Images, Sliders and their configs a second, and its memory
kept creeping up. Found in Gradio 6.31; `keep_ids_of_updated_components` gives the new instance the id it
replaces, so the session holds one entry per component.
"""

from gradio.blocks import Block
from gradio.components import State
from gradio.state_holder import SessionState

_file_in_session = SessionState.__setitem__


def _file_under_its_own_id(session: SessionState, key: int, value) -> None:
    if isinstance(value, Block) and not isinstance(session.blocks_config.blocks.get(key), State):
        value._id = key  # the instance stands for the component `key` in this session
    _file_in_session(session, key, value)


def keep_ids_of_updated_components() -> None:
    """Apply the fix (once; calling it again changes nothing)."""
    SessionState.__setitem__ = _file_under_its_own_id
