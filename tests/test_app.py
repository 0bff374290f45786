"""The app shell without a browser: finding checkpoints and examples, building the Blocks, the
Segment / Journey / Epochs tabs redrawing for an analysis key, and the Train tab locked when the
app can be reached from other computers."""

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from app import build_app, parse_args, training_locked
from session import Session, as_sent, drawn, tab_bar, upload_photo
from vitviz.app import inference, sources
from vitviz.app.i18n import text
from vitviz.app.inference import ModelCache
from vitviz.training import jobs
from vitviz.ui import attention, epochs, journey, segment
from vitviz.ui.context import AnalysisKey, Context, PhotoStore
from vitviz.views import tour

PHOTO = np.random.default_rng(2).integers(0, 256, (45, 70, 3), dtype=np.uint8)


def tab_labels(demo: gr.Blocks) -> list[str]:
    return [block.label for block in demo.blocks.values() if isinstance(block, gr.Tab)]


def test_the_app_builds_with_the_tiny_checkpoint_without_a_server(tiny_checkpoint, tmp_path):
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path / "none", runs_dir=tiny_checkpoint.parent)
    assert isinstance(demo, gr.Blocks) and not demo.is_running
    assert tab_labels(demo) == ["Segment", "Tensor journey", "Position embeddings", "Attention", "Knock-outs", "Epochs",
                               "Train"]


def test_the_app_starts_without_any_checkpoint(tmp_path):
    demo = build_app(checkpoint=tmp_path / "nothing", checkpoints_dir=tmp_path / "a", runs_dir=tmp_path / "b")
    texts = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and isinstance(b.value, str)]
    assert any("No checkpoint found" in t for t in texts)


def test_checkpoints_are_found_in_both_folders_and_the_default_falls_back(tiny_checkpoint, tmp_path):
    shipped = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoint, shipped / "default")
    (tmp_path / "runs" / "not-a-run").mkdir(parents=True)
    found = sources.find_checkpoints(shipped, tiny_checkpoint.parent, tmp_path / "runs")
    assert list(found) == ["checkpoints/default", f"{tiny_checkpoint.parent.name}/tiny"]
    assert sources.default_checkpoint(shipped / "default", found) == (shipped / "default").resolve()
    assert sources.default_checkpoint(tmp_path / "missing", found) == found["checkpoints/default"]
    assert sources.default_checkpoint(tmp_path / "missing", {}) is None


def test_the_epoch_picker_offers_the_final_weights_then_the_snapshots(tiny_checkpoint):
    choices = sources.epoch_choices(tiny_checkpoint)
    assert [value for _, value in choices] == [sources.FINAL, "1", "2"]
    assert choices[0][0] == "final (epoch 2)"
    assert [sources.parse_epoch(v) for _, v in choices] == [None, 1, 2]


def test_dataset_examples_are_labeled_test_photos_read_in_place(tiny_data):
    examples = sources.dataset_examples(tiny_data)
    assert 1 <= len(examples) <= 8
    root = (tiny_data / "oxford-iiit-pet").resolve()
    for path, caption in examples:
        assert path.is_file() and path.parent == root / "images" and caption
        assert (root / "annotations" / "trimaps" / f"{path.stem}.png").is_file()
    assert sources.dataset_examples(None) == []
    with pytest.raises(FileNotFoundError):
        sources.dataset_examples(tiny_data / "nowhere")


