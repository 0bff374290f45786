"""A training job is checked as a whole before it starts: its parameters (counted on the meta
device), the memory to train it and the disk for its snapshots, against what the machine has free.
The estimate is compared with the real model, a real training step and a real run folder."""

import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from vitviz.training import jobs
from vitviz.training.jobs import REPO, JobError
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training.presets import TrainConfig, preset

TINY = dict(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
# The issue's job: every field within its range, 2.4B parameters together, one click to run out of memory.
HUGE_FORM = dict(embed_dim=2048, depth=48, num_heads=64, batch_size=400, epochs=10_000)
# One real training step of a preset in a fresh process, as the trainer takes it: its peak memory (RSS).
ONE_STEP = """
import json, resource, sys, torch
from vitviz.model.vit import SegmentationViT
from vitviz.training.presets import preset
from vitviz.training.loop import make_optimizer, segmentation_loss
torch.set_num_threads(1)
model_cfg, train = preset(sys.argv[1])
model = SegmentationViT(model_cfg).train()
optimizer = make_optimizer(model, train)
images = torch.randn(train.batch_size, 3, model_cfg.image_size, model_cfg.image_size)
masks = torch.randint(0, 3, (train.batch_size, model_cfg.image_size, model_cfg.image_size))
segmentation_loss(model(images), masks, None, train).backward()
optimizer.step()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
"""


@pytest.mark.parametrize("changes", [
    {},
    dict(pos_embed="sin2d", head="mlp"),
    dict(patch_embed="convstem", head="skip", class_token=True, num_classes=4),
    dict(image_size=64, patch_size=16, patch_embed="deepstem", head="skip", pos_embed="none"),
])
def test_the_parameters_are_those_of_the_real_model(changes):
    cfg = ViTConfig(**{**TINY, **changes})
    assert jobs.training_cost(cfg, TrainConfig(epochs=2)).parameters == SegmentationViT(cfg).num_params()


def test_the_issues_model_is_refused_with_its_estimate_and_the_limit(tiny_data, tmp_path):
    form = {**jobs.form_defaults("seed-small"), **HUGE_FORM}
    with pytest.raises(JobError) as error:
        jobs.check_request(tmp_path, "seed-small", "huge", str(tiny_data), form, [tiny_data])
    message = str(error.value)
    assert re.fullmatch(r"This model needs about [\d.]+ GiB to train \(2\.42B parameters, batch 400\); "
                        r"(this machine|the GPU) has [\d.]+ [GM]iB free: .+", message), message
    needed = float(re.search(r"about ([\d.]+) GiB", message).group(1))
    assert needed > 2.42e9 * 16 / 2**30  # at least its weights, gradients and two moments
    assert not (tmp_path / "huge").exists()


@pytest.mark.parametrize("name", ["seed-small", "hybrid", "default-skip"])
def test_the_shipped_presets_fit_this_machine(name, tmp_path):
    cost = jobs.check_fits(*preset(name), tmp_path)
    assert cost.memory < 4 * 2**30 and cost.disk < 2**30


def test_the_memory_estimate_covers_a_real_training_step_without_doubling_it():
    """hybrid: a conv stem, a transformer and a skip decoder. The estimate must be at least what
    one training step really takes at its peak, and not twice as much."""
    step = subprocess.run([sys.executable, "-c", ONE_STEP, "hybrid"], cwd=REPO, capture_output=True, text=True,
                          check=True)
    peak = json.loads(step.stdout)
    estimate = jobs.training_cost(*preset("hybrid")).memory
    assert peak <= estimate <= 2 * peak, f"estimate {estimate / 2**20:.0f} MiB, real peak {peak / 2**20:.0f} MiB"


def test_the_disk_estimate_covers_a_real_run_folder(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    model_cfg = ViTConfig.from_dict(config["model"])
    train = TrainConfig(**{k: v for k, v in config["train"].items() if k in TrainConfig.__dataclass_fields__})
    weights = [*tiny_checkpoint.glob("snapshots/*.safetensors"), tiny_checkpoint / "model.safetensors",
               tiny_checkpoint / "train_state.safetensors"]
    written = sum(path.stat().st_size for path in weights)
    estimate = jobs.training_cost(model_cfg, train).disk
    assert written <= estimate <= 2 * written


def test_a_run_that_needs_more_disk_than_is_free_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**20))
    with pytest.raises(JobError) as error:
        jobs.check_fits(*preset("seed-small"), tmp_path / "runs")  # a runs folder that does not exist yet
    assert re.fullmatch(rf"This run's snapshots and training state need about [\d.]+ MiB on disk "
                        rf"\(998\.8k parameters\); {re.escape(str(tmp_path))} has 1\.0 MiB free: .+",
                        str(error.value)), str(error.value)
