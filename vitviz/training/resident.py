"""The training set decoded once into tensors on the training device, and augmented there.

A per-sample DataLoader decodes every JPEG and runs the augmentation in Python for every photo of
every epoch. At 128 px the whole labeled set is small (400 photos: 20 MB as uint8; the full
7,390: 360 MB), so it can live on the GPU: each epoch is then a shuffled index, and each batch is
augmented in a handful of batched tensor operations. `python -m vitviz.train --data-on-device true`
trains this way; `python -m vitviz.bench` compares it with the DataLoader.

The augmentations are the DataLoader's kinds with the same ranges (`vitviz.data.build_transform`),
drawn per photo from a generator seeded per epoch, so a resumed run repeats an uninterrupted one:
  flip_jitter: horizontal flip (p = 0.5), brightness, contrast and saturation ×[0.7, 1.3], hue ±0.05;
  strong: also a random resized crop (area 35–100 %, aspect 3:4–4:3) rotated by up to ±10°.
`paste_small` (any augmentation, `TrainConfig.paste`) is the zoom-out for wide scenes.
A teacher's soft pseudo-labels (`soft`, per-pixel distributions) go through every geometric step
beside the masks, resampled bilinearly where the masks take the nearest class.
"""

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from vitviz.training.data import IGNORE, PetDataset
from vitviz.training.pseudo_labels import PROBABILITY_SCALE, check_pseudo_labels, read_pseudo_labels

# images, masks, breeds, species, and soft targets (B, 3, S, S) float or None
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


