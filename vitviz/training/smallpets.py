"""A stand-in for users' wide scenes: the test photos shrunk to 10–50 % of the frame.

Users film dogs running on grass or across a garden: the pet fills a small part of a wide frame,
which no photo of the data set shows (they are framed on the pet). This measures how a model
copes, on the test split's photos and trimaps, shrunk by a `scale` of the side and laid on a
128 px canvas that is either plain grey (everything around the pet is background) or the photo
mirrored outwards (the mirror images of the pet count as pet). The score is the pet class's IoU.
"""

import numpy as np
import torch
import torch.nn.functional as F

from vitviz.training.data import CLASS_NAMES, PetDataset
from vitviz.training.metrics import confusion, summarize
from vitviz.training.predict import as_list, mask_probabilities

SCALES = (0.1, 0.2, 0.3, 0.4, 0.5)
BACKGROUND = CLASS_NAMES.index("background")
GREY = 0.5


def shrink_onto_canvas(image: torch.Tensor, mask: torch.Tensor, scale: float, canvas: str,
                       offset: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, S, S) photo and (S, S) mask shrunk to `scale` of the side and placed at `offset` (fractions
    of the free space) on a grey or mirrored canvas of the same size."""
    size = image.shape[-1]
    side = max(4, round(scale * size))
    small = F.interpolate(image[None], size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0]
    small_mask = F.interpolate(mask[None, None].float(), size=(side, side), mode="nearest")[0, 0].long()
    top, left = round(offset[0] * (size - side)), round(offset[1] * (size - side))
    if canvas == "grey":
        out = torch.full_like(image, GREY)
        out_mask = torch.full_like(mask, BACKGROUND)
        out[:, top:top + side, left:left + side] = small
        out_mask[top:top + side, left:left + side] = small_mask
        return out, out_mask
    if canvas != "mirror":
        raise ValueError(f"canvas must be 'grey' or 'mirror', got {canvas!r}")
    pad = ((top, size - side - top), (left, size - side - left))
    mirrored = np.pad(small.numpy(), ((0, 0), *pad), mode="symmetric")  # repeats the reflection as needed
    mirrored_mask = np.pad(small_mask.numpy(), pad, mode="symmetric")
    return torch.from_numpy(mirrored), torch.from_numpy(mirrored_mask)


@torch.no_grad()
def small_pet_scores(model, dataset: PetDataset, canvas: str, flip: bool = False,
                     scales: tuple[float, ...] = SCALES, batch_size: int = 64,
                     test_scales: tuple[float, ...] = (1.0,)) -> dict:
    """Pet IoU over the whole split at each scale, and their mean; `flip` and `test_scales` as in
    `predict.mask_probabilities`. Photo i sits at a fixed place
    drawn from a generator seeded with 0, so every model is scored on the same pictures. The
    pictures are made on the CPU and scored on the model's device (`model` may be an ensemble)."""
    for one in as_list(model):
        one.eval()
    device = next(as_list(model)[0].parameters()).device
    places = torch.rand(len(dataset), 2, generator=torch.Generator().manual_seed(0)).tolist()
    photos = [dataset[i][:2] for i in range(len(dataset))]
    by_scale = {}
    for scale in scales:
        conf = torch.zeros(3, 3, dtype=torch.long)
        for start in range(0, len(photos), batch_size):
            pairs = [shrink_onto_canvas(image, mask, scale, canvas, places[start + k])
                     for k, (image, mask) in enumerate(photos[start:start + batch_size])]
            images, masks = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            conf += confusion(mask_probabilities(model, images.to(device), flip, test_scales).argmax(1).cpu(), masks)
        by_scale[f"{scale:g}"] = summarize(conf)["iou"]["pet"]
    return {"pet_iou": float(np.mean(list(by_scale.values()))), "by_scale": by_scale}
