"""The self-training recipe's parts: the hybrid stem, the losses, pasted small photos, the test-split
guard, pseudo-labels, flip averaging and the small-pet stand-in."""

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from vitviz import evaluate, export, pseudo, train
from vitviz.app.inference import analyse, photo_to_input
from vitviz.model.patches import ConvStemPatchEmbed, DeepConvStemPatchEmbed
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training import checkpoint as ckpt
from vitviz.training.checkpoint import read_weights
from vitviz.training.data import IGNORE, PetDataset
from vitviz.training.loop import warm_start
from vitviz.training.losses import LOSSES, TARGET_LOSSES, cross_entropy_to, lovasz_softmax, soft_dice, target_distribution
from vitviz.training.predict import mask_probabilities, rescaled
from vitviz.training.pseudo_labels import pseudo_label, read_pseudo_labels
from vitviz.training.resident import ResidentSet, paste_small
from vitviz.training.smallpets import shrink_onto_canvas

HYBRID = dict(image_size=32, patch_size=16, patch_embed="deepstem", embed_dim=32, depth=1, num_heads=2, head="skip")


def test_deep_stem_has_two_convolutions_per_resolution_and_feeds_the_skip_decoder():
    shallow, deep = ConvStemPatchEmbed(16, 3, 64), DeepConvStemPatchEmbed(16, 3, 64)
    convs = lambda stem: sum(isinstance(m, torch.nn.Conv2d) for m in stem.stages.modules())
    assert convs(shallow) == 3 and convs(deep) == 6 and deep.widths == shallow.widths
    model = SegmentationViT(ViTConfig(**HYBRID)).eval()
    assert model(torch.randn(2, 3, 32, 32)).mask_logits.shape == (2, 3, 32, 32)
    assert model.cfg.grid == (2, 2)  # 16x16 patches: 4 tokens at 32 px, 64 at 128 px


def test_dice_is_zero_for_a_perfect_answer_and_skips_unlabeled_pixels():
    masks = torch.tensor([[[0, 1], [2, IGNORE]]])
    perfect = torch.nn.functional.one_hot(masks.clamp(min=0), 3).permute(0, 3, 1, 2).float() * 100
    perfect[0, :, 1, 1] = torch.tensor([0.0, 0.0, 100.0])  # wrong, but unlabeled: must not count
    assert soft_dice(perfect, masks).item() == pytest.approx(0, abs=1e-3)
    wrong = perfect.roll(1, dims=1)
    assert soft_dice(wrong, masks).item() > 0.5
    assert set(LOSSES) == {"ce", "ce_dice", "ce_lovasz"}


def test_losses_on_target_distributions_equal_the_hard_ones_on_one_hot_targets_and_learn_soft_ones():
    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 3, (2, 8, 8), generator=generator)
    masks[0, :3] = IGNORE
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    targets = target_distribution(masks, 3)
    for name, loss in TARGET_LOSSES.items():
        assert loss(logits, targets).item() == pytest.approx(LOSSES[name](logits, masks).item(), rel=1e-5)
    # Against a soft target, the loss is lowest where the answer is that distribution.
    soft = torch.softmax(torch.randn(1, 3, 4, 4, generator=generator), 1)
    matching = cross_entropy_to(soft.log(), soft)
    assert matching < cross_entropy_to(soft.log().roll(1, dims=1), soft)
    assert torch.allclose(matching, -(soft * soft.log()).sum() / 16)  # the target's own entropy per pixel