def test_examples_that_cannot_be_read_are_left_out(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    kept = sources.with_thumbnails(sources.bundled_examples() + [(broken, "broken")], size=64)
    assert [caption for _, caption, _ in kept] == ["chelsea cat", "coffee cup", "generated blob"]
    assert all(max(thumb.shape[:2]) <= 64 for _, _, thumb in kept)


@pytest.fixture(scope="module")
def tabs(tiny_checkpoint):
    """The three tabs built in a Blocks (the journey's what-if apart), and a key for PHOTO on the tiny
    checkpoint at epoch 1."""
    ctx = Context(ModelCache(), PhotoStore(), {"tiny": Path(tiny_checkpoint)})
    with gr.Blocks():
        ctx.analysis, ctx.point, ctx.language = gr.State(None), gr.State(None), gr.State("en")
        refreshes = {name: module.build(ctx) for name, module in
                     (("segment", segment), ("journey", journey), ("epochs", epochs))}
        refreshes["journey"], refreshes["what_if"] = refreshes["journey"]
    return ctx, refreshes, AnalysisKey(ctx.photos.put(PHOTO), str(tiny_checkpoint), 1)


def test_every_tab_returns_one_value_per_output_with_and_without_an_analysis(tabs):
    ctx, refreshes, key = tabs
    inputs = {"segment": [0.5, False], "journey": [None], "epochs": [], "what_if": list(journey.seed_settings())}
    for name, refresh in refreshes.items():
        for k in (key, None):
            assert len(drawn(refresh, k, *inputs[name])) == len(refresh.outputs), name


def test_the_segment_tab_draws_the_overlay_at_the_photos_size(tabs):
    ctx, refreshes, key = tabs
    photo, overlay, shares, expect, *maps, guess, note = drawn(refreshes["segment"], key, 0.5, False)
    for path in (photo, overlay):  # PNG files, quick to encode: lossless, at the photo's size
        with Image.open(path) as png:
            assert png.format == "PNG" and np.asarray(png).shape == PHOTO.shape
    with Image.open(photo) as png:
        assert np.array_equal(np.asarray(png), PHOTO)
    assert "70×45" in shares and len(maps) == 3
    assert "no class-token head" in note
    assert "its last epoch got" in expect and "one forward pass" in expect  # a run not evaluated with --record


def test_the_journey_tab_starts_on_the_centre_patch_and_lists_every_stage(tabs):
    ctx, refreshes, key = tabs
    grid_photo, info, summary, table, pictures, conv = drawn(refreshes["journey"], key, None)
    rows = table["value"]  # sent with the headers, which follow the language
    assert "Patch 10" in info  # nothing selected yet: the centre patch of the tiny model's 4×4 grid
    assert grid_photo.shape[0] / grid_photo.shape[1] == pytest.approx(PHOTO.shape[0] / PHOTO.shape[1], abs=0.01)
    assert len(rows) == len(ctx.analysis_for(key).trace.stages) + 1 == len(pictures)
    assert "Max |linear − conv|" in conv


def test_the_epochs_tab_shows_the_snapshots_then_the_final_weights_and_a_gif(tabs):
    ctx, refreshes, key = tabs
    explanation, strip, slider, large, metrics, gif = drawn(refreshes["epochs"], key)
    # Snapshot 2 is left out: it holds the same weights as the final ones, of epoch 2.
    assert [caption for _, caption in strip] == ["epoch 1", "final (epoch 2)"]
    assert slider["value"] == 1 and slider["maximum"] == 2  # the key asks for epoch 1
    assert slider["label"].endswith("= epochs 1, then final (epoch 2)")
    assert metrics.startswith("**Epoch 1**") and "8×8" in explanation
    assert Path(gif["value"]).suffix == ".gif" and Path(gif["value"]).is_file()
    *_, large, metrics, _ = drawn(refreshes["epochs"], AnalysisKey(key.photo_id, key.checkpoint, None))
    assert large["label"] == "Mask: final (epoch 2)" and metrics.startswith("**Final (epoch 2)**: train loss")
    assert "pixel accuracy" in metrics  # the last epoch is validated


def test_the_epochs_tab_runs_the_model_only_while_it_is_shown(tiny_checkpoint, tmp_path, monkeypatch):
    """The Epochs tab runs the model once per snapshot: after a new photo it computes only when
    it is looked at (at once while it is open, else when it is opened), and only once."""
    passes = []
    analyse = inference.analyse
    monkeypatch.setattr(inference, "analyse", lambda *args: passes.append(args) or analyse(*args))
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path / "none", runs_dir=tiny_checkpoint.parent)
    session, tabs = Session(demo), tab_bar(demo)
    strip = next(block for block in demo.blocks.values() if block.elem_id == "epochs-strip")

    def new_photo(seed: int) -> str:
        path = tmp_path / f"photo-{seed}.png"
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
        return str(path)

    upload_photo(session, new_photo(1))  # on the first tab, Segment
    assert len(passes) == 1 and not session.value(strip)  # the final weights only
    session.select_tab(tabs, "epochs")
    assert len(passes) == 2  # snapshot 1 (snapshot 2 is the final weights, already analysed)
    assert [caption for _, caption in session.value(strip)] == ["epoch 1", "final (epoch 2)"]
    session.select_tab(tabs, "segment")
    session.select_tab(tabs, "epochs")
    assert len(passes) == 2  # the same photo: nothing to compute again
    upload_photo(session, new_photo(2))  # while the Epochs tab is open it redraws at once
    assert len(passes) == 4
    session.select_tab(tabs, "attention")
    upload_photo(session, new_photo(3))
    assert len(passes) == 5


