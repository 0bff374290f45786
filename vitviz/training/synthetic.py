"""A tiny generated dataset in the Oxford-IIIT Pet folder layout, for tests and demos.

Each photo is a noisy background with one or two blobby 'pets' (ellipses, cats lighter, dogs
darker); its trimap marks pet, background and a thin border around each pet, as the real ones do.
Nothing here comes from the real dataset.
"""

from pathlib import Path

import numpy as np
from PIL import Image

BREEDS = (("Tabby", 1), ("Siamese", 1), ("beagle", 2), ("pug", 2))  # (name, species 1 cat / 2 dog)


def make_photo(rng: np.random.Generator, size: int, species: int) -> tuple[np.ndarray, np.ndarray]:
    """One (size, size, 3) uint8 photo and its (size, size) trimap with values 1, 2, 3."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = rng.uniform(40, 200, 3)
    photo = background + rng.normal(0, 18, (size, size, 3))
    trimap = np.full((size, size), 2, np.uint8)
    colour = rng.uniform(170, 250, 3) if species == 1 else rng.uniform(20, 110, 3)
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    ry, rx = rng.uniform(0.15, 0.3, 2) * size
    r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    photo[r <= 1] = colour + rng.normal(0, 10, ((r <= 1).sum(), 3))
    trimap[(r > 0.8) & (r < 1.25)] = 3
    trimap[r <= 0.8] = 1
    return np.clip(photo, 0, 255).astype(np.uint8), trimap


def make_tiny_pet_dataset(root: str | Path, per_breed: int = 4, size: int = 64, seed: int = 0,
                          unlabeled_per_breed: int = 1) -> Path:
    """Write `<root>/oxford-iiit-pet` with `per_breed` labeled photos per breed in each split
    (plus `unlabeled_per_breed` without trimaps) and return that folder."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    for class_id, (breed, species) in enumerate(BREEDS, start=1):
        n = 2 * (per_breed + unlabeled_per_breed)
        for i in range(1, n + 1):
            name = f"{breed}_{i}"
            photo, trimap = make_photo(rng, size, species)
            Image.fromarray(photo).save(base / "images" / f"{name}.jpg", quality=92)
            if (i - 1) % (per_breed + unlabeled_per_breed) < per_breed:
                Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{name}.png")
            split = "trainval" if i <= n // 2 else "test"
            lines[split].append(f"{name} {class_id} {species} {class_id}")
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    header = "#Image CLASS-ID SPECIES BREED ID\n"
    (base / "annotations" / "list.txt").write_text(header + "\n".join(lines["trainval"] + lines["test"]) + "\n")
    return base