def test_lovasz_on_hard_answers_is_one_minus_the_batchs_miou():
    """The Lovász extension equals the Jaccard loss at the vertices: for one-hot answers, 1 − mean IoU
    over the classes present in the labeled pixels; unlabeled pixels do not count."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 3, (2, 16, 16), generator=generator)
    masks[0, :4] = IGNORE
    answers = torch.randint(0, 3, (2, 16, 16), generator=generator)
    logits = torch.nn.functional.one_hot(answers, 3).permute(0, 3, 1, 2).float() * 100
    labeled = masks != IGNORE
    ious = [((masks == c) & (answers == c) & labeled).sum() / (((masks == c) | (answers == c)) & labeled).sum()
            for c in range(3)]
    assert lovasz_softmax(logits, masks).item() == pytest.approx(1 - torch.stack(ious).mean().item(), abs=1e-5)
    perfect = torch.nn.functional.one_hot(masks.clamp(min=0), 3).permute(0, 3, 1, 2).float() * 100
    assert lovasz_softmax(perfect, masks).item() == pytest.approx(0, abs=1e-5)
    soft = torch.randn(2, 3, 16, 16, requires_grad=True)
    lovasz_softmax(soft, masks).backward()
    assert soft.grad.abs().sum() > 0  # a gradient to train with


def test_pasted_photos_bring_their_own_mask_and_leave_the_rest_alone():
    images = torch.stack([torch.zeros(3, 32, 32), torch.ones(3, 32, 32)])
    masks = torch.stack([torch.zeros(32, 32, dtype=torch.long), torch.ones(32, 32, dtype=torch.long)])
    out, out_masks, _ = paste_small(images, masks, torch.Generator().manual_seed(0), share=1.0)
    for i in range(2):
        donor = 1 - i
        pasted = out_masks[i] == donor
        assert 0.2**2 * 0.9 < pasted.float().mean() < 0.6**2 * 1.1  # 20-60 % of the side
        assert torch.allclose(out[i][:, pasted], images[donor][:, pasted])  # photo and mask move together
        assert torch.equal(out[i][:, ~pasted], images[i][:, ~pasted])
    untouched, same_masks, _ = paste_small(images, masks, torch.Generator().manual_seed(0), share=0.0)
    assert untouched is images and same_masks is masks


def test_training_refuses_the_test_split_even_without_labels(tiny_data):
    for segmentation in (True, False):
        with pytest.raises(ValueError, match="never 'test'"):
            PetDataset(tiny_data, "test", 32, segmentation=segmentation, training=True)
    assert len(PetDataset(tiny_data, "trainval", 32, training=True)) == 16


def test_pseudo_labels_cover_only_unlabeled_trainval_photos_and_train_a_student(tiny_data, tiny_checkpoint, tmp_path):
    out = tmp_path / "pseudo.safetensors"
    assert pseudo.main(["--teacher", str(tiny_checkpoint), "--data-root", str(tiny_data), "--out", str(out),
                        "--threshold", "0.4"]) == 0
    labels = read_pseudo_labels(out)
    trainval = PetDataset(tiny_data, "trainval", 32, segmentation=False)
    test_names = {e.name for e in PetDataset(tiny_data, "test", 32, segmentation=False).entries}
    unlabeled = {e.name for e in trainval.entries} - {e.name for e in PetDataset(tiny_data, "trainval", 32).entries}
    assert set(labels) == unlabeled and not set(labels) & test_names
    assert all(m.shape == (32, 32) and set(m.unique().tolist()) <= {IGNORE, 0, 1, 2} for m in labels.values())

    # A teacher averaged over photo sizes too (`--scales`): its labels are the argmax of that average.
    teacher = ckpt.load_model(tiny_checkpoint)
    names, masks, _ = pseudo_label([teacher], str(tiny_data), 0.0, scales=(0.5, 1.0))
    images = torch.stack([trainval[[e.name for e in trainval.entries].index(name)][0] for name in names])
    assert torch.equal(masks.long(), mask_probabilities(teacher, images, flip=True, scales=(0.5, 1.0)).argmax(1))

    resident = ResidentSet.load(trainval, torch.device("cpu"))
    filled = resident.with_pseudo_labels([e.name for e in trainval.entries], str(out))
    for i, e in enumerate(trainval.entries):
        expected = labels[e.name].long() if e.name in labels else resident.masks[i].long()
        assert torch.equal(filled.masks[i].long(), expected)  # trimaps kept, pseudo-labels only where none

    runs = tmp_path / "runs"
    assert train.main(["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(runs), "--name", "student",
                       "--workers", "0", "--epochs", "1", "--init-from", str(tiny_checkpoint),
                       "--pseudo-labels", str(out), "--loss", "ce_dice", "--paste", "0.5"]) == 0
    assert json.loads((runs / "student" / "metrics.json").read_text())["epochs_done"] == 1

    # Shipped as one history: the teacher's epochs 1-2, then the student's epoch 1 as epoch 3.
    shipped = export.export(runs / "student", tmp_path / "shipped", int8_snapshots=True, after=[tiny_checkpoint])
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["teacher", "pseudo-labels", "student"]
    assert metrics["stages"][1]["command"].startswith("python -m vitviz.pseudo") and metrics["stages"][1]["photos"] == 4
    assert [(r["epoch"], r["stage"]) for r in metrics["curve"]] == [(1, "teacher"), (2, "teacher"), (3, "student")]
    assert metrics["command"].count("python -m vitviz.") == 3 and metrics["epochs_done"] == 3
    assert ckpt.list_snapshots(shipped) == [1, 2, 3]
    teacher_epoch_1 = ckpt.read_weights(tiny_checkpoint, 1)["blocks.0.attn.qkv.weight"].float()
    assert torch.allclose(ckpt.read_weights(shipped, 1)["blocks.0.attn.qkv.weight"], teacher_epoch_1, atol=0.01)

    # A run continued once more (a new learning-rate schedule): a third stage of the same history.
    assert train.main(["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(runs), "--name", "more",
                       "--workers", "0", "--epochs", "1", "--init-from", str(runs / "student")]) == 0
    shipped = export.export(runs / "more", tmp_path / "shipped", after=[tiny_checkpoint, runs / "student"])
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["teacher", "pseudo-labels", "student", "continued"]
    assert [r["epoch"] for r in metrics["curve"]] == [1, 2, 3, 4] and metrics["curve"][-1]["stage"] == "continued"
    assert metrics["command"].count("python -m vitviz.") == 4 and ckpt.list_snapshots(shipped) == [1, 2, 3, 4]
    assert export.stage_roles([None, None]) == ["from scratch", "continued"]

    # A student trained from scratch on the teacher's pseudo-labels: the teacher is a stage of the
    # recipe, not of the weights' history (the curve and the snapshots are the student's own).
    assert train.main(["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(runs), "--name", "scratch",
                       "--workers", "0", "--epochs", "1", "--pseudo-labels", str(out)]) == 0
    shipped = export.export(runs / "scratch", tmp_path / "shipped", teacher=tiny_checkpoint)
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["teacher", "pseudo-labels", "student"]
    assert [(r["epoch"], r["stage"]) for r in metrics["curve"]] == [(1, "student")]
    assert metrics["command"].count("python -m vitviz.") == 3 and ckpt.list_snapshots(shipped) == [1]


def test_soft_pseudo_labels_keep_the_teachers_probabilities_and_train_a_student(tiny_data, tiny_checkpoint, tmp_path):
    out = tmp_path / "soft.safetensors"
    assert pseudo.main(["--teacher", str(tiny_checkpoint), "--data-root", str(tiny_data), "--out", str(out), "--soft"]) == 0
    labels = read_pseudo_labels(out)
    teacher = ckpt.load_model(tiny_checkpoint)
    names, probabilities, stats = pseudo_label([teacher], str(tiny_data), 0.7, soft=True)
    assert set(labels) == set(names) and stats["kept_pixels"] == 1 and stats["soft"]
    trainval = PetDataset(tiny_data, "trainval", 32, segmentation=False)
    images = torch.stack([trainval[[e.name for e in trainval.entries].index(name)][0] for name in names])
    expected = mask_probabilities(teacher, images, flip=True)
    assert probabilities.shape == expected.shape and probabilities.dtype == torch.uint8
    assert (probabilities.float() / 255 - expected).abs().max() <= 0.5 / 255 + 1e-6  # every pixel, rounded

    runs = tmp_path / "runs"
    args = ["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(runs), "--workers", "0", "--epochs", "1",
            "--init-from", str(tiny_checkpoint), "--pseudo-labels", str(out), "--paste", "0.5", "--augment", "strong"]
    assert train.main(args + ["--name", "lovasz", "--loss", "ce_lovasz"]) == 2  # no soft form: refused in one line
    for wrong in (["--soft", "--threshold", "0.5"], ["--threshold", "1.5"], ["--scales", "0"]):
        with pytest.raises(SystemExit):
            pseudo.main(["--teacher", str(tiny_checkpoint), "--data-root", str(tiny_data), "--out", str(out), *wrong])
    assert train.main(args + ["--name", "student", "--loss", "ce_dice"]) == 0
    curve = json.loads((runs / "student" / "metrics.json").read_text())["curve"]
    assert math.isfinite(curve[0]["train_loss"]) and curve[0]["train_loss"] > 0
    shipped = export.export(runs / "student", tmp_path / "shipped", after=[tiny_checkpoint])
    stage = json.loads((shipped / "metrics.json").read_text())["stages"][1]
    assert stage["stage"] == "pseudo-labels" and stage["soft"] and "threshold" not in stage


def test_student_starts_from_the_teachers_weights(tiny_data, tiny_checkpoint, tmp_path):
    assert train.main(["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(tmp_path), "--name", "s",
                       "--workers", "0", "--epochs", "1", "--lr", "1e-12", "--init-from", str(tiny_checkpoint)]) == 0
    student, original = read_weights(tmp_path / "s"), read_weights(tiny_checkpoint)
    assert json.loads((tmp_path / "s" / "config.json").read_text())["train"]["init_from"] == str(tiny_checkpoint)
    assert torch.allclose(student["blocks.0.attn.qkv.weight"], original["blocks.0.attn.qkv.weight"], atol=1e-6)


def test_a_model_with_a_new_head_step_starts_from_one_trained_without_it():
    """`--init-from` a `skip` model into a `skip_full` one: every weight is copied but the new
    full-resolution step's, which keeps its initialisation; weights with no place are refused."""
    torch.manual_seed(0)
    trained = SegmentationViT(ViTConfig(**HYBRID))
    new = SegmentationViT(ViTConfig(**{**HYBRID, "head": "skip_full"}))
    before = {name: value.clone() for name, value in new.state_dict().items()}
    fresh = warm_start(new, trained.state_dict())
    assert fresh and all(name.startswith("seg_head.up.3.") for name in fresh)
    for name, value in new.state_dict().items():
        assert torch.equal(value, before[name] if name in fresh else trained.state_dict()[name]), name
    with pytest.raises(ValueError, match="no place in this model"):
        warm_start(trained, new.state_dict())