def test_reopening_a_tab_that_writes_its_own_inputs_draws_nothing_again(tiny_checkpoint, tmp_path, monkeypatch):
    """The Attention tab writes its clicked patch and layer slider when it draws; coming back to
    it for the same photo must not draw it again."""
    drawings = []
    data = attention.attention_maps_data
    monkeypatch.setattr(attention, "attention_maps_data", lambda *args: drawings.append(args) or data(*args))
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path / "none", runs_dir=tiny_checkpoint.parent)
    session, tabs = Session(demo), tab_bar(demo)
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    upload_photo(session, str(path))
    session.select_tab(tabs, "attention")
    assert len(drawings) == 1
    session.select_tab(tabs, "segment")
    session.select_tab(tabs, "attention")
    assert len(drawings) == 1


def test_a_language_switch_sends_every_text_in_one_event(tiny_checkpoint, tmp_path):
    """Labels, the status line, the tab on screen and the tour in the new language, from one event
    (each event chained after another costs the browser a round trip); the other tabs redraw when opened."""
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path / "none", runs_dir=tiny_checkpoint.parent)
    session, tabs = Session(demo), tab_bar(demo)
    path = tmp_path / "photo.png"
    Image.fromarray(PHOTO).save(path)
    upload_photo(session, str(path))
    session.select_tab(tabs, "attention")
    overlay, opacity = session.value(by_id(demo, "segment-overlay")), next(
        block for block in demo.blocks.values() if getattr(block, "label", None) == text("segment.opacity", "en"))
    session.finished.clear()
    session.set(by_id(demo, "language"), "ja")
    session.trigger(by_id(demo, "language"), "change")
    assert [block_fn.fn.__name__ for block_fn in session.finished] == ["switch_language"]  # nothing chained
    assert "モデル入力" in session.value(by_id(demo, "status"))
    assert "グリッドの" in session.value(by_id(demo, "attention-status"))  # the tab on screen, drawn in Japanese
    assert session.value(by_id(demo, "tour-progress")) == tour.progress_markdown(0, "ja")
    switch = next(fn for fn in demo.fns.values() if fn.fn is not None and fn.fn.__name__ == "switch_language")
    sent = dict(zip(map(id, switch.outputs), as_sent(switch.outputs, switch.fn(
        *[session.value(block) for block in switch.inputs]))))
    assert sent[id(opacity)]["label"] == text("segment.opacity", "ja")  # a label of a tab off screen
    assert sent[id(by_id(demo, "attention-photo"))]["label"] == text("attention.photo", "ja") \
        and sent[id(by_id(demo, "attention-photo"))]["value"] is not None  # a new label and the picture, for the same component
    assert session.value(by_id(demo, "segment-overlay")) == overlay  # off screen: drawn again when opened
    session.select_tab(tabs, "segment")
    key = session.value(next(fn for fn in demo.fns.values() if fn.api_name == "analyse").outputs[0])
    assert session.value(by_id(demo, "segment-expect")) == segment.expectation_text(key.checkpoint, "ja")


