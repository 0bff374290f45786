"""Workarounds for Gradio, all in one place, applied by `app.main` before the server starts.

Not on import and not by `build_app`: a test that builds the app in-process leaves Gradio as it
is. Each fix was measured on Gradio `MEASURED_ON` (the load script, `scripts/load_test.py`); on any
other version `apply` applies none of them and says so, because a fix may reach into Gradio's
private parts, and a newer Gradio may have changed them or fixed the problem itself. Measure again
with the load script, then move `MEASURED_ON`.
"""

import datetime
import os
from pathlib import Path

import gradio
from gradio import processing_utils
from gradio.blocks import Block
from gradio.components import State
from gradio.state_holder import SessionState, StateHolder

from vitviz.app.downloads import write_privately

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


# How long a closed page's session is kept after its last event: enough for a page whose heartbeat
# dropped for a moment (Wi-Fi) to come back to its photo, short enough that a classroom's reloads
# do not pile up (about a page a student a minute).
CLOSED_SESSION_GRACE_S = 120

_delete_expired_state = StateHolder.delete_all_expired_state


def _drop_closed_sessions(holder: StateHolder, now: datetime.datetime | None = None) -> None:
    _delete_expired_state(holder)
    now = now or datetime.datetime.now()
    with holder.lock:
        closed = [session_id for session_id, session in holder.session_data.items() if session.is_closed and
                  (now - holder.time_last_used.get(session_id, now)).total_seconds() > CLOSED_SESSION_GRACE_S]
    for session_id in closed:
        holder.delete_state(session_id)  # the States' delete callbacks, as Gradio's own expiry runs them
        with holder.lock:
            holder.session_data.pop(session_id, None)
            holder.time_last_used.pop(session_id, None)


def drop_closed_sessions() -> None:
    """Gradio kept every closed page's session for an hour, and part of it until 10,000 newer ones.

    When a page is closed or reloaded its heartbeat stream ends and Gradio marks the session
    closed, but it only lets the session's States expire an hour later, and keeps the session's
    own copy of every component's config until `state_session_capacity` newer sessions push it out.
    Under the load script with a new page per photo (30 users, about 36 pages a minute) the server
    grew by some 25 MB a minute. The fix drops a closed session whole once it has been idle for
    `CLOSED_SESSION_GRACE_S`, from Gradio's own once-a-second sweep (replacing the private
    `StateHolder.delete_all_expired_state`; `tests/test_gradio_fixes.py`). Sessions that never
    say goodbye are still bounded by `state_session_capacity` (`app.SESSIONS_KEPT`)."""
    StateHolder.delete_all_expired_state = _drop_closed_sessions


def _save_picture_whole(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    return str(write_privately((folder / f"{name}.{format}").resolve(), lambda file: file.write(data)))


def replace_cached_pictures_whole() -> None:
    """Gradio rewrote a picture in its cache in place while browsers could be reading it.

    A picture a handler returns as an array is encoded and written to Gradio's cache under a path
    named by its content, so every session that shows the same picture (the first example's, at
    each page load) gets the same file. Gradio wrote it again in place each time (truncate, then
    write), and a browser fetching it from another session meanwhile could read an empty file: the
    load script with a new page per photo (`--reload`, 30 users) saw the server close a download
    after 0 of its 69,651 bytes. The fix writes a new file beside it and renames it over the old
    one (replacing `processing_utils.save_pil_to_cache`, through which every picture array goes),
    so a reader gets the old file or the new one, both whole (`tests/test_gradio_fixes.py`)."""
    processing_utils.save_pil_to_cache = _save_picture_whole


FIXES = (keep_ids_of_updated_components, thin_out_queue_analytics, drop_closed_sessions, replace_cached_pictures_whole)


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
