"""Workarounds for Gradio, all in one place, applied by `app.main` before the server starts.

Not on import and not by `build_app`: a test that builds the app in-process leaves Gradio as it
is. Each fix was measured on Gradio `MEASURED_ON` (the load script, `scripts/load_test.py`); on any
other version `apply` applies none of them and says so, because a fix may reach into Gradio's
private parts, and a newer Gradio may have changed them or fixed the problem itself. Measure again
with the load script, then move `MEASURED_ON`.
"""

import os

import gradio
from gradio.blocks import Block
from gradio.components import State
from gradio.state_holder import SessionState

MEASURED_ON = "6.31"  # major.minor of the Gradio these fixes were measured on

_file_in_session = SessionState.__setitem__


def _file_under_its_own_id(session: SessionState, key: int, value) -> None:
    if isinstance(value, Block) and not isinstance(session.blocks_config.blocks.get(key), State):
        value._id = key  # the instance stands for the component `key` in this session
    _file_in_session(session, key, value)


def keep_ids_of_updated_components() -> None:
    """Gradio's per-session copies of updated components grew without end.

    When an event updates a component's properties (`gr.update(visible=...)`, or a component
    returned), Gradio makes a new instance of it for that session and files it under the
    component's id. But the instance draws a fresh id of its own, and the next event that sends the
    component a plain value files it a second time under that new id, with a new copy of its config.
    Every update followed by a value thus left one more entry in the session for good: under the
    load script the server's sessions gained some 7 Dropdowns, Images, Sliders and their configs a
    second, and its memory kept creeping up. The fix gives the new instance the id it replaces
    (replacing the private `SessionState.__setitem__` for the whole process), so the session holds
    one entry per component (`tests/test_gradio_fixes.py`). Not reported upstream yet: no issue to
    follow. Calling it again changes nothing."""
    SessionState.__setitem__ = _file_under_its_own_id


def thin_out_queue_analytics() -> None:
    """Gradio's queue rebuilds a pandas table of its last 10,000 events after every event, for its
    monitoring page: 8% of the server's time under 20 users. Every 100 events, over the last 1,000.
    Environment variables, so a value the person who starts the app set wins."""
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")


FIXES = (keep_ids_of_updated_components, thin_out_queue_analytics)


def apply(version: str = gradio.__version__) -> bool:
    """Apply every fix when Gradio is the version they were measured on (else print why not);
    whether they were applied."""
    if version.split(".")[:2] != MEASURED_ON.split("."):
        print(f"vitviz: Gradio {version} is not the {MEASURED_ON} that vitviz/app/gradio_fixes.py was measured on: "
              f"its fixes ({', '.join(fix.__name__ for fix in FIXES)}) are not applied")
        return False
    for fix in FIXES:
        fix()
    return True