def test_controls_that_draw_the_same_output_share_one_listener_that_lands_their_last_setting(tiny_checkpoint,
                                                                                           tmp_path):
    """Two listeners fired by two controls run side by side in the queue, and the older drawing can
    land last: a knock-out switch clicked right after another was lost that way (CI). So every
    output drawn from controls' changes has one listener, which the page defers while it is busy
    and then sends with the controls as they are (always_last: "once" would drop the second change).
    Two exceptions: the language switch redraws every text and is not clicked twice a second, and a
    camera snapshot (a gr.Image) is an upload, not a setting: its chain empties the widget after it."""
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path / "none", runs_dir=tiny_checkpoint.parent)

    def by_controls(block_fn) -> bool:
        triggers = [(demo.blocks.get(target), event) for target, event in block_fn.targets]
        return block_fn.fn is not None and block_fn.fn.__name__ != "switch_language" and bool(triggers) and all(
            event in ("change", "input") and isinstance(block, gr.components.Component)
            and not isinstance(block, (gr.State, gr.Timer, gr.Image)) for block, event in triggers)

    listeners = [block_fn for block_fn in demo.fns.values() if by_controls(block_fn)]
    assert {"draw_overlay", "show_what_if", "on_control", "fill_in", "analyse"} <= {f.fn.__name__ for f in listeners}
    assert [f.fn.__name__ for f in listeners if f.trigger_mode != "always_last"] == []
    drawn_by = {}
    for block_fn in listeners:
        for output in block_fn.outputs:
            assert output._id not in drawn_by, f"{block_fn.fn.__name__} and {drawn_by[output._id]} both draw {output}"
            drawn_by[output._id] = block_fn.fn.__name__


def test_a_class_token_run_with_one_snapshot(tiny_class_checkpoint):
    ctx = Context(ModelCache(), PhotoStore(), {})
    with gr.Blocks():
        ctx.analysis, ctx.language = gr.State(None), gr.State("en")
        refresh_segment, refresh_epochs = segment.build(ctx), epochs.build(ctx)
    key = AnalysisKey(ctx.photos.put(PHOTO), str(tiny_class_checkpoint), None)
    _, strip, slider, *_ = drawn(refresh_epochs, key)
    assert len(strip) == 1 and slider == gr.update(visible=False)  # a slider needs two positions
    *_, guess, note = drawn(refresh_segment, key, 0.5, False)
    assert guess["visible"] and len(guess["value"]) == 4  # the tiny dataset has 4 breeds
    assert set(guess["value"]) == {"Tabby", "Siamese", "beagle", "pug"}
    assert abs(sum(guess["value"].values()) - 1) < 1e-5


# --- training from the page: only for the person who runs the app --------------------------------------

def handler(demo: gr.Blocks, name: str) -> Callable:
    """The function of the app's event listener whose API name is `name` (what an API call runs)."""
    return next(block_fn.fn for block_fn in demo.fns.values() if block_fn.api_name == name)


def by_id(demo: gr.Blocks, elem_id: str):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def train_app(tiny_data: Path, runs: Path, locked: bool) -> gr.Blocks:
    """The app with a stopped run 'earlier' in `runs`, which Resume could continue."""
    (runs / "earlier").mkdir(parents=True, exist_ok=True)
    (runs / "earlier" / "config.json").write_text(json.dumps({"train": {"epochs": 5}}))
    return build_app(checkpoint=runs / "none", checkpoints_dir=runs / "none", runs_dir=runs, data_root=tiny_data,
                     training_locked=locked)


def tiny_values(**changes) -> list:
    form = {**jobs.form_defaults("tiny"), **changes}
    return [form[f] for f in (*jobs.MODEL_FIELDS, *jobs.TRAIN_FIELDS)]


def test_gradio_server_variables_apply_when_no_flag_is_given(monkeypatch, capsys):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert (parse_args([]).host, parse_args([]).port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8080")
    args = parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 8080) and training_locked(args)  # the variable counts as --host
    assert (parse_args(["--host", "127.0.0.1", "--port", "9000"]).host, parse_args(["--port", "9000"]).port) == (
        "127.0.0.1", 9000)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(SystemExit):
        parse_args([])
    assert "invalid int value: 'http'" in capsys.readouterr().err


