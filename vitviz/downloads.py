"""PNG files of pictures the app shows.

The click-driven views send their pictures to the browser as JPEG: encoding a photo-sized PNG
costs several times more than drawing it, and a click must answer in tens of milliseconds. The
PNG is made on demand instead, from the same arrays, by `save_pngs`.

Views redrawn once per photo (the Segment tab) are sent as PNG files written here with zlib level 1
(`FAST`): for a 600×400 photo 17 ms instead of 60–77 ms at Gradio's level 6, for files about 5%
larger. A handler returns their paths; Gradio serves copies from its own cache.

Pictures that many sessions show alike (the position-embedding maps) go through `shared_png`: one
file per content, encoded once. An array sent to Gradio is written to its cache in place, so two
sessions sending the same picture at once could hand a browser a half-rewritten file; a file path
is copied under a temporary name and renamed.
"""

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

DOWNLOADS = Path(tempfile.gettempdir()) / "vitviz-downloads"
MAX_AGE_S = 3600  # older files were handed to the browser long ago (Gradio serves its own copy)
FAST, SMALL = 1, 6  # zlib compression levels: quick to encode, or Pillow's default
PRUNE_EVERY_S = 60  # a folder per save adds up: looked over at most this often
_last_prune: dict[Path, float] = {}


def safe_name(text: str) -> str:
    """A file-name fragment: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "picture"


def save_pngs(pictures: dict[str, np.ndarray], folder: str | os.PathLike = DOWNLOADS,
              compress_level: int = SMALL) -> list[Path]:
    """Write each (H, W, 3) uint8 picture as `<name>.png` in a new subfolder of `folder` and
    return the paths.

    A subfolder per call keeps the names readable and two sessions from overwriting each other's
    files. Subfolders older than `MAX_AGE_S` are removed on the way, so the folder does not grow
    while the app runs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prune_now_and_then(folder)
    batch = Path(tempfile.mkdtemp(dir=folder))
    paths = []
    for name, picture in pictures.items():
        path = batch / f"{safe_name(name)}.png"
        Image.fromarray(picture).save(path, format="PNG", compress_level=compress_level)
        paths.append(path)
    return paths


def shared_png(name: str, picture: np.ndarray, folder: str | os.PathLike = DOWNLOADS) -> Path:
    """`picture` as `<name>.png` in a subfolder named by its content, written (`FAST`) only if it
    is not there yet, and atomically; touched when used again, so that it is not pruned."""
    digest = hashlib.sha1(str(picture.shape).encode() + np.ascontiguousarray(picture).tobytes()).hexdigest()[:20]
    path = Path(folder) / f"shared-{digest}" / f"{safe_name(name)}.png"
    if path.is_file():
        os.utime(path.parent)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    prune_now_and_then(Path(folder))
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}")
    Image.fromarray(picture).save(partial, format="PNG", compress_level=FAST)
    os.replace(partial, path)
    return path


def prune_now_and_then(folder: Path) -> None:
    """`prune(folder, MAX_AGE_S)`, unless it ran less than `PRUNE_EVERY_S` ago."""
    if time.monotonic() - _last_prune.get(folder, -PRUNE_EVERY_S) >= PRUNE_EVERY_S:
        _last_prune[folder] = time.monotonic()
        prune(folder, MAX_AGE_S)


def prune(folder: Path, max_age_s: float) -> None:
    """Remove the subfolders of `folder` not modified for `max_age_s` seconds."""
    cutoff = time.time() - max_age_s
    for batch in folder.iterdir():
        try:
            if batch.is_dir() and batch.stat().st_mtime < cutoff:
                shutil.rmtree(batch, ignore_errors=True)
        except FileNotFoundError:  # another session pruned it first
            pass