@dataclass
class ResidentSet:
    images: torch.Tensor  # (N, 3, S, S) uint8
    masks: torch.Tensor  # (N, S, S) int8, IGNORE where unlabeled
    breeds: torch.Tensor  # (N,) long
    species: torch.Tensor  # (N,) long
    soft: torch.Tensor | None = None  # (N, 3, S, S) uint8 p × 255 of a teacher's soft pseudo-labels, 0 where none

    @classmethod
    def load(cls, dataset: PetDataset, device: torch.device) -> "ResidentSet":
        """Decode and resize every photo of `dataset` once, without augmentation."""
        plain = dataset.without_augmentation()
        items = [plain[i] for i in range(len(plain))]
        images = torch.stack([(image * 255).round().to(torch.uint8) for image, *_ in items])
        masks = torch.stack([mask.to(torch.int8) for _, mask, *_ in items])
        breeds = torch.tensor([breed for *_, breed, _ in items])
        species = torch.tensor([sp for *_, sp in items])
        return cls(images.to(device), masks.to(device), breeds.to(device), species.to(device))

    def with_pseudo_labels(self, names: list[str], path: str) -> "ResidentSet":
        """Label the photos without a trimap from a `vitviz.pseudo` file, hard (into `masks`) or soft
        (into `soft`); `names` are this set's photo names in order. A trimap always wins."""
        pseudo = read_pseudo_labels(path)
        masks = self.masks.clone()
        size = tuple(masks.shape[-2:])
        check_pseudo_labels(path, size[0])
        is_soft = any(label.dim() == 3 for label in pseudo.values())
        soft = torch.zeros(len(masks), 3, *size, dtype=torch.uint8, device=masks.device) if is_soft else None
        for i, name in enumerate(names):
            if name in pseudo and bool((masks[i] == IGNORE).all()):
                if soft is not None:
                    soft[i] = pseudo[name].to(soft.device)
                else:
                    masks[i] = pseudo[name].to(masks)
        return ResidentSet(self.images, masks, self.breeds, self.species, soft)

    def __len__(self) -> int:
        return len(self.images)

    def num_batches(self, batch_size: int, world_size: int = 1) -> int:
        """Full batches per epoch for one of `world_size` processes (the last partial one is dropped)."""
        return len(self) // world_size // batch_size

    def batches(self, batch_size: int, seed: int, augment: str, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """One epoch of shuffled, augmented batches: images float (B, 3, S, S) in [0, 1], masks long,
        and soft targets (B, 3, S, S) float summing to 1 where a teacher answered (None without)."""
        generator = torch.Generator(device=self.images.device).manual_seed(seed)
        order = torch.randperm(len(self), generator=generator, device=self.images.device)[rank::world_size]
        for b in range(self.num_batches(batch_size, world_size)):
            index = order[b * batch_size:(b + 1) * batch_size]
            images = self.images[index].float() / 255
            masks = self.masks[index].long()
            soft = None if self.soft is None else self.soft[index].float() / PROBABILITY_SCALE
            images, masks, soft = augment_batch(images, masks, augment, generator, soft)
            yield images, masks, self.breeds[index], self.species[index], soft


Augmented = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # images, masks, soft targets or None


def augment_batch(images: torch.Tensor, masks: torch.Tensor, augment: str, generator: torch.Generator,
                  soft: torch.Tensor | None = None) -> Augmented:
    """Augment a batch on its device: 'none', 'flip_jitter' or 'strong' (see the module text).
    Soft targets move with their pixels, resampled bilinearly (a mix of distributions is one)."""
    if augment == "none":
        return images, masks, soft
    if augment not in ("flip_jitter", "strong"):
        raise ValueError(f"augment must be 'none', 'flip_jitter' or 'strong', got {augment!r}")
    if augment == "strong":
        images, masks, soft = random_resized_crop(images, masks, generator, soft=soft)
    flip = uniform(generator, images, len(images)) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    masks = torch.where(flip[:, None, None], masks.flip(-1), masks)
    if soft is not None:
        soft = torch.where(flip[:, None, None, None], soft.flip(-1), soft)
    return colour_jitter(images, generator), masks, soft


def paste_small(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, share: float,
                scale: tuple[float, float] = (0.2, 0.6), soft: torch.Tensor | None = None) -> Augmented:
    """Zoom out on a `share` of the batch: another photo of the batch, shrunk to 20–60 % of the
    side, is pasted with its mask at a random place. Users' photos often show a small pet in a
    wide frame, which random crops (zoom-in only) never do; both masks stay true, so every pixel
    keeps a correct label (and its soft target, if any)."""
    n, _, h, w = images.shape
    chosen = (uniform(generator, images, n) < share).nonzero().flatten().tolist()
    if not chosen:
        return images, masks, soft
    # Donors are read from the batch as it came.
    out_images, out_masks = images.clone(), masks.clone()
    out_soft = None if soft is None else soft.clone()
    donors = torch.randperm(n, generator=generator, device=images.device).tolist()
    sizes = uniform(generator, images, n, *scale)
    corners = uniform(generator, images, 2 * n)
    for i in chosen:
        j = donors[i] if donors[i] != i else (i + 1) % n
        ph, pw = max(8, round(sizes[i].item() * h)), max(8, round(sizes[i].item() * w))
        top, left = int(corners[i].item() * (h - ph + 1)), int(corners[n + i].item() * (w - pw + 1))
        out_images[i, :, top:top + ph, left:left + pw] = F.interpolate(
            images[j:j + 1], size=(ph, pw), mode="bilinear", antialias=True, align_corners=False)[0]
        out_masks[i, top:top + ph, left:left + pw] = F.interpolate(
            masks[j:j + 1, None].float(), size=(ph, pw), mode="nearest")[0, 0].long()
        if soft is not None:
            out_soft[i, :, top:top + ph, left:left + pw] = F.interpolate(
                soft[j:j + 1], size=(ph, pw), mode="bilinear", antialias=True, align_corners=False)[0]
    return out_images, out_masks, out_soft


def uniform(generator: torch.Generator, like: torch.Tensor, n: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """n numbers uniform in [low, high), on `like`'s device."""
    return low + (high - low) * torch.rand(n, generator=generator, device=like.device)


def random_resized_crop(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator,
                        scale: tuple[float, float] = (0.35, 1.0), ratio: tuple[float, float] = (0.75, 4 / 3),
                        degrees: float = 10.0, soft: torch.Tensor | None = None) -> Augmented:
    """Per photo: a crop of random area and aspect, rotated, resampled back to full size.

    Done as one affine sampling grid per photo (F.affine_grid works in [-1, 1] coordinates, so a
    crop spanning a fraction w of the width maps output x ∈ [-1, 1] to input centre ± w).
    Photos are resampled bilinearly with black outside; masks by nearest neighbour with IGNORE
    outside, so the loss never learns from pixels that were not in the photo; soft targets
    bilinearly with 0 (no target) outside."""
    n = len(images)
    area = uniform(generator, images, n, *scale)
    aspect = torch.exp(uniform(generator, images, n, math.log(ratio[0]), math.log(ratio[1])))
    width, height = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    cx = (1 - width) * uniform(generator, images, n, -1, 1)  # the crop stays inside the photo
    cy = (1 - height) * uniform(generator, images, n, -1, 1)
    angle = uniform(generator, images, n, -degrees, degrees) * math.pi / 180
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([width * cos, -height * sin, cx], -1),
                         torch.stack([width * sin, height * cos, cy], -1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Shift the classes to 1… so that the zeros grid_sample puts outside the photo can be told apart.
    shifted = F.grid_sample((masks[:, None].float() - IGNORE + 1), grid, mode="nearest", padding_mode="zeros",
                            align_corners=False)[:, 0].long()
    masks = torch.where(shifted > 0, shifted + IGNORE - 1, IGNORE)
    if soft is not None:
        soft = F.grid_sample(soft, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return images, masks, soft


def colour_jitter(images: torch.Tensor, generator: torch.Generator, strength: float = 0.3,
                  hue: float = 0.05) -> torch.Tensor:
    """Per photo: brightness, contrast and saturation factors in [1 - strength, 1 + strength] and a
    hue shift in [-hue, hue] of a turn (a rotation about the grey axis in YIQ space)."""
    n = len(images)

    def factors() -> torch.Tensor:  # one per photo, broadcast over channels and pixels
        return uniform(generator, images, n, 1 - strength, 1 + strength)[:, None, None, None]

    images = (images * factors()).clamp(0, 1)  # brightness
    mean_grey = luma(images).mean((-2, -1), keepdim=True)
    images = (mean_grey + factors() * (images - mean_grey)).clamp(0, 1)  # contrast
    grey = luma(images)
    images = (grey + factors() * (images - grey)).clamp(0, 1)  # saturation
    return rotate_hue(images, uniform(generator, images, n, -hue, hue) * 2 * math.pi).clamp(0, 1)


RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)  # once: inverting per batch would make a GPU wait for the CPU


def luma(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) grey level of RGB images (ITU-R 601 weights, as torchvision uses: the Y row)."""
    return (images * RGB_TO_YIQ[0].to(images)[:, None, None]).sum(1, keepdim=True)


def rotate_hue(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate every photo's colours by `angle` (radians, one per photo) around the grey axis."""
    to_yiq = RGB_TO_YIQ.to(images)
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1),
                            torch.stack([zero, sin, cos], -1)], 1)  # (B, 3, 3), keeps Y (brightness)
    mix = YIQ_TO_RGB.to(images) @ rotation @ to_yiq
    return torch.einsum("bij,bjhw->bihw", mix, images)
