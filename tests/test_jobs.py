"""Training jobs without a browser: checking the form, run names, start / watch / stop / resume of
a real tiny run, a job that crashes, and SIGKILL at random moments never corrupting a run folder."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open

from vitviz.training import checkpoint as ckpt, jobs
from vitviz.training.jobs import JobError, JobManager
from vitviz.training.presets import PRESETS
from vitviz.views.epochs import read_metrics
from vitviz.views.train import curves_figure, mask_progression, mask_strips, progress_html, runs_table, status_markdown


def tiny_form(**changes) -> dict:
    return {**jobs.form_defaults("tiny"), **changes}


def request(runs: Path, data: Path, name: str, epochs: int = 10_000) -> jobs.TrainRequest:
    return jobs.check_request(runs, "tiny", name, str(data), tiny_form(epochs=epochs), [data])


def wait_for(condition, what: str, timeout: float = 60):
    deadline = time.time() + timeout
    while not (result := condition()):
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return result


def job_pid(folder: Path) -> int:
    return json.loads((folder / "job.json").read_text())["pid"]


def training(folder: Path) -> bool:
    """The job the app started last has written its own progress: it is past its start."""
    try:
        progress = json.loads((folder / "progress.json").read_text())
    except FileNotFoundError:
        return False
    return progress["pid"] == job_pid(folder) and progress["state"] == "running"


def epochs_in(folder: Path) -> int:
    path = folder / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture
def manager(tmp_path):
    """A job manager on a fresh runs folder; every job it started is killed at the end."""
    m = JobManager(tmp_path / "runs", workers=0, threads=1)
    yield m
    for child in m._children.values():
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("changes, message", [
    ({"patch_size": 7}, "Patch size 7 does not divide the 32 px images of preset 'tiny': choose one of 1, 2, 4, 8, 16, 32"),
    ({"embed_dim": 30, "num_heads": 4}, "Width 30 (embed_dim) is not divisible by 4 heads"),
    ({"embed_dim": 34, "pos_embed": "sin2d"}, "sin2d position embeddings need a width divisible by 4"),
    ({"pos_embed": "spiral"}, "Unknown position embedding 'spiral'"),
    ({"head": "conv"}, "Head must be 'linear', 'mlp', 'skip' or 'skip_full', got 'conv'"),
    ({"depth": None}, "Depth is empty"),
    ({"depth": 2.5}, "Depth must be a whole number"),
    ({"num_heads": 0}, "Heads must be between 1 and 64, got 0"),
    ({"epochs": 0}, "Epochs must be between 1 and 10000"),
    ({"lr": 0}, "Learning rate must be between 1e-06 and 1, got 0"),
    ({"lr": None}, "Learning rate is empty"),
    ({"batch_size": 17}, "Batch size 17 is larger than the 16 labeled training photos"),
])
def test_every_bad_form_value_gets_a_one_line_message(tiny_data, tmp_path, changes, message):
    with pytest.raises(JobError) as error:
        jobs.check_request(tmp_path, "tiny", "run", str(tiny_data), tiny_form(**changes), [tiny_data])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_preset_data_root_and_warmup_are_checked(tiny_data, tmp_path):
    roots = [tiny_data, tmp_path]  # the folders the app was given as data roots
    with pytest.raises(JobError, match="Unknown preset 'huge'"):
        jobs.check_request(tmp_path, "huge", "run", str(tiny_data), tiny_form(), roots)
    with pytest.raises(JobError, match="Data root is empty"):
        jobs.check_request(tmp_path, "tiny", "run", "  ", tiny_form(), roots)
    with pytest.raises(JobError, match="Data root: no Oxford-IIIT Pet dataset"):
        jobs.check_request(tmp_path, "tiny", "run", str(tmp_path), tiny_form(), roots)
    fine_patches = {**jobs.form_defaults("seed-small"), "patch_size": 2}
    with pytest.raises(JobError, match="into 4096 patches; attention over more than 1024"):
        jobs.check_request(tmp_path, "seed-small", "run", str(tiny_data), fine_patches, roots)
    warmup = PRESETS["default"][1]["warmup_epochs"]
    default = {**jobs.form_defaults("default"), "epochs": int(warmup)}
    with pytest.raises(JobError, match=f"warms the learning rate up for {warmup:g} epochs"):
        jobs.check_request(tmp_path, "default", "run", str(tiny_data), default, roots)
    ok = jobs.check_request(tmp_path, "tiny", " my first run ", str(tiny_data), tiny_form(embed_dim=48, num_heads=3),
                            roots)
    assert ok.name == "my-first-run" and ok.model.embed_dim == 48 and ok.model.num_heads == 3
    assert ok.flags()[ok.flags().index("--embed-dim") + 1] == "48"


def test_the_data_root_must_lie_inside_the_apps_data_root(tiny_data, tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    shutil.copytree(tiny_data, allowed / "pets")  # a subfolder of the app's data root
    shutil.copytree(tiny_data, outside)  # a dataset too, but not one the app was given
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    (allowed / "linked").mkdir()  # inside, but its oxford-iiit-pet/ leads outside
    (allowed / "linked" / "oxford-iiit-pet").symlink_to(outside / "oxford-iiit-pet", target_is_directory=True)

    def check(data_root, data_roots=(allowed,)) -> jobs.TrainRequest:
        return jobs.check_request(tmp_path / "runs", "tiny", "run", str(data_root), tiny_form(), list(data_roots))

    dataset = (allowed / "pets" / "oxford-iiit-pet").resolve()
    assert check(allowed / "pets").data_root == dataset
    assert check(allowed / "pets" / "oxford-iiit-pet").data_root == dataset
    assert check(f"{allowed}/pets/../pets").data_root == dataset  # `..` that stays inside is fine
    for bad in (outside, allowed / "escape", allowed / "linked", f"{allowed}/pets/../../outside", "/etc", tmp_path):
        with pytest.raises(JobError) as error:
            check(bad)
        assert "is outside the folders this app may read" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(JobError) as error:
        check(allowed / "pets", data_roots=())  # the app was started without --data-root
    assert str(error.value) == jobs.NO_DATA_ROOT and "--data-root" in jobs.NO_DATA_ROOT


def test_run_names_are_sanitised(tmp_path):
    (tmp_path / "taken").mkdir()
    for bad in ("../x", "a/b", "..", ".hidden", "x" * 65, "/etc", "a\\b"):
        with pytest.raises(JobError, match="is not allowed"):
            jobs.sanitise_run_name(bad, tmp_path, "default-name")
    with pytest.raises(JobError, match="already exists"):
        jobs.sanitise_run_name("taken", tmp_path, "default-name")
    assert jobs.sanitise_run_name("", tmp_path, "tiny-20260101-120000") == "tiny-20260101-120000"
    assert jobs.sanitise_run_name(None, tmp_path, "d") == "d"
    assert jobs.sanitise_run_name("  lr 1e-3 ", tmp_path, "d") == "lr-1e-3"
    with pytest.raises(JobError, match="no run named"):
        JobManager(tmp_path).folder("../taken")


def test_start_watch_stop_and_resume_a_real_run(tiny_data, tmp_path, manager):
    folder = manager.start(request(manager.runs_dir, tiny_data, "first")).folder
    assert folder == manager.runs_dir / "first"
    assert manager.status("first").state in ("starting", "running")
    with pytest.raises(JobError, match="Only 1 training job at a time: 'first' is still"):
        manager.start(request(manager.runs_dir, tiny_data, "second"))
    wait_for(lambda: epochs_in(folder) >= 2 and training(folder), "two epochs")

    # An app restart knows nothing in memory: the folder and the live process say it runs.
    restarted = JobManager(manager.runs_dir)
    status = restarted.status("first")
    assert status.state == "running" and status.device and status.epochs == 10_000
    assert [s.name for s in restarted.active()] == ["first"]

    manager.stop("first")
    stopped = wait_for(lambda: (s := manager.status("first")).state == "stopped" and s, "the stop")
    done = stopped.epochs_done
    assert done >= 2 and json.loads((folder / "progress.json").read_text())["epoch"] == done
    with pytest.raises(JobError, match="is not running"):
        manager.stop("first")

    # What the Train view shows for it.
    strips = mask_strips(folder)
    assert strips[0][1] == "the true masks" and [c for _, c in strips[1:3]] == ["epoch 1", "epoch 2"]
    assert len(strips) <= 13 and strips[1][0].shape[1] == 6 * 96  # six photos, 32 px enlarged ×3
    picture = mask_progression(strips)  # one under another, each under its caption
    assert picture.shape[1] == 6 * 96 and picture.shape[0] > sum(strip.shape[0] for strip, _ in strips)
    figure = curves_figure(read_metrics(folder))
    assert len(figure.data) == 4 and len(figure.data[0].x) == done
    assert "■ **first** is **stopped**" in status_markdown(stopped) and f'value="{done}"' in progress_html(stopped)
    assert runs_table([stopped])[0][:3] == ["first", "■ stopped", f"{done}/10000"]

    manager.resume("first")
    with pytest.raises(JobError, match="already"):
        manager.resume("first")
    wait_for(lambda: training(folder) and epochs_in(folder) > done, "the resumed run's next epoch")
    manager.stop("first")
    wait_for(lambda: manager.status("first").state == "stopped", "the second stop")
    log = jobs.log_tail(folder, 200)
    assert f"resuming {folder} after epoch {done}" in log and log.count("$ python -m vitviz.train") == 2
    assert "\r" not in log


def test_only_the_app_that_started_a_job_may_stop_or_resume_it_while_that_app_runs(tiny_data, manager):
    other = JobManager(manager.runs_dir, workers=0, threads=1)  # a second app on the same runs folder
    folder = manager.start(request(manager.runs_dir, tiny_data, "mine")).folder
    try:
        wait_for(lambda: training(folder), "the job to train")
        assert [s.name for s in other.runs()] == ["mine"] and other.status("mine").alive  # it may watch
        assert other.other_app(folder) == os.getpid() and manager.other_app(folder) is None
        for refused in (other.stop, other.resume):
            with pytest.raises(JobError, match=rf"'mine' was started by another vitviz app \(pid {os.getpid()}\), "
                                               "which still runs: only that app can stop or resume it"):
                refused("mine")
        assert training(folder) and not json.loads((folder / "job.json").read_text()).get("stop_requested")
        manager.stop("mine")
        wait_for(lambda: manager.status("mine").state == "stopped", "the stop")
        with pytest.raises(JobError, match="started by another vitviz app"):
            other.resume("mine")

        # The app that started it has ended (its pid is gone, or now belongs to a later process): any app may resume.
        assert jobs.app_alive(manager.app) and not jobs.app_alive({**manager.app, "started": "0"})
        ended = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                   text=True, check=True).stdout)
        job = json.loads((folder / "job.json").read_text())
        ckpt.atomic_write_json(folder / "job.json", {**job, "app": {**job["app"], "pid": ended}})
        assert other.other_app(folder) is None
        other.resume("mine")  # and it is now the resumed job's app
        assert manager.other_app(folder) == os.getpid()
        with pytest.raises(JobError, match="started by another vitviz app"):
            manager.stop("mine")
        other.stop("mine")
        wait_for(lambda: other.status("mine").state == "stopped", "the second stop")
    finally:
        for child in other._children.values():
            child.kill()
            child.wait()


def test_a_job_that_dies_shows_crashed_with_its_error(tiny_data, tmp_path, manager):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    checked = request(manager.runs_dir, data, "doomed")
    shutil.rmtree(data)  # the dataset disappears between the check and the start
    manager.start(checked)
    status = wait_for(lambda: (s := manager.status("doomed")).state == "crashed" and s, "the crash")
    assert "no Oxford-IIIT Pet dataset" in status_markdown(status)
    with pytest.raises(JobError, match="never got past its start"):
        manager.resume("doomed")


def test_sigkill_at_random_moments_loses_at_most_the_current_epoch(tiny_data, manager):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    folder = manager.start(request(manager.runs_dir, tiny_data, "killed")).folder
    for kill in range(4):
        wait_for(lambda: training(folder), f"the job to train (seed {seed}, kill {kill})")
        time.sleep(rng.uniform(0, 1.5))
        before = epochs_in(folder)  # rows of finished epochs the moment before the kill
        os.kill(job_pid(folder), signal.SIGKILL)
        status = wait_for(lambda: (s := manager.status("killed")).state == "crashed" and s, "the crash to show")
        saved = saved_epoch(folder)
        assert saved >= before - 1, f"seed {seed}: {before} epochs were written, the state kept only {saved}"
        assert_run_folder_is_whole(folder, saved)
        assert status.epochs_done in (saved, saved + 1)
        (folder / ".metrics.jsonl.left-by-a-kill.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves
        manager.resume("killed")
    wait_for(lambda: training(folder), "the last resume")
    manager.stop("killed")
    wait_for(lambda: manager.status("killed").state == "stopped", "the stop")
    assert_run_folder_is_whole(folder, epochs_in(folder))
    assert not list(folder.rglob("*.tmp")), "a resume removes what a killed write left behind"


def saved_epoch(folder: Path) -> int:
    """The last epoch in the training state (what a resume starts after); 0 before the first."""
    if not (folder / "train_state.safetensors").is_file():
        return 0
    with safe_open(folder / "train_state.safetensors", "pt") as f:
        return int(f.metadata()["epoch"])


def assert_run_folder_is_whole(folder: Path, saved: int) -> None:
    """Every file the trainer wrote reads back whole: metrics line by line with consecutive
    epochs (at most one ahead of the training state), the state, each snapshot and mask strip."""
    lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").is_file() else []
    epochs = [json.loads(line)["epoch"] for line in lines]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) in (saved, saved + 1)
    if saved:
        assert len(ckpt.read_weights(folder)) > 0  # from train_state.safetensors
    for epoch in ckpt.list_snapshots(folder):
        ckpt.load_model(folder, epoch)
    for strip in (folder / "val_masks").glob("*.png"):
        with Image.open(strip) as im:
            im.load()
    json.loads((folder / "progress.json").read_text())
    json.loads((folder / "config.json").read_text())
