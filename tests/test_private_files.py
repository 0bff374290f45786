"""Files drawn from users' photos (PNG downloads, the Epochs GIF): readable by the server's user only,
in a folder of this server start, written whole or not at all, and pruned by age and total size."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from session import drawn
from vitviz.app import downloads
from vitviz.app.inference import ModelCache
from vitviz.app.serve import running_app
from vitviz.ui import epochs
from vitviz.ui.context import AnalysisKey, Context, PhotoStore
from vitviz.views.epochs import export_gif

ROOT = Path(__file__).resolve().parents[1]
PICTURE = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)


def private(path: Path) -> bool:
    """Neither the group nor other users may read, write or enter `path`."""
    return path.stat().st_mode & 0o077 == 0


def test_pngs_of_a_users_photo_are_readable_by_the_servers_user_only():
    saved = downloads.save_pngs({"segment-photo": PICTURE})[0]
    shared = downloads.shared_png("positions-map", PICTURE)
    root = saved.parent.parent
    assert root.parent == Path(tempfile.gettempdir()) and shared.parent.parent == root  # Gradio serves from there
    for path in (root, saved.parent, saved, shared.parent, shared):
        assert private(path), f"{path} is {oct(path.stat().st_mode)}"


def test_each_server_start_writes_into_a_folder_of_its_own_removed_when_it_exits():
    script = "import numpy as np; from vitviz.app import downloads; print(downloads.save_pngs({'x': np.zeros((4, 4, 3), np.uint8)})[0])"
    first, second = (Path(subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                                         check=True).stdout.strip()) for _ in range(2))
    assert first.parent.parent != second.parent.parent
    assert not first.parent.parent.exists() and not second.parent.parent.exists()


def test_the_epochs_gif_is_written_with_the_other_private_files(tiny_checkpoint):
    ctx = Context(ModelCache(), PhotoStore(), {"tiny": Path(tiny_checkpoint)})
    with gr.Blocks():
        ctx.analysis, ctx.language = gr.State(None), gr.State("en")
        refresh = epochs.build(ctx)
    *_, gif = drawn(refresh, AnalysisKey(ctx.photos.put(PICTURE), str(tiny_checkpoint), None))
    path = Path(gif["value"])
    assert path.suffix == ".gif" and path.is_relative_to(downloads.save_pngs({"x": PICTURE})[0].parent.parent)
    assert private(path) and private(path.parent)


def test_a_gif_that_fails_halfway_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    frames, labels = [PICTURE, PICTURE[::-1].copy()], ["epoch 1", "final"]
    path = export_gif(frames, labels, tmp_path / "epochs.gif")
    whole = path.read_bytes()

    def disk_full(image, file, filename):
        file.write(whole[:100])
        raise OSError("No space left on device")

    monkeypatch.setitem(Image.SAVE_ALL, "GIF", disk_full)
    with pytest.raises(OSError, match="No space"):
        export_gif(frames, labels, path)
    assert path.read_bytes() == whole and list(tmp_path.iterdir()) == [path]  # and nothing left behind


def test_the_oldest_folders_go_when_the_total_is_above_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "PRUNE_EVERY_S", 0)  # look over the folder at every save
    older = [downloads.save_pngs({"x": PICTURE}, tmp_path)[0] for _ in range(5)]
    for minutes_ago, path in zip(range(50, 0, -10), older):  # all younger than MAX_AGE_S, the first oldest
        os.utime(path.parent, (time.time() - 60 * minutes_ago,) * 2)
    size = older[0].stat().st_size
    monkeypatch.setattr(downloads, "MAX_TOTAL_BYTES", int(2.5 * size), raising=False)
    newest = downloads.save_pngs({"x": PICTURE}, tmp_path)[0]
    assert [path.exists() for path in older] == [False, False, False, True, True] and newest.exists()


def test_folders_left_by_servers_stopped_by_a_signal_go_at_the_next_start(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the system's temp folder, for this test
    monkeypatch.setattr(downloads, "_private", None)  # as a server starting
    stale, running = (Path(tempfile.mkdtemp(prefix=downloads.PREFIX)) for _ in range(2))
    (stale / "batch").mkdir()
    os.utime(stale, (time.time() - downloads.MAX_AGE_S - 60,) * 2)
    other, elsewhere = tmp_path / "vitviz-app-1.log", tmp_path / "elsewhere"  # left alone: not such a folder,
    other.touch()
    elsewhere.mkdir()
    link = tmp_path / f"{downloads.PREFIX}link"  # and a link another user may have put there
    link.symlink_to(elsewhere)
    for path in (other, elsewhere):
        os.utime(path, (0, 0))
    mine = downloads.private_folder()
    assert sorted(tmp_path.iterdir()) == sorted([mine, running, other, elsewhere, link]) and private(mine)


def test_the_private_gradio_folder_is_removed_when_the_server_is_stopped(tiny_checkpoint, tmp_path, monkeypatch):
    """`running_app` stops the app with SIGTERM, as a service manager or `kill` does: the server's
    private folder for Gradio's copies of uploads and pictures must not stay behind."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # where the app makes its private folder
    with running_app("--checkpoint", str(tiny_checkpoint), "--checkpoints-dir", str(tmp_path),
                     "--runs-dir", str(tiny_checkpoint.parent)) as app:
        assert [p.name[:14] for p in temp.iterdir() if p.name.startswith("vitviz-gradio-")] == ["vitviz-gradio-"]
        assert app.process.poll() is None
    assert app.process.returncode is not None
    assert not [p for p in temp.iterdir() if p.name.startswith("vitviz-gradio-")]


