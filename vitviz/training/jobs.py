"""Training jobs started from the app: check a request, start, watch, stop and resume a run.

A job is `python -m vitviz.train` in a process (and session) of its own, never inside the web
server. Everything about it lives in its run folder, so the app can be reloaded or restarted at any
time and finds its jobs again:

    runs/NAME/train.log      the job's output (every resume appends to it)
    runs/NAME/job.json       the pid of the process the app started last, the app that started it,
                             and whether Stop was pressed
    runs/NAME/progress.json  written by the trainer: state, epoch, step, images/s, ETA, device, pid
    runs/NAME/...            config, metrics, snapshots, val_masks: see vitviz.train

Whether a job is running is read from those pids and the live processes, not remembered. Only the
app that started a job may stop or resume it while that app runs; once it has ended, any app may.
A job is checked as a whole before it starts: the memory and disk it needs must be free.
"""

import json
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vitviz.app.i18n import text
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training.loop import pick_device
from vitviz.training import checkpoint as ckpt
from vitviz.training.data import PetDataset, resolve_root
from vitviz.training.presets import PRESETS, TrainConfig, preset

REPO = Path(__file__).resolve().parents[2]

# The form's fields, named as in ViTConfig / TrainConfig, with their label and allowed range.
MODEL_FIELDS = ("patch_size", "embed_dim", "depth", "num_heads", "pos_embed", "head")
TRAIN_FIELDS = ("epochs", "lr", "batch_size")
WHOLE_NUMBERS = {  # field: (label, lowest, highest)
    "patch_size": ("Patch size", 1, 512),
    "embed_dim": ("Width", 8, 2048),
    "depth": ("Depth", 1, 48),
    "num_heads": ("Heads", 1, 64),
    "epochs": ("Epochs", 1, 10_000),
    "batch_size": ("Batch size", 1, 4096),
}
LR_RANGE = (1e-6, 1.0)
MAX_PATCHES = 1024  # attention compares every patch with every other: beyond this it needs too much memory
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ALIVE = ("starting", "running", "stopping")  # the states of a live process
RESUMABLE = ("stopped", "crashed")
NO_DATA_ROOT = text("train.no_data_root")  # the Train tab shows it in the user's language
# Memory per parameter while training: fp32 weights, their gradients and Adam(W)'s two moments, 4 B each.
TRAINING_BYTES_PER_PARAMETER = 16
# Peak activation memory over what autograd saves: the backward pass adds the activations' gradients
# (1.3-1.65× on a CPU for the presets; tests/test_job_cost.py checks the estimate on a real step).
BACKWARD_PEAK = 1.7
TRAINER_OVERHEAD = 2**30  # the trainer's Python and PyTorch, its data-loading workers and decoded photos
# Disk per parameter: an fp16 snapshot; the final fp32 weights; the training state (fp32 weights and
# the two moments), twice while a new one is written next to the old one it replaces.
SNAPSHOT_BYTES, FINAL_BYTES, TRAIN_STATE_BYTES = 2, 4, 2 * 12


class JobError(ValueError):
    """A request the app refuses; the message is one line for the user."""


@dataclass(frozen=True)
class TrainRequest:
    """A checked request to start a run."""

    name: str
    preset: str
    model: ViTConfig
    train: TrainConfig
    data_root: Path

    def flags(self) -> list[str]:
        """The `python -m vitviz.train` arguments that start this run."""
        args = ["--preset", self.preset, "--name", self.name, "--data-root", str(self.data_root)]
        for config, names in ((self.model, MODEL_FIELDS), (self.train, TRAIN_FIELDS)):
            for field in names:
                args += ["--" + field.replace("_", "-"), str(getattr(config, field))]
        return args