def test_training_is_locked_when_other_computers_can_reach_the_app_unless_its_operator_allows_it():
    for local in ([], ["--host", "localhost"], ["--host", "::1"], ["--host", "127.0.0.1"]):
        assert not training_locked(parse_args(local)), local
    for remote in (["--host", "0.0.0.0"], ["--host", "192.168.1.20"], ["--host", "classroom.local"], ["--share"]):
        assert training_locked(parse_args(remote)), remote
        assert not training_locked(parse_args([*remote, "--allow-remote-training"])), remote


@pytest.mark.parametrize("lang", ["en", "ja", "zh"])
def test_a_locked_train_tab_refuses_start_stop_and_resume_even_through_the_api(tiny_data, tmp_path, lang):
    runs = tmp_path / "runs"
    demo = train_app(tiny_data, runs, locked=True)
    assert not by_id(demo, "train-start").interactive and by_id(demo, "train-locked").visible
    refused = text("train.refused", lang, reason=text("train.remote_off", lang))
    assert "--allow-remote-training" in refused and "\n" not in refused
    message, run = handler(demo, "start")("tiny", "run", str(tiny_data), lang, *tiny_values())
    assert message == refused and run == gr.skip()
    assert handler(demo, "stop")("earlier", lang) == refused
    assert handler(demo, "resume")("earlier", lang) == refused
    assert [p.name for p in runs.iterdir()] == ["earlier"] and not (runs / "earlier" / "job.json").exists()
    *_, shown = handler(demo, "poll")("earlier", {}, lang)
    assert shown["resume"] is False and shown["stop"] is False  # the buttons stay off for a resumable run


def test_an_unlocked_train_tab_starts_stops_and_resumes_its_own_jobs(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    demo = train_app(tiny_data, runs, locked=False)
    assert by_id(demo, "train-start").interactive and not by_id(demo, "train-locked").visible
    *_, shown = handler(demo, "poll")("earlier", {}, "en")
    assert shown["resume"] is True
    folder = runs / "run"
    try:
        message, _ = handler(demo, "start")("tiny", "run", str(tiny_data), "en", *tiny_values(epochs=10_000))
        assert message == "Started **run**."
        wait_until(lambda: (folder / "config.json").is_file(), "the job to get past its start")
        other = train_app(tiny_data, runs, locked=False)  # a second app on the same runs folder watches it only
        line, *_, shown = handler(other, "poll")("run", {}, "en")[1:]
        assert f"started by another vitviz app (pid {os.getpid()})" in line and shown["stop"] is False
        assert "was started by another vitviz app" in handler(other, "stop")("run", "en")
        assert handler(demo, "stop")("run", "en").startswith("Asked **run** to stop")
        poll = handler(demo, "poll")  # what the page shows: the app's own view of its job
        wait_until(lambda: "is **stopped**" in poll("run", {}, "en")[1], "the job to stop")
        assert handler(demo, "resume")("run", "en") == "Resuming **run** from its last finished epoch."
    finally:
        if (folder / "job.json").is_file():
            os.kill(json.loads((folder / "job.json").read_text())["pid"], signal.SIGKILL)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def test_a_webcam_snapshot_or_a_pasted_picture_is_read_like_an_upload(tiny_checkpoint, tmp_path):
    """The camera box hands over the file as it came (type "filepath", no image_mode: Gradio reads
    only its header), and the same bounded decoding as an upload reads it."""
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path / "none", runs_dir=tiny_checkpoint.parent)
    camera = by_id(demo, "camera")
    assert camera.sources == ["webcam", "clipboard"] and camera.type == "filepath" and camera.image_mode is None
    listener = next(fn for fn in demo.fns.values() if fn.targets and fn.targets[0] == (camera._id, "input"))
    assert listener.fn.__name__ == "use_upload"
    path = tmp_path / "snapshot.png"
    Image.fromarray(PHOTO).save(path)
    assert isinstance(listener.fn(str(path)), str)  # a photo id