def test_flip_averaging_is_the_mean_of_the_photo_and_its_mirror():
    torch.manual_seed(0)
    model = SegmentationViT(ViTConfig(**HYBRID)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x).mask_logits.softmax(1)
        mirrored = model(x.flip(-1)).mask_logits.softmax(1).flip(-1)
    assert torch.allclose(mask_probabilities(model, x), plain, atol=1e-6)
    assert torch.allclose(mask_probabilities(model, x, flip=True), (plain + mirrored) / 2, atol=1e-6)


def test_multi_scale_averaging_resizes_the_photo_and_the_answers_back():
    torch.manual_seed(0)
    model = SegmentationViT(ViTConfig(**HYBRID)).eval()
    x = torch.rand(2, 3, 32, 32)
    half = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)  # one 16-px patch
    with torch.no_grad():
        plain = model(x).mask_logits.softmax(1)
        small = F.interpolate(model(half).mask_logits.softmax(1), size=(32, 32), mode="bilinear", align_corners=False)
    assert rescaled(x, 1.0, 16) is x and rescaled(x, 0.3, 16).shape[-2:] == (16, 16)  # whole patches, at least one
    assert torch.allclose(mask_probabilities(model, x, scales=(0.5, 1.0)), (small + plain) / 2, atol=1e-6)


