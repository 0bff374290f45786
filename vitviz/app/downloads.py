"""Files of pictures the app shows: PNG downloads and the Epochs tab's GIF.

The click-driven views send their pictures to the browser as JPEG: encoding a photo-sized PNG
costs several times more than drawing it, and a click must answer in tens of milliseconds. The
PNG is made on demand instead, from the same arrays, by `save_pngs`.

Views redrawn once per photo (the Segment tab) are sent as PNG files written here with zlib level 1
(`FAST`): for a 600×400 photo 17 ms instead of 60–77 ms at Gradio's level 6, for files about 5%
larger. A handler returns their paths; Gradio serves copies from its own cache.

Pictures that many sessions show alike (the position-embedding maps) go through `shared_png`: one
file per content, encoded once. Pictures drawn again for the same inputs (the Segment tab's, for
the example every page opens on) are kept by `KeptPngs`: drawn and encoded once per key.

Every picture is drawn from a user's photo, so no other local user may read it: the files live in
`private_folder()`, made once per server start by `tempfile.mkdtemp` (mode 0700) in the system's
temp folder (`$TMPDIR`, where Gradio takes files from without `allowed_paths`) and removed at exit;
what a server stopped by a signal left there is removed by the next start, after `MAX_AGE_S`.
Each file is written under a temporary name (`mkstemp`: mode 0600, which Gradio's cached copy
keeps) and renamed, so that no reader, another session or Gradio, sees a half-written file. A
subfolder not used for `MAX_AGE_S` (an hour) is removed, and then the oldest ones until the rest
hold at most `MAX_TOTAL_BYTES` (256 MB), looked over at most every `PRUNE_EVERY_S` (a minute).
"""

import atexit
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

MAX_AGE_S = 3600  # older files were handed to the browser long ago (Gradio serves its own copy)
MAX_TOTAL_BYTES = 256 * 2**20  # beyond this the oldest subfolders go, even if younger than MAX_AGE_S
FAST, SMALL = 1, 6  # zlib compression levels: quick to encode, or Pillow's default
PRUNE_EVERY_S = 60  # a folder per save adds up: looked over at most this often
PREFIX = "vitviz-pictures-"  # of the private folders in the system's temp folder
_last_prune: dict[Path, float] = {}
_private: Path | None = None
_private_lock = threading.Lock()


def private_folder() -> Path:
    """This server's folder for pictures drawn from users' photos, readable by this user only:
    made at first use, and again if something (a temp-folder cleaner) removed it since."""
    global _private
    with _private_lock:
        if _private is None or not _private.is_dir():
            remove_stale_folders(Path(tempfile.gettempdir()))
            _private = Path(tempfile.mkdtemp(prefix=PREFIX))
            atexit.register(shutil.rmtree, _private, ignore_errors=True)
        return _private