@dataclass(frozen=True)
class RunStatus:
    """What a run folder says about its run, right now."""

    name: str
    folder: Path
    state: str  # "starting" | "running" | "stopping" | "stopped" | "finished" | "crashed"
    epochs_done: int
    epochs: int | None  # None until the trainer has written config.json
    step: int = 0  # within the epoch in progress
    steps: int = 0
    images_per_s: float | None = None
    eta_s: float | None = None
    device: str = ""
    pixel_accuracy: float | None = None  # of the last validated epoch
    miou: float | None = None
    updated: float = 0.0  # last change to the folder's progress or metrics, in seconds since the epoch

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


# --- checking the form --------------------------------------------------------------------------------

def form_defaults(preset_name: str) -> dict:
    """The form's values for a preset: its model and recipe fields."""
    model, train = preset(preset_name)
    return {f: getattr(model, f) for f in MODEL_FIELDS} | {f: getattr(train, f) for f in TRAIN_FIELDS}


def sanitise_run_name(text: str | None, runs_dir: str | os.PathLike, default: str) -> str:
    """A safe, unused folder name under `runs_dir`: `text` with its spaces turned into '-', or
    `default` when `text` is empty. Anything that could leave the folder ('..', '/') is refused."""
    name = re.sub(r"\s+", "-", (text or "").strip()) or default
    if not NAME_PATTERN.fullmatch(name):
        raise JobError(f"Run name {name!r} is not allowed: use up to 64 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit.")
    if (Path(runs_dir) / name).exists():
        raise JobError(f"A run named {name!r} already exists: choose another name, or select it and press Resume.")
    return name


def _whole_number(field: str, value) -> int:
    label, low, high = WHOLE_NUMBERS[field]
    if value is None or value == "":
        raise JobError(f"{label} is empty.")
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise JobError(f"{label} must be a whole number, got {value!r}.")
    if not low <= value <= high:
        raise JobError(f"{label} must be between {low} and {high}, got {int(value)}.")
    return int(value)


def _learning_rate(value) -> float:
    low, high = LR_RANGE
    if value is None or value == "":
        raise JobError("Learning rate is empty.")
    if not isinstance(value, (int, float)) or not low <= value <= high:
        raise JobError(f"Learning rate must be between {low:g} and {high:g}, got {value!r}.")
    return float(value)


def check_data_root(data_root: str | None, data_roots: Sequence[str | os.PathLike]) -> Path:
    """The dataset folder that the form's `data_root` leads to. The path is resolved (`..` and
    symlinks followed) and must lie inside one of `data_roots`, the folders the app was given
    (--data-root): a typed path never makes the trainer read anywhere else."""
    if not data_roots:
        raise JobError(NO_DATA_ROOT)
    if not data_root or not str(data_root).strip():
        raise JobError("Data root is empty: give the folder that holds oxford-iiit-pet/.")
    try:
        return ckpt.confine(resolve_root(ckpt.confine(str(data_root).strip(), data_roots)), data_roots)
    except (OSError, ValueError) as e:  # PathNotAllowed is a ValueError
        raise JobError(f"Data root: {e}.") from None


# --- what a job needs, and what the machine has -------------------------------------------------------

@dataclass(frozen=True)
class TrainingCost:
    """What training a model takes: its parameters, and the memory and disk it needs, in bytes."""

    parameters: int
    memory: int
    disk: int