def test_small_pet_canvas_keeps_photo_and_mask_together():
    image = torch.rand(3, 40, 40)
    mask = torch.zeros(40, 40, dtype=torch.long)  # all pet
    grey, grey_mask = shrink_onto_canvas(image, mask, 0.25, "grey", (0.0, 1.0))
    assert (grey_mask == 0).sum() == 100 and torch.equal(grey_mask[:10, 30:], torch.zeros(10, 10, dtype=torch.long))
    assert (grey[:, grey_mask == 1] == 0.5).all()
    mirror, mirror_mask = shrink_onto_canvas(image, mask, 0.25, "mirror", (0.5, 0.5))
    assert mirror.shape == image.shape and (mirror_mask == 0).all()  # the mirrored pets are pets too


def test_evaluate_reports_flip_small_pets_and_class_accuracy(tiny_data, tiny_class_checkpoint):
    result = evaluate.evaluate(str(tiny_class_checkpoint), str(tiny_data), flip=True, small_pets=True)
    assert result["flip"] and set(result["small_pets"]) == {"grey", "mirror"}
    assert 0 <= result["small_pets"]["grey"]["pet_iou"] <= 1 and len(result["small_pets"]["mirror"]["by_scale"]) == 5
    classes = result["classes"]
    assert classes["n_images"] == 20 and 0 <= classes["breed_accuracy"] <= classes["species_accuracy"] <= 1


