"""PNG files of pictures the app shows, written only when someone asks to download them.

The click-driven views send their pictures to the browser as JPEG: encoding a photo-sized PNG
costs several times more than drawing it, and a click must answer in tens of milliseconds. The
PNG is made on demand instead, from the same arrays, by `save_pngs`.
"""

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DOWNLOADS = Path(tempfile.gettempdir()) / "vitviz-downloads"
MAX_AGE_S = 3600  # older files were handed to the browser long ago (Gradio serves its own copy)


def safe_name(text: str) -> str:
    """A file-name fragment: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "picture"


def save_pngs(pictures: dict[str, np.ndarray], folder: str | os.PathLike = DOWNLOADS) -> list[Path]:
    """Write each (H, W, 3) uint8 picture as `<name>.png` in a new subfolder of `folder` and
    return the paths.

    A subfolder per call keeps the names readable and two sessions from overwriting each other's
    files. Subfolders older than `MAX_AGE_S` are removed on the way, so the folder does not grow
    while the app runs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prune(folder, MAX_AGE_S)
    batch = Path(tempfile.mkdtemp(dir=folder))
    paths = []
    for name, picture in pictures.items():
        path = batch / f"{safe_name(name)}.png"
        Image.fromarray(picture).save(path, format="PNG")
        paths.append(path)
    return paths


def prune(folder: Path, max_age_s: float) -> None:
    """Remove the subfolders of `folder` not modified for `max_age_s` seconds."""
    cutoff = time.time() - max_age_s
    for batch in folder.iterdir():
        try:
            if batch.is_dir() and batch.stat().st_mtime < cutoff:
                shutil.rmtree(batch, ignore_errors=True)
        except FileNotFoundError:  # another session pruned it first
            pass