def _saved_for_backward(model: SegmentationViT, photos: int) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of a forward pass on `photos` photos."""
    sizes = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        sizes.append(tensor.numel() * tensor.element_size())
        return tensor

    size = model.cfg.image_size
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(torch.empty(photos, model.cfg.in_channels, size, size, device="meta"))
    return sum(sizes)


def training_cost(model_cfg: ViTConfig, train: TrainConfig) -> TrainingCost:
    """What training `model_cfg` with the recipe `train` needs, estimated without allocating a weight:
    the model is built on the meta device, where tensors have shapes but no memory, and nothing is
    computed.

        parameters = those of the model built on the meta device
        memory     = 16 B × parameters               fp32 weights, gradients and Adam(W)'s two moments
                   + 1.7 × batch × activations      what autograd keeps for the backward pass per photo,
                                                    and the gradients the backward pass adds
                   + 1 GiB                          the trainer's Python, PyTorch and data loading
        disk       = (2 B × snapshots + 4 B + 2 × 12 B) × parameters
                     fp16 snapshots (the listed epochs and the last), the final fp32 weights, and the
                     training state (weights, two moments), twice while a new one replaces the old

    The activations per photo are measured, not guessed: the bytes autograd saves during one
    training-mode forward pass on the meta device for two photos, less those for one photo (which
    leaves out the weights that some layers save too). An encoder block saves about 18·D floats per
    token (LayerNorm inputs, q, k, v, the MLP's 4·D hidden layer before and after GELU, …) plus the
    heads · T² attention weights and their dropout mask; conv stems and the skip decoder add their
    feature maps. All in fp32: on a GPU, where training runs in bf16 autocast, this is an upper bound."""
    model = ckpt.meta_model(model_cfg).train()
    per_photo = _saved_for_backward(model, 2) - _saved_for_backward(model, 1)
    parameters = model.num_params()
    snapshots = len({epoch for epoch in train.snapshot_epochs if epoch <= train.epochs} | {train.epochs})
    memory = (TRAINING_BYTES_PER_PARAMETER * parameters + round(BACKWARD_PEAK * train.batch_size * per_photo)
              + TRAINER_OVERHEAD)
    return TrainingCost(parameters, memory, (SNAPSHOT_BYTES * snapshots + FINAL_BYTES + TRAIN_STATE_BYTES) * parameters)


def available_ram() -> int:
    """Bytes of memory a new process can still get: MemAvailable in /proc/meminfo, else all of it."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# Where a job's tensors live, by device type: (its free bytes now, its name in a message). Anywhere
# else (the CPU, or a Mac's GPU, which shares the machine's memory) they live in the machine's RAM.
FREE_MEMORY = {"cuda": (lambda device: torch.cuda.mem_get_info(device)[0], "the GPU")}
MACHINE_MEMORY = (lambda device: available_ram(), "this machine")


def _size(size: int) -> str:
    """36.1 GiB, 48.0 MiB."""
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


COUNT_UNITS = ((1e9, "B", 2), (1e6, "M", 2), (1e3, "k", 1))  # (scale, suffix, decimals)


def _count(n: int) -> str:
    """2.42B, 3.14M, 998.8k, 512."""
    return next((f"{n / scale:.{digits}f}{unit}" for scale, unit, digits in COUNT_UNITS if n >= scale), str(n))


def check_fits(model: ViTConfig, train: TrainConfig, runs_dir: str | os.PathLike,
               device: torch.device | None = None) -> TrainingCost:
    """The job's `training_cost`, or a `JobError` when it needs more memory (on `device`, by default
    where a job would train) or more disk (where `runs_dir` is) than is free now. Every field of the
    form can be within its range and their product still far too large for the machine."""
    cost, device = training_cost(model, train), device or pick_device()
    free_memory, place = FREE_MEMORY.get(device.type, MACHINE_MEMORY)
    if cost.memory > (free := free_memory(device)):
        raise JobError(f"This model needs about {_size(cost.memory)} to train ({_count(cost.parameters)} parameters, "
                       f"batch {train.batch_size}); {place} has {_size(free)} free: make it narrower or shallower, "
                       "or the batch smaller.")
    folder = Path(runs_dir).resolve()
    folder = next(p for p in (folder, *folder.parents) if p.exists())  # the runs folder may not exist yet
    if cost.disk > (free := shutil.disk_usage(folder).free):
        raise JobError(f"This run's snapshots and training state need about {_size(cost.disk)} on disk "
                       f"({_count(cost.parameters)} parameters); {folder} has {_size(free)} free: "
                       "make the model smaller, or free some disk.")
    return cost


def check_request(runs_dir: str | os.PathLike, preset_name: str, name: str | None, data_root: str | None,
                  values: dict, data_roots: Sequence[str | os.PathLike]) -> TrainRequest:
    """The form's values → a `TrainRequest`, or a `JobError` that says what to fix.
    `values` holds every field of MODEL_FIELDS and TRAIN_FIELDS; the data root must lie inside
    one of `data_roots` (see `check_data_root`)."""
    if preset_name not in PRESETS:
        raise JobError(f"Unknown preset {preset_name!r}: choose one of {', '.join(PRESETS)}.")
    numbers = {f: _whole_number(f, values.get(f)) for f in WHOLE_NUMBERS}
    lr = _learning_rate(values.get("lr"))
    image_size = preset(preset_name)[0].image_size
    patch = numbers["patch_size"]
    if image_size % patch:
        fitting = ", ".join(str(p) for p in range(1, image_size + 1) if image_size % p == 0)
        raise JobError(f"Patch size {patch} does not divide the {image_size} px images of preset "
                       f"{preset_name!r}: choose one of {fitting}.")
    if (image_size // patch) ** 2 > MAX_PATCHES:
        raise JobError(f"Patch size {patch} cuts a {image_size} px image into {(image_size // patch) ** 2} patches; "
                       f"attention over more than {MAX_PATCHES} needs too much memory: use a larger patch.")
    pos_embed, head = values.get("pos_embed"), values.get("head")
    warmup = PRESETS[preset_name][1].get("warmup_epochs", 0)
    if numbers["epochs"] <= warmup:
        raise JobError(f"Preset {preset_name!r} warms the learning rate up for {warmup:g} epochs: train for more than that.")
    model_values = {f: numbers[f] for f in ("patch_size", "embed_dim", "depth", "num_heads")}
    try:  # the model's own checks: width and heads, the head, the position embedding and the width it needs
        model, train = preset(preset_name, {**model_values, "pos_embed": pos_embed, "head": head},
                              {"epochs": numbers["epochs"], "batch_size": numbers["batch_size"], "lr": lr})
    except ValueError as e:
        raise JobError(f"{str(e)[0].upper()}{str(e)[1:]}.") from None
    check_fits(model, train, runs_dir)
    root = check_data_root(data_root, data_roots)
    try:
        photos = len(PetDataset(root, "trainval", model.image_size, segmentation=not train.use_unlabeled,
                                fraction=train.label_fraction))
    except (OSError, ValueError) as e:
        raise JobError(f"Data root: {e}.") from None
    if train.batch_size > photos:
        raise JobError(f"Batch size {train.batch_size} is larger than the {photos} labeled training photos "
                       f"under {root}: one epoch would have no full batch.")
    default_name = f"{preset_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return TrainRequest(sanitise_run_name(name, runs_dir, default_name), preset_name, model, train, root)


# --- reading a run folder -----------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    """The JSON object in `path`, or {} when there is none (every writer replaces files atomically)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def pid_exists(pid: int) -> bool:
    """Whether some process has this pid (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, but another user's
    return True


def process_alive(pid: int | None) -> bool:
    """Whether `pid` is a live training process (not a finished one, nor a later process that got
    the same pid: where /proc exists its command line must name vitviz.train)."""
    if not pid or not pid_exists(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            return b"vitviz.train" in cmdline.read_bytes()  # empty for a zombie
        except OSError:
            return False
    return True


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, from /proc), or None where that cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def app_alive(app: dict) -> bool:
    """Whether the app recorded in a job.json (`JobManager.app`) still runs: its pid is alive and,
    where /proc exists, started when recorded (it is not a later process that got the same pid)."""
    pid = app.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not pid_exists(pid):
        return False
    return process_start(pid) == app.get("started")


def log_tail(folder: str | os.PathLike, lines: int = 15) -> str:
    """The last `lines` lines of the run's train.log, progress-bar redraws (\\r) collapsed."""
    path = Path(folder) / "train.log"
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 32_000))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    shown = []
    for line in text.split("\n"):
        redraws = [part.rstrip() for part in line.split("\r") if part.strip()]
        if redraws:
            shown.append(redraws[-1])
    return "\n".join(shown[-lines:])