def remove_stale_folders(temp: Path) -> None:
    """Remove this user's private folders in `temp` not changed for `MAX_AGE_S`: left by servers
    stopped by a signal, which runs no exit handler. A server still running makes a new one."""
    cutoff = time.time() - MAX_AGE_S
    for folder in temp.glob(f"{PREFIX}*"):
        try:
            info = folder.lstat()  # a link planted there by another user is not followed
        except FileNotFoundError:  # another server removed it first
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def safe_name(text: str) -> str:
    """A file-name fragment: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "picture"


def write_privately(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """`path`, written by `write(file)` into a new file of mode 0600 next to it and renamed when
    complete: a reader sees the whole file or none."""
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def png(picture: np.ndarray, compress_level: int) -> Callable[[BinaryIO], None]:
    """What writes `picture` as a PNG file, for `write_privately`."""
    return lambda file: Image.fromarray(picture).save(file, format="PNG", compress_level=compress_level)


def new_folder(folder: str | os.PathLike | None = None) -> Path:
    """A new subfolder (mode 0700) of `folder`, by default `private_folder()`, for one call's
    files: readable names that no other session overwrites. `folder` is pruned on the way."""
    folder = private_folder() if folder is None else Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    prune_now_and_then(folder)
    return Path(tempfile.mkdtemp(dir=folder))


def save_pngs(pictures: dict[str, np.ndarray], folder: str | os.PathLike | None = None,
              compress_level: int = SMALL) -> list[Path]:
    """Write each (H, W, 3) uint8 picture as `<name>.png` in a `new_folder(folder)` and return the
    paths."""
    batch = new_folder(folder)
    return [write_privately(batch / f"{safe_name(name)}.png", png(picture, compress_level))
            for name, picture in pictures.items()]


class KeptPngs:
    """PNG files drawn once per key and handed out again while they exist.

    `files(key, draw)` calls `draw()` → (pictures by name, anything else drawn with them) the first
    time, writes the pictures with `save_pngs` and keeps their paths and the rest; later calls with
    the same key return them, touching their folder so that pruning (oldest first) leaves it be.
    Files removed meanwhile (a temp-folder cleaner) are drawn again. The `capacity` most recently
    used keys are kept, and each call for a key waits for the drawing already under way for it, so a
    classroom opening the app at once draws the first example's pictures once."""

    def __init__(self, capacity: int = 64, compress_level: int = FAST):
        self._kept: OrderedDict[Hashable, tuple[list[Path], Any]] = OrderedDict()
        self._capacity, self._compress_level = capacity, compress_level
        self._lock = threading.Lock()
        self._drawing: dict[Hashable, threading.Lock] = {}

    def files(self, key: Hashable, draw: Callable[[], tuple[dict[str, np.ndarray], Any]]) -> tuple[list[Path], Any]:
        with self._lock:
            drawing = self._drawing.setdefault(key, threading.Lock())
        with drawing:
            try:
                with self._lock:
                    kept = self._kept.get(key)
                if kept is not None and all(path.is_file() for path in kept[0]):
                    os.utime(kept[0][0].parent)
                else:
                    pictures, rest = draw()
                    kept = save_pngs(pictures, compress_level=self._compress_level), rest
                with self._lock:
                    self._kept[key] = kept
                    self._kept.move_to_end(key)
                    while len(self._kept) > self._capacity:
                        self._kept.popitem(last=False)
            finally:  # a drawing that failed leaves no lock behind for its key
                with self._lock:
                    self._drawing.pop(key, None)
        return kept


def shared_png(name: str, picture: np.ndarray, folder: str | os.PathLike | None = None) -> Path:
    """`picture` as `<name>.png` in a subfolder of `folder` (by default `private_folder()`) named
    by its content, written (`FAST`) only if it is not there yet; touched when used again, so that
    it is not pruned."""
    folder = private_folder() if folder is None else Path(folder)
    digest = hashlib.sha1(str(picture.shape).encode() + np.ascontiguousarray(picture).tobytes()).hexdigest()[:20]
    path = folder / f"shared-{digest}" / f"{safe_name(name)}.png"
    if path.is_file():
        os.utime(path.parent)
        return path
    prune_now_and_then(folder)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return write_privately(path, png(picture, FAST))


def prune_now_and_then(folder: Path) -> None:
    """`prune(folder, MAX_AGE_S, MAX_TOTAL_BYTES)`, unless it ran less than `PRUNE_EVERY_S` ago."""
    if time.monotonic() - _last_prune.get(folder, -PRUNE_EVERY_S) >= PRUNE_EVERY_S:
        _last_prune[folder] = time.monotonic()
        prune(folder, MAX_AGE_S, MAX_TOTAL_BYTES)


def prune(folder: Path, max_age_s: float, max_bytes: int) -> None:
    """Remove the subfolders of `folder` not modified for `max_age_s` seconds, then the oldest
    others until the rest hold at most `max_bytes`."""
    cutoff = time.time() - max_age_s
    batches = sorted(subfolders(folder))
    total = sum(size for _, size, _ in batches)
    for modified, size, batch in batches:
        if modified >= cutoff and total <= max_bytes:
            break
        shutil.rmtree(batch, ignore_errors=True)
        total -= size


def subfolders(folder: Path) -> list[tuple[float, int, Path]]:
    """(modification time, bytes of its files, path) of every subfolder of `folder`."""
    found = []
    for batch in folder.iterdir():
        try:
            if batch.is_dir():
                found.append((batch.stat().st_mtime, sum(file.stat().st_size for file in batch.iterdir()), batch))
        except FileNotFoundError:  # another session pruned it, or a file was renamed, meanwhile
            pass
    return found
