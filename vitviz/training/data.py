"""Oxford-IIIT Pet in torchvision's folder layout, for segmentation and classification.

    <root>/oxford-iiit-pet/images/<name>.jpg
    <root>/oxford-iiit-pet/annotations/trimaps/<name>.png    1 pet, 2 background, 3 border
    <root>/oxford-iiit-pet/annotations/{trainval,test,list}.txt

A segmentation sample is a split entry whose trimap exists (a partial copy may hold trimaps for a
few breeds only); a classification sample is any split entry. Photos and masks are transformed
together: bilinear resize for the photo, nearest for the mask, flips and colour only in training.
"""

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

CLASS_NAMES = ("pet", "background", "border")  # trimap values 1, 2, 3 → class 0, 1, 2
SPECIES = ("cat", "dog")
IGNORE = -1  # mask value the loss and the metrics skip (no trimap, or padding from a rotation)
ENV_VAR = "VITVIZ_DATA"
TRAINING_SPLIT = "trainval"  # the only split any training stage may read: test photos are for evaluation


@dataclass(frozen=True)
class PetEntry:
    name: str  # e.g. "Abyssinian_100"
    breed: int  # 0 … 36
    species: int  # 0 cat, 1 dog

    @property
    def breed_name(self) -> str:
        return self.name.rsplit("_", 1)[0].replace("_", " ")


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The `oxford-iiit-pet` folder, from a path to it or to its parent, or from $VITVIZ_DATA."""
    if root is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise ValueError(f"no dataset root: pass --data-root or set {ENV_VAR}")
    path = Path(root).expanduser().resolve()
    for candidate in (path / "oxford-iiit-pet", path):
        if (candidate / "annotations").is_dir() and (candidate / "images").is_dir():
            return candidate
    raise FileNotFoundError(f"no Oxford-IIIT Pet dataset (images/ and annotations/) under {path}")


def download(root: str | os.PathLike) -> Path:
    """Fetch the full official dataset with torchvision (needs internet; never used by tests)."""
    from torchvision.datasets import OxfordIIITPet

    OxfordIIITPet(str(root), split="trainval", target_types="segmentation", download=True)
    return resolve_root(root)


def read_split(root: Path, split: str) -> list[PetEntry]:
    """Entries of `trainval` or `test`: '<name> <class 1..37> <species 1..2> <breed id>'."""
    if split not in ("trainval", "test"):
        raise ValueError(f"split must be 'trainval' or 'test', got {split!r}")
    entries = []
    for line in (root / "annotations" / f"{split}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, class_id, species, _ = line.split()
            entries.append(PetEntry(name, int(class_id) - 1, int(species) - 1))
    return entries


def breed_names(root: Path) -> list[str]:
    """The 37 breed names in class-id order, from whichever split files name them."""
    names: dict[int, str] = {}
    for split in ("trainval", "test"):
        for e in read_split(root, split):
            names.setdefault(e.breed, e.breed_name)
    return [names.get(i, f"breed {i + 1}") for i in range(max(names) + 1)]


def trimap_path(root: Path, name: str) -> Path:
    return root / "annotations" / "trimaps" / f"{name}.png"


def labeled(root: Path, entries: list[PetEntry]) -> list[PetEntry]:
    return [e for e in entries if trimap_path(root, e.name).is_file()]


def load_photo(path: str | os.PathLike) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def build_transform(image_size: int, augment: str) -> v2.Transform:
    """'none' for evaluation; 'flip_jitter' is the reference recipe; 'strong' adds random
    resized crops and a little rotation for small-data training."""
    resize = v2.Resize((image_size, image_size), antialias=True)  # masks get nearest automatically
    steps: list[v2.Transform] = [v2.ToImage()]
    if augment == "strong":
        steps.append(v2.RandomResizedCrop((image_size, image_size), scale=(0.35, 1.0), ratio=(0.75, 1.33), antialias=True))
        steps.append(v2.RandomRotation(10, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}))
    else:
        steps.append(resize)
    if augment in ("flip_jitter", "strong"):
        steps += [v2.RandomHorizontalFlip(), v2.ColorJitter(0.3, 0.3, 0.3, 0.05)]
    elif augment != "none":
        raise ValueError(f"augment must be 'none', 'flip_jitter' or 'strong', got {augment!r}")
    steps.append(v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True))
    return v2.Compose(steps)


class PetDataset(Dataset):
    """Items are (image (3, S, S) in [0, 1], mask (S, S) long, breed, species).

    With `segmentation=True` only entries with a trimap are used; otherwise every entry is,
    and the mask is all IGNORE where no trimap exists. `training=True` (every training stage passes
    it) refuses any split but trainval, so no test photo can reach a training loss."""

    def __init__(self, root: str | os.PathLike | None, split: str, image_size: int, augment: str = "none",
                 segmentation: bool = True, fraction: float = 1.0, training: bool = False):
        if training and split != TRAINING_SPLIT:
            raise ValueError(f"training uses the {TRAINING_SPLIT!r} split only, never {split!r} (not even unlabeled)")
        self.root = resolve_root(root)
        entries = read_split(self.root, split)
        if segmentation:
            entries = labeled(self.root, entries)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        # A fixed, evenly spread subset, so 25% / 50% runs see the same breeds in proportion.
        self.entries = entries[:: max(1, round(1 / fraction))] if fraction < 1 else entries
        if not self.entries:
            raise ValueError(f"no {'labeled ' if segmentation else ''}{split} entries under {self.root}")
        self.image_size = image_size
        self.transform = build_transform(image_size, augment)

    def without_augmentation(self) -> "PetDataset":
        """The same photos with the evaluation transform (resize only)."""
        plain = copy.copy(self)
        plain.transform = build_transform(self.image_size, "none")
        return plain

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        e = self.entries[i]
        image = tv_tensors.Image(v2.functional.pil_to_tensor(load_photo(self.root / "images" / f"{e.name}.jpg")))
        tri = trimap_path(self.root, e.name)
        if tri.is_file():
            mask = read_trimap(tri)
        else:
            mask = torch.full(image.shape[-2:], IGNORE, dtype=torch.long)
        image, mask = self.transform(image, tv_tensors.Mask(mask))
        return image, mask.as_subclass(torch.Tensor), e.breed, e.species


def read_trimap(path: Path) -> torch.Tensor:
    """Trimap PNG (1 pet, 2 background, 3 border) → class indices 0, 1, 2; anything else → −1."""
    with Image.open(path) as im:
        values = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.int64).copy())
    mask = values - 1
    mask[(mask < 0) | (mask > 2)] = IGNORE
    return mask