def read_status(folder: str | os.PathLike, alive=process_alive) -> RunStatus:
    """The run's state from its files; `alive(pid)` says whether a process still runs."""
    folder = Path(folder)
    progress, job = _read_json(folder / "progress.json"), _read_json(folder / "job.json")
    config = _read_json(folder / "config.json")
    metrics = ckpt.read_metrics(folder)
    pid = job.get("pid") or progress.get("pid")
    current = progress if progress.get("pid") == pid else {}  # an older process's progress is history
    if alive(pid):
        finishing = job.get("stop_requested") or current.get("state") in ("stopped", "finished")
        state = "stopping" if finishing else current.get("state", "starting")
    elif current.get("state") in ("stopped", "finished"):
        state = current["state"]
    elif pid and job.get("stop_requested"):
        state = "stopped"  # stopped before training began
    elif pid:
        state = "crashed"  # died while starting or running
    else:
        state = "finished" if (folder / "model.safetensors").is_file() else "stopped"
    validated = [row for row in metrics.values() if "pixel_accuracy" in row]
    running = state == "running"
    updated = max((p.stat().st_mtime for p in (folder / "progress.json", folder / "metrics.jsonl", folder / "job.json")
                   if p.is_file()), default=0.0)
    return RunStatus(
        name=folder.name, folder=folder, state=state, epochs_done=len(metrics),
        epochs=config.get("train", {}).get("epochs") or progress.get("epochs"),
        step=current.get("step", 0) if running else 0, steps=current.get("steps", 0) if running else 0,
        images_per_s=current.get("images_per_s") if running else None, eta_s=current.get("eta_s") if running else None,
        device=progress.get("device", ""), pixel_accuracy=validated[-1]["pixel_accuracy"] if validated else None,
        miou=validated[-1]["miou"] if validated else None, updated=updated)


