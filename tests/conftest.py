"""Shared fixtures: a generated dataset in the Oxford-IIIT Pet layout and a checkpoint trained on it.

Nothing here reads the real dataset; everything is made in a temporary folder per test session.
"""

from pathlib import Path

import pytest

from vitviz import train
from vitviz.training.synthetic import make_tiny_pet_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Folder that contains `oxford-iiit-pet/` (4 breeds, 4 labeled photos each per split, 64 px)."""
    root = tmp_path_factory.mktemp("data")
    make_tiny_pet_dataset(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data, tmp_path_factory) -> Path:
    """A run folder of the 'tiny' preset (32 px, patch 8, 2 blocks): 2 epochs, snapshots 1 and 2."""
    runs = tmp_path_factory.mktemp("runs")
    code = train.main(["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(runs),
                       "--name", "tiny", "--workers", "0", "--snapshot-epochs", "1", "2"])
    assert code == 0
    return runs / "tiny"


@pytest.fixture(scope="session")
def tiny_class_checkpoint(tiny_data, tmp_path_factory) -> Path:
    """Like `tiny_checkpoint` but with a class token and a breed head, sin2d positions."""
    runs = tmp_path_factory.mktemp("runs-cls")
    code = train.main(["--preset", "tiny", "--data-root", str(tiny_data), "--runs-dir", str(runs), "--name", "cls",
                       "--workers", "0", "--class-token", "true", "--pos-embed", "sin2d", "--epochs", "1"])
    assert code == 0
    return runs / "cls"