def test_kept_pngs_are_drawn_once_per_key_and_again_when_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "private_folder", lambda: tmp_path)
    kept, drawings = downloads.KeptPngs(capacity=2), []

    def draw(tag: str):
        drawings.append(tag)
        return {"x": PICTURE}, tag

    first, rest = kept.files("a", lambda: draw("a"))
    assert rest == "a" and private(first[0]) and np.array_equal(np.asarray(Image.open(first[0])), PICTURE)
    os.utime(first[0].parent, (0, 0))  # as if drawn long ago
    assert kept.files("a", lambda: draw("again")) == (first, "a") and drawings == ["a"]
    assert first[0].parent.stat().st_mtime > 1  # touched: pruning by age leaves it be
    kept.files("b", lambda: draw("b"))
    kept.files("c", lambda: draw("c"))  # over capacity: "a", the least recently used, is forgotten
    kept.files("a", lambda: draw("a"))
    assert drawings == ["a", "b", "c", "a"]
    removed = kept.files("a", lambda: draw("never"))[0][0]
    removed.unlink()  # a temp-folder cleaner
    assert kept.files("a", lambda: draw("a, drawn again"))[1] == "a, drawn again"

    def fails():
        raise OSError("disk full")
    with pytest.raises(OSError):
        kept.files("d", fails)
    assert not kept._drawing  # no lock left behind for a drawing that failed
    assert kept.files("d", lambda: draw("d"))[1] == "d"


def test_the_segment_tab_draws_a_photo_once_for_every_session(tiny_checkpoint, monkeypatch):
    """Every page opens on the same example: its Segment pictures are drawn once, not once a page."""
    from vitviz.ui import segment

    calls = []
    maps = segment.probability_maps
    monkeypatch.setattr(segment, "probability_maps", lambda *args: calls.append(1) or maps(*args))
    monkeypatch.setattr(segment, "DRAWN", downloads.KeptPngs())
    ctx = Context(ModelCache(), PhotoStore(), {})
    with gr.Blocks():
        ctx.analysis, ctx.language = gr.State(None), gr.State("en")
        refresh = segment.build(ctx)
    key = AnalysisKey(ctx.photos.put(PICTURE), str(tiny_checkpoint), None)
    english, japanese = drawn(refresh, key, 0.5, False, "en"), drawn(refresh, key, 0.5, False, "ja")
    assert len(calls) == 1 and english[:2] == japanese[:2]  # the same files, drawn once
    assert english[2] != japanese[2]  # the texts in each page's language
    drawn(refresh, key, 0.7, False, "en")
    assert len(calls) == 2  # another opacity is another picture