# --- starting and stopping --------------------------------------------------------------------------------

class JobManager:
    """Starts, stops and resumes the training jobs of one runs folder, at most `max_jobs` at a time
    (jobs started elsewhere, e.g. from a terminal, count too). Jobs that another app started may be
    watched but not stopped or resumed while that app runs (two apps may share a runs folder)."""

    def __init__(self, runs_dir: str | os.PathLike = "runs", max_jobs: int = 1, workers: int = 2,
                 threads: int | None = None):
        self.runs_dir = Path(runs_dir).resolve()
        self.max_jobs = max_jobs
        self.workers = workers  # DataLoader worker processes of each job
        self.threads = threads or max(1, (os.cpu_count() or 2) - 1)  # on a CPU, leave a core for the app
        self._lock = threading.Lock()  # one start / stop / resume at a time across browser sessions
        self._children: dict[int, subprocess.Popen] = {}  # jobs this app started, to collect their exit
        # This app, as written into the job.json of every job it starts; the id tells apart two
        # managers in one process, the pid and its start time whether the app still runs.
        self.app = {"id": secrets.token_hex(8), "pid": os.getpid(), "started": process_start(os.getpid())}

    def alive(self, pid: int | None) -> bool:
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None  # also collects a finished child, which is then gone
        return process_alive(pid)

    def folder(self, name: str) -> Path:
        """The folder of an existing run `name` (a name from `runs()`; anything else is refused)."""
        folder = self.runs_dir / (name or "")
        if not name or not NAME_PATTERN.fullmatch(name) or not folder.is_dir():
            raise JobError(f"There is no run named {name!r} under {self.runs_dir}.")
        return folder

    def other_app(self, folder: Path) -> int | None:
        """The pid of the other app that started the run in `folder` and still runs: only that app
        may stop or resume the run. None when this app started it, no app did (a terminal), or that
        app has ended."""
        app = _read_json(folder / "job.json").get("app")
        if not isinstance(app, dict) or app.get("id") == self.app["id"] or not app_alive(app):
            return None
        return app["pid"]

    def status(self, name: str) -> RunStatus:
        return read_status(self.folder(name), self.alive)

    def runs(self) -> list[RunStatus]:
        """Every run under the runs folder, the most recently active first."""
        if not self.runs_dir.is_dir():
            return []
        folders = [p for p in self.runs_dir.iterdir()
                   if NAME_PATTERN.fullmatch(p.name) and ((p / "config.json").is_file() or (p / "job.json").is_file())]
        return sorted((read_status(p, self.alive) for p in folders), key=lambda s: (-s.updated, s.name))

    def active(self) -> list[RunStatus]:
        return [s for s in self.runs() if s.alive]

    def start(self, request: TrainRequest) -> RunStatus:
        with self._lock:
            self._refuse_when_busy()
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            folder = self.runs_dir / request.name
            try:
                folder.mkdir()  # claims the name: of two starts with one name, only one gets here
            except FileExistsError:
                raise JobError(f"A run named {request.name!r} already exists: choose another name.") from None
            self._launch(folder, [*request.flags(), "--runs-dir", str(self.runs_dir)])
            return self.status(request.name)

    def resume(self, name: str) -> RunStatus:
        with self._lock:
            status = self.status(name)
            self._refuse_other_apps_run(status.folder)
            if status.alive:
                raise JobError(f"Run {name!r} is already {status.state}.")
            if status.state == "finished":
                raise JobError(f"Run {name!r} has finished all its {status.epochs} epochs: start a new run to train more.")
            if not (status.folder / "config.json").is_file():
                raise JobError(f"Run {name!r} never got past its start (see its log): start a new run instead.")
            self._refuse_when_busy()
            self._launch(status.folder, ["--resume", str(status.folder)])
            return self.status(name)

    def stop(self, name: str) -> RunStatus:
        """Ask the job to stop after its current step (SIGTERM); it keeps its last finished epoch."""
        with self._lock:
            folder = self.folder(name)
            self._refuse_other_apps_run(folder)
            job = _read_json(folder / "job.json")
            pid = job.get("pid") or _read_json(folder / "progress.json").get("pid")
            if not self.alive(pid):
                raise JobError(f"Run {name!r} is not running.")
            if job.get("pid") == pid:
                ckpt.atomic_write_json(folder / "job.json", {**job, "stop_requested": True})
            os.kill(pid, signal.SIGTERM)
            return self.status(name)

    def _refuse_other_apps_run(self, folder: Path) -> None:
        if pid := self.other_app(folder):
            raise JobError(f"Run {folder.name!r} was started by another vitviz app (pid {pid}), which still runs: "
                           "only that app can stop or resume it.")

    def _refuse_when_busy(self) -> None:
        active = self.active()
        if len(active) >= self.max_jobs:
            names = ", ".join(f"{s.name!r}" for s in active)
            raise JobError(f"Only {self.max_jobs} training job at a time: {names} is still {active[0].state}. "
                           "Stop it first, or wait for it to finish.")

    def _launch(self, folder: Path, args: list[str]) -> None:
        command = [sys.executable, "-m", "vitviz.train", *args, "--workers", str(self.workers),
                   "--threads", str(self.threads)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log shows each line as it is printed
        with open(folder / "train.log", "ab") as log:
            log.write(f"\n$ python {shlex.join(command[1:])}\n".encode())
            log.flush()
            child = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        self._children[child.pid] = child
        ckpt.atomic_write_json(folder / "job.json", {"pid": child.pid, "started": time.time(), "command": command[1:],
                                                     "app": self.app})
