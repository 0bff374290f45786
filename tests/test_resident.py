"""The training set kept on the device (vitviz.training.resident): the same photos as the DataLoader, and
batched augmentations that move photo and mask together and keep their ranges."""

import math

import pytest
import torch
from safetensors.torch import save_file

from vitviz.training.data import IGNORE, PetDataset
from vitviz.training.resident import (ResidentSet, augment_batch, colour_jitter, paste_small, random_resized_crop,
                                     rotate_hue)


@pytest.fixture(scope="module")
def dataset(tiny_data):
    return PetDataset(tiny_data, "trainval", 32, "strong")


@pytest.fixture(scope="module")
def resident(dataset):
    return ResidentSet.load(dataset, torch.device("cpu"))


def test_load_holds_the_unaugmented_photos_and_masks(dataset, resident):
    plain = dataset.without_augmentation()
    assert len(resident) == len(dataset) and resident.images.dtype == torch.uint8
    for i in (0, len(dataset) - 1):
        image, mask, breed, species = plain[i]
        torch.testing.assert_close(resident.images[i].float() / 255, image, atol=1e-6, rtol=0)  # uint8 loses nothing
        assert torch.equal(resident.masks[i].long(), mask)
        assert (resident.breeds[i], resident.species[i]) == (breed, species)


def test_an_epoch_visits_each_photo_once_in_a_seeded_order(resident):
    def order(seed, rank=0, world=1):
        return [b[2].tolist() + b[0].sum((1, 2, 3)).tolist() for b in resident.batches(4, seed, "none", rank, world)]

    assert order(1) == order(1) and order(1) != order(2)
    batches = list(resident.batches(4, 1, "none"))
    assert len(batches) == resident.num_batches(4) == len(resident) // 4
    seen = torch.cat([images.sum((1, 2, 3)) for images, *_ in batches])
    assert torch.allclose(seen.sort().values, (resident.images.float() / 255).sum((1, 2, 3)).sort().values)
    halves = [torch.cat([b[0].sum((1, 2, 3)) for b in resident.batches(4, 1, "none", r, 2)]) for r in (0, 1)]
    assert torch.allclose(torch.cat(halves).sort().values, seen.sort().values)  # two processes share the photos


def test_an_identity_crop_changes_nothing():
    images, masks = torch.rand(3, 3, 16, 16), torch.randint(-1, 3, (3, 16, 16))
    g = torch.Generator().manual_seed(0)
    out_images, out_masks, _ = random_resized_crop(images, masks, g, scale=(1, 1), ratio=(1, 1), degrees=0)
    torch.testing.assert_close(out_images, images)
    assert torch.equal(out_masks, masks)


def test_crops_keep_classes_and_mark_pixels_from_outside_the_photo():
    images, masks = torch.ones(8, 3, 32, 32), torch.randint(0, 3, (8, 32, 32))
    out_images, out_masks, _ = random_resized_crop(images, masks, torch.Generator().manual_seed(0), degrees=10)
    assert set(out_masks.unique().tolist()) <= {IGNORE, 0, 1, 2}
    outside = out_images[:, 0] == 0  # black: sampled from outside the photo (rotated corners)
    assert outside.any() and torch.all(out_masks[outside] == IGNORE)


def test_colour_changes_keep_grey_grey_and_do_nothing_at_zero_strength():
    images = torch.rand(4, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(colour_jitter(images, g, strength=0, hue=0), images)
    torch.testing.assert_close(rotate_hue(images, torch.full((4,), 2 * math.pi)), images, atol=1e-5, rtol=0)
    grey = torch.rand(4, 1, 8, 8).expand(4, 3, 8, 8)
    turned = rotate_hue(grey, torch.tensor([0.3, 1.0, 2.0, 3.0]))
    torch.testing.assert_close(turned, grey, atol=1e-5, rtol=0)


def test_flip_and_jitter_move_photo_and_mask_together():
    """A grey photo whose brightness encodes its mask class: brightness, contrast and saturation
    keep the order of grey levels, so after augmenting, the classes must still sort the same way."""
    masks = torch.randint(0, 3, (16, 12, 12))
    images = ((masks.float() + 1) / 4)[:, None].expand(16, 3, 12, 12).contiguous()
    out_images, out_masks, _ = augment_batch(images, masks, "flip_jitter", torch.Generator().manual_seed(3))
    assert not torch.equal(out_masks, masks)  # some photos were flipped
    level = out_images.mean(1)
    for i in range(16):
        classes = [level[i][out_masks[i] == c] for c in range(3) if (out_masks[i] == c).any()]
        for low, high in zip(classes, classes[1:]):
            assert low.max() < high.min()


def test_pseudo_labels_of_another_image_size_are_refused_in_one_line(tmp_path):
    photos = ResidentSet(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.full((2, 8, 8), -1, dtype=torch.int8),
                         torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    path = tmp_path / "pseudo.safetensors"
    save_file({"masks": torch.zeros(2, 16, 16, dtype=torch.int8)}, str(path), metadata={"names": '["a", "b"]'})
    with pytest.raises(ValueError, match="holds 16x16 pseudo-labels but this run trains at 8x8"):
        photos.with_pseudo_labels(["a", "b"], str(path))


@pytest.mark.parametrize("augment", ["flip_jitter", "strong"])
def test_soft_targets_move_with_their_pixels(augment):
    """Soft targets made one-hot from the masks, augmented beside them (bilinear against nearest):
    wherever a resampled target is whole (all its neighbours agreed), it names the mask's class;
    it fades to nothing outside the photo and never weighs more than one pixel."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 3, (8, 4, 4), generator=generator).repeat_interleave(8, 1).repeat_interleave(8, 2)
    soft = torch.nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    images = torch.rand(8, 3, 32, 32, generator=generator)
    _, out_masks, out_soft = augment_batch(images, masks, augment, torch.Generator().manual_seed(4), soft)
    _, out_masks, out_soft = paste_small(images, out_masks, torch.Generator().manual_seed(5), 0.5, soft=out_soft)
    whole = out_soft.max(1).values > 0.999
    assert whole.float().mean() > 0.5 and torch.equal(out_soft.argmax(1)[whole], out_masks[whole])
    mass = out_soft.sum(1)  # 1 inside the photo, partial at its edge, 0 beyond
    assert torch.all(mass <= 1 + 1e-5) and torch.all(mass[out_masks == IGNORE] < 1 - 1e-3)
    assert torch.all(out_masks[mass == 0] == IGNORE)
    assert not torch.equal(out_masks, masks)  # something moved


def test_soft_pseudo_labels_fill_only_the_photos_without_a_trimap(tmp_path):
    masks = torch.full((3, 8, 8), -1, dtype=torch.int8)
    masks[1] = 0  # a photo with a trimap
    photos = ResidentSet(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), masks, torch.zeros(3, dtype=torch.long),
                         torch.zeros(3, dtype=torch.long))
    probabilities = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    path = tmp_path / "pseudo.safetensors"
    save_file({"probabilities": probabilities}, str(path), metadata={"names": '["a", "b"]'})
    filled = photos.with_pseudo_labels(["a", "b", "c"], str(path))
    assert torch.equal(filled.masks, masks)  # hard labels untouched
    assert torch.equal(filled.soft[0], probabilities[0]) and not filled.soft[1:].any()  # b has a trimap; c no label
    images, batch_masks, _, _, soft = next(filled.batches(3, 0, "none"))
    assert soft.shape == (3, 3, 8, 8) and soft.max() <= 1
