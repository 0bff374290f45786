"""The Gradio workarounds (`vitviz.app.gradio_fixes`): Gradio keeps one entry per component in a
session, however often events update it, forgets a closed page's session after a grace period, and
replaces a cached picture whole instead of rewriting it under a reader; on another Gradio version no
fix is applied."""

import asyncio
import datetime
import os
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image
from gradio.state_holder import SessionState, StateHolder

from vitviz.app import gradio_fixes
from vitviz.app.gradio_fixes import keep_ids_of_updated_components


def test_updates_followed_by_values_do_not_grow_the_session():
    keep_ids_of_updated_components()
    with gr.Blocks() as demo:
        note = gr.Markdown("start", visible=False)
        shown = gr.State(None)
        show, write = gr.Button(), gr.Button()
        show.click(lambda: (gr.update(value="shown", visible=True), "a state value"), None, [note, shown])
        write.click(lambda: "a plain value", None, note)
    show_fn, write_fn = demo.fns.values()
    session = SessionState(demo)
    for _ in range(5):
        asyncio.run(demo.postprocess_data(show_fn, [gr.update(value="shown", visible=True), "kept"], session))
        asyncio.run(demo.postprocess_data(write_fn, "a plain value", session))
    assert set(session.blocks_config.blocks) == set(demo.blocks)
    assert set(session.config_values) == set(demo.blocks)
    props = session.config_values[note._id]["props"]
    assert props["value"] == "a plain value" and props["visible"] is True  # the update and the value both kept
    assert session[shown._id] == "kept" and session[note._id]._id == note._id


def test_a_picture_sent_again_replaces_the_cached_file_instead_of_rewriting_it(tmp_path, monkeypatch):
    """Two sessions sending the same picture share one file in Gradio's cache; the second must not
    truncate and rewrite the file the first session's browser may be downloading."""
    from gradio import image_utils, processing_utils

    monkeypatch.setattr(processing_utils, "save_pil_to_cache", processing_utils.save_pil_to_cache)  # undone after
    gradio_fixes.replace_cached_pictures_whole()
    picture = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    first = image_utils.save_image(picture, str(tmp_path), format="png")
    with open(first, "rb") as reader:  # a download under way
        second = image_utils.save_image(picture, str(tmp_path), format="png")
        assert second == first  # the same content, the same path
        assert os.fstat(reader.fileno()).st_ino != os.stat(second).st_ino  # a new file, renamed over the old one
        assert len(reader.read()) == os.path.getsize(second)  # the reader still gets the whole old file
    assert [path.name for path in Path(first).parent.iterdir()] == [Path(first).name]  # no partial file left
    with Image.open(second) as png:
        assert np.array_equal(np.asarray(png), picture)


def test_a_closed_page_is_forgotten_after_the_grace_period():
    with gr.Blocks() as demo:
        gr.State("a photo's analysis")
    holder = StateHolder()
    holder.set_blocks(demo)
    for session_id in ("open", "closed long ago", "just closed"):
        holder[session_id]
    holder.session_data["closed long ago"].is_closed = holder.session_data["just closed"].is_closed = True
    later = datetime.datetime.now() + datetime.timedelta(seconds=gradio_fixes.CLOSED_SESSION_GRACE_S / 2)
    holder.time_last_used["closed long ago"] -= datetime.timedelta(seconds=gradio_fixes.CLOSED_SESSION_GRACE_S)
    gradio_fixes._drop_closed_sessions(holder, now=later)
    assert list(holder.session_data) == ["open", "just closed"]  # Gradio alone kept all three for an hour
    assert list(holder.time_last_used) == ["open", "just closed"]


def test_the_fixes_wait_for_a_measurement_on_another_gradio_version(monkeypatch, capsys):
    setitem, sweep = SessionState.__setitem__, StateHolder.delete_all_expired_state
    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    assert not gradio_fixes.apply("7.0.1")
    assert SessionState.__setitem__ is setitem and StateHolder.delete_all_expired_state is sweep
    assert "GRADIO_ANALYTICS_CACHE_FREQUENCY" not in os.environ
    assert "Gradio 7.0.1 is not the 6.31" in capsys.readouterr().out
    assert gr.__version__.startswith(gradio_fixes.MEASURED_ON + ".")  # the version these tests run on
