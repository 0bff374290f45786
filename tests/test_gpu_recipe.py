"""The prepared command for a lent GPU (scripts/gpu_recipe.sh), run here on the generated data set
with the tiny preset: it packs the trainval photos only, and runs every stage of the recipe into
one checkpoint whose history names them all."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recipe(*args: str, env: dict) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "gpu_recipe.sh"), *args], env={**os.environ, **env}, check=True,
                   timeout=300, capture_output=True)


def test_the_gpu_recipe_packs_trainval_photos_only_and_runs_every_stage(tiny_data, tiny_checkpoint, tmp_path):
    env = {"PACK": str(tmp_path / "pack"), "RUNS": str(tmp_path / "runs"), "TEACHER": str(tiny_checkpoint),
           "PRESET": "tiny", "STUDENT_S": "1", "BENCH": "0", "PYTHON": sys.executable, "THREADS": "1"}
    recipe("pack", str(tiny_data), env=env)
    source, packed = tiny_data / "oxford-iiit-pet", tmp_path / "pack" / "oxford-iiit-pet"
    trainval = {line.split()[0] for line in (source / "annotations" / "trainval.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {p.stem for p in (packed / "images").iterdir()} == trainval  # no test photo travels
    assert {p.stem for p in (packed / "annotations" / "trimaps").iterdir()} == \
        {p.stem for p in (source / "annotations" / "trimaps").iterdir()} & trainval

    recipe("run", str(tmp_path / "out"), env=env)
    with tarfile.open(tmp_path / "out" / "gpu-student.tar") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    shipped = tmp_path / "back" / "gpu-student-shipped"
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["teacher", "pseudo-labels", "student", "continued"]
    assert metrics["stages"][1]["soft"] and "--soft" in metrics["stages"][1]["command"]
    assert (shipped / "model.safetensors").is_file() and "recipe done" in (tmp_path / "out" / "gpu-recipe.log").read_text()