def test_the_app_shows_the_flip_averaged_mask_that_evaluate_scores():
    torch.manual_seed(0)
    model = SegmentationViT(ViTConfig(**HYBRID)).eval()
    with torch.no_grad():
        for weight in model.parameters():
            weight.normal_(0, 0.3)  # an untrained model answers ~1/3 everywhere: mirrored or not
    photo = (torch.rand(40, 56, 3) * 255).byte().numpy()
    analysis = analyse(model, photo)
    expected = mask_probabilities(model, photo_to_input(photo, 32)[None], flip=True)[0]
    assert torch.allclose(analysis.probs, expected, atol=1e-6)
    assert not torch.allclose(analysis.probs, mask_probabilities(model, photo_to_input(photo, 32)[None])[0], atol=1e-4)


def test_evaluate_record_keeps_the_scores_and_the_training_photos_in_the_checkpoint(tiny_data, tiny_checkpoint, tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_checkpoint, folder)
    assert evaluate.main(["--checkpoint", str(folder), "--data-root", str(tiny_data), "--record"]) == 0
    recorded = json.loads((folder / "metrics.json").read_text())["evaluation"]
    scored = evaluate.evaluate(str(folder), str(tiny_data))
    assert recorded["pixel_accuracy"] == scored["pixel_accuracy"] and recorded["flip"] and recorded["split"] == "test"
    labeled = PetDataset(tiny_data, "trainval", ckpt.read_config(folder)["model"]["image_size"])
    assert recorded["training_photos"] == {"with_trimap": len(labeled.entries), "without_trimap": 0,
                                           "breeds_with_trimap": len({e.breed for e in labeled.entries})}
    assert recorded["command"].startswith("python -m vitviz.evaluate --checkpoint")
    with pytest.raises(SystemExit):  # a snapshot's scores are not the checkpoint's
        evaluate.main(["--checkpoint", str(folder), "--record", "--epoch", "1"])
    with pytest.raises(SystemExit):  # nor are the scores of masks the app does not make
        evaluate.main(["--checkpoint", str(folder), "--record", "--scales", "0.75", "1", "1.25"])
    assert evaluate.evaluate(str(folder), str(tiny_data), scales=(0.5, 1.0))["scales"] == [0.5, 1.0]
    with pytest.raises(SystemExit):  # nor an ensemble's
        evaluate.main(["--checkpoint", str(folder), "--record", "--ensemble", str(tiny_checkpoint)])


def test_evaluate_scores_an_ensemble_by_its_averaged_answers(tiny_data, tiny_checkpoint, tiny_class_checkpoint):
    alone = evaluate.evaluate(str(tiny_checkpoint), str(tiny_data), small_pets=True)
    twice = evaluate.evaluate(str(tiny_checkpoint), str(tiny_data), small_pets=True, ensemble=[str(tiny_checkpoint)])
    assert {k: twice[k] for k in ("pixel_accuracy", "iou", "small_pets")} == \
        {k: alone[k] for k in ("pixel_accuracy", "iou", "small_pets")}  # a model averaged with itself is itself
    pair = evaluate.evaluate(str(tiny_checkpoint), str(tiny_data), ensemble=[str(tiny_class_checkpoint)])
    models = [ckpt.load_model(tiny_checkpoint), ckpt.load_model(tiny_class_checkpoint)]
    test = PetDataset(tiny_data, "test", 32)
    images, masks = torch.stack([test[i][0] for i in range(len(test))]), torch.stack([test[i][1] for i in range(len(test))])
    expected = (mask_probabilities(models, images, flip=True).argmax(1) == masks).float().mean().item()
    assert pair["pixel_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert pair["ensemble"] == [str(tiny_class_checkpoint)] and "classes" not in pair  # the class head is one model's
