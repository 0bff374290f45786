"""Where the app finds its checkpoints, their epochs, and its example photos."""

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vitviz.app.i18n import DEFAULT, text
from vitviz.app.photos import PhotoError, load_photo_rgb
from vitviz.training.checkpoint import confine, list_snapshots
from vitviz.training.data import labeled, read_split, read_trimap, resolve_root, trimap_path
from vitviz.views.epochs import final_label

EXAMPLES_DIR = Path(__file__).parent / "examples"
BUNDLED_EXAMPLES = ("chelsea-cat.png", "coffee-cup.jpg", "generated-blob.png")
FINAL = "final"  # the epoch choice meaning "the folder's last weights", not a snapshot


def checkpoint_folder(name: str | None, found: dict[str, Path], allowed: Iterable[str | os.PathLike]) -> Path | None:
    """The folder of the checkpoint picked by display `name` (None when there is no such name),
    confined to the `allowed` folders."""
    folder = found.get(name) if name else None
    return None if folder is None else confine(folder, allowed)


def find_checkpoints(*dirs: str | os.PathLike) -> dict[str, Path]:
    """Display name ("checkpoints/default", "runs/seed-small") → folder, for every direct
    subfolder of `dirs` that holds a config.json, in the order of `dirs`, then by name."""
    found: dict[str, Path] = {}
    for d in map(Path, dirs):
        if d.is_dir():
            for folder in sorted(p for p in d.iterdir() if (p / "config.json").is_file()):
                found[f"{d.name}/{folder.name}"] = folder.resolve()
    return found


def has_weights(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() or (folder / "train_state.safetensors").is_file()


def default_checkpoint(requested: str | os.PathLike, found: dict[str, Path]) -> Path | None:
    """`requested` when it is a checkpoint folder; otherwise the first found folder that has
    weights (a run that has not finished its first epoch has none yet), else the first found."""
    requested = Path(requested)
    if (requested / "config.json").is_file():
        return requested.resolve()
    with_weights = [f for f in found.values() if has_weights(f)]
    return (with_weights or list(found.values()) or [None])[0]


def epoch_choices(folder: Path | None, lang: str = DEFAULT) -> list[tuple[str, str]]:
    """(label in `lang`, value) pairs for the epoch picker: the final weights, then every snapshot."""
    if folder is None:
        return [(text("epochs.final", lang), FINAL)]
    return [(final_label(folder, lang=lang), FINAL)] + [(text("epochs.snapshot", lang, epoch=e), str(e))
                                                        for e in list_snapshots(folder)]


def parse_epoch(choice: str | None) -> int | None:
    """The epoch picker's value → a snapshot epoch, or None for the final weights."""
    return None if choice in (None, "", FINAL) else int(choice)


def bundled_examples() -> list[tuple[Path, str]]:
    return [(EXAMPLES_DIR / name, name.rsplit(".", 1)[0].replace("-", " ")) for name in BUNDLED_EXAMPLES]


def dataset_examples(data_root: str | os.PathLike | None, count: int = 8) -> list[tuple[Path, str]]:
    """Up to `count` labeled test photos of the dataset at `data_root`, spread over the split
    (so several breeds show up); read where they lie, never copied."""
    if not data_root:
        return []
    root = resolve_root(data_root)
    entries = labeled(root, read_split(root, "test"))
    step = max(1, len(entries) // count)
    return [(root / "images" / f"{e.name}.jpg", e.breed_name) for e in entries[::step][:count]]


def example_truth(path: str | os.PathLike) -> np.ndarray | None:
    """The trimap of a photo read from a data set's `images/` folder, as (H, W) class indices
    (IGNORE where unknown); None for any other photo or one without a trimap."""
    path = Path(path)
    if path.parent.name != "images":
        return None
    trimap = trimap_path(path.parent.parent, path.stem)
    return read_trimap(trimap).numpy() if trimap.is_file() else None


def with_thumbnails(examples: list[tuple[Path, str]], size: int = 160) -> list[tuple[Path, str, np.ndarray]]:
    """(path, caption, copy decoded at most `size` large) for the example gallery; unreadable files
    are left out."""
    kept = []
    for path, caption in examples:
        try:
            kept.append((path, caption, load_photo_rgb(path, max_side=size)))
        except (PhotoError, OSError):
            continue
    return kept
