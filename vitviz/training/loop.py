"""The training loop behind `python -m vitviz.train` (the command line is in `vitviz/train.py`):
devices, optimizer and schedule, the loss, validation, and the run folder.

The run folder is the source of truth. After every epoch it holds, each file written atomically:
the training state (weights, optimizer, scheduler, history) in one safetensors file, the metrics
curve, the predicted masks of a few validation photos (val_masks/epoch_NNN.png) and, at chosen
epochs, a weight snapshot. Resuming continues exactly where the last finished epoch left off,
even after a crash or SIGKILL; SIGINT/SIGTERM stop after the current step, keeping that epoch. Runs
unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel; gloo on CPU, nccl on GPU).
"""

import io
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training import checkpoint as ckpt
from vitviz.training.data import IGNORE, SPECIES, TRAINING_SPLIT, PetDataset, breed_names, resolve_root
from vitviz.training.losses import LOSSES, TARGET_LOSSES, target_distribution
from vitviz.training.metrics import confusion, summarize
from vitviz.training.predict import as_list, mask_probabilities
from vitviz.training.pseudo_labels import check_pseudo_labels
from vitviz.training.presets import TrainConfig
from vitviz.training.resident import ResidentSet, paste_small
from vitviz.views.segment import overlay_mask

VAL_MASK_TILE = 96  # the smallest size in pixels of one photo in the val_masks pictures


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({torch.get_num_threads()} threads)"


def lr_factor(cfg: TrainConfig, epochs_done: float) -> float:
    """Learning-rate multiplier after `epochs_done` (fractional) epochs."""
    if cfg.schedule == "step":
        return cfg.gamma ** int(epochs_done // cfg.step_size)
    if epochs_done < cfg.warmup_epochs:
        return (epochs_done + 1e-3) / cfg.warmup_epochs
    t = (epochs_done - cfg.warmup_epochs) / max(1e-9, cfg.epochs - cfg.warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # AdamW: no decay on biases, norms, embeddings and tokens (1-D or position tables).
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos_embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos_embed" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def num_classes_for(cfg: TrainConfig, root: Path) -> int:
    return len(SPECIES) if cfg.class_labels == "species" else len(breed_names(root))


COMMIT_VAR = "VITVIZ_COMMIT"  # the commit, for a copy of the code without its git history (a lent GPU's)


def git_commit() -> str:
    """The commit the code runs from ("-dirty" with uncommitted changes), else $VITVIZ_COMMIT, else "unknown"."""
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get(COMMIT_VAR) or "unknown"


# --- training state: one atomic safetensors file --------------------------------------------------

def save_train_state(run: Path, model, optimizer, scheduler, epoch: int, history: list[dict]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    meta = {"epoch": str(epoch), "param_groups": json.dumps(opt["param_groups"]),
            "scheduler": json.dumps(scheduler.state_dict()), "history": json.dumps(history)}
    ckpt.atomic_save_tensors(run / "train_state.safetensors", tensors, meta)


def load_train_state(run: Path, model, optimizer, scheduler) -> tuple[int, list[dict]]:
    path = run / "train_state.safetensors"
    if not path.is_file():
        return 0, []
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    scheduler.load_state_dict(json.loads(meta["scheduler"]))
    return int(meta["epoch"]), json.loads(meta["history"])


# --- one epoch -----------------------------------------------------------------------------------

def segmentation_loss(model_out, masks, labels, cfg: TrainConfig, soft: torch.Tensor | None = None) -> torch.Tensor:
    """The mask loss (`cfg.loss`) on the labeled pixels, against soft targets too when a teacher's
    probabilities stand for the photos without a trimap, plus the class token's loss if any."""
    loss = torch.zeros((), device=masks.device)
    logits = model_out.mask_logits.float()
    if soft is not None:
        loss = TARGET_LOSSES[cfg.loss](logits, target_distribution(masks, logits.shape[1], soft))
    elif (masks != IGNORE).any():
        loss = LOSSES[cfg.loss](logits, masks)
    if model_out.class_logits is not None:
        loss = loss + cfg.class_loss_weight * F.cross_entropy(model_out.class_logits.float(), labels)
    return loss


@torch.no_grad()
def evaluate_model(model: SegmentationViT | list[SegmentationViT], loader: DataLoader, device: torch.device,
                   flip: bool = False, scales: Sequence[float] = (1.0,)) -> dict:
    """Loss (cross-entropy) and segmentation metrics over a loader, deterministic (eval mode, no
    augmentation); `flip` averages each photo's probabilities with its mirror image's, `scales`
    over the photo resized, a list of models over an ensemble (`predict.mask_probabilities`)."""
    for one in as_list(model):
        one.eval()
    conf = torch.zeros(3, 3, dtype=torch.long)
    loss_sum, pixels = 0.0, 0
    for images, masks, *_ in loader:
        images, masks = images.to(device), masks.to(device)
        probs = mask_probabilities(model, images, flip, scales)
        n = (masks != IGNORE).sum().item()
        loss_sum += F.nll_loss(probs.clamp(min=1e-12).log(), masks, ignore_index=IGNORE, reduction="sum").item()
        pixels += n
        conf += confusion(probs.argmax(1), masks)
    return {"loss": loss_sum / max(1, pixels), **summarize(conf)}


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class StopRequested:
    """SIGINT/SIGTERM set a flag; the loop checks it after each step and stops cleanly."""

    def __init__(self):
        self.requested = False
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.requested = True


def iterate_with_workers(loader: DataLoader):
    """Start the loader's worker processes with the stop signals blocked. A Ctrl-C or a job stop
    reaches the whole process group; a worker inherits the block, ignores the signals in
    `ignore_stop_signals` and only then unblocks, so no worker can die half-started and crash
    the run. The main process unblocks at once and handles them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def ignore_stop_signals(worker_id: int) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@torch.no_grad()
def save_val_masks(run: Path, model: SegmentationViT, val_set: PetDataset, device: torch.device, epoch: int,
                   count: int) -> None:
    """The predicted masks of the first `count` validation photos, over the photos, side by side in
    one PNG, val_masks/epoch_NNN.png: the article's blocky-mask GIF, one frame per epoch. The
    true masks go once to val_masks/truth.png."""
    images, masks = zip(*(val_set[i][:2] for i in range(min(count, len(val_set)))))
    images = torch.stack(images)
    model.eval()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        predicted = model(images.to(device)).mask_logits.argmax(1).cpu()
    photos = (images.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    zoom = max(1, math.ceil(VAL_MASK_TILE / photos.shape[1]))  # small inputs are enlarged, pixels kept sharp

    def strip(labels) -> bytes:
        tiles = [overlay_mask(photo, label.numpy(), 0.55) for photo, label in zip(photos, labels)]
        picture = np.concatenate(tiles, axis=1).repeat(zoom, axis=0).repeat(zoom, axis=1)
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        return buffer.getvalue()

    folder = run / "val_masks"
    if not (folder / "truth.png").is_file():
        # Pixels without a label (none in the official trimaps) are drawn as background.
        ckpt.atomic_write_bytes(folder / "truth.png", strip(m.clamp(min=0) for m in masks))
    ckpt.atomic_write_bytes(folder / f"epoch_{epoch:03d}.png", strip(predicted))


def write_progress(run: Path, **fields) -> None:
    ckpt.atomic_write_json(run / "progress.json", {**fields, "pid": os.getpid(), "updated": time.time()})


# --- the run ---------------------------------------------------------------------------------------

def warm_start(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Copy `weights` into `model` wherever name and shape match, and return the names of the
    model's weights left as initialised: a model with a new part (another head) starts from one
    trained without it. Weights the model has no place for are refused, so a wrong folder fails."""
    own = model.state_dict()
    unplaced = sorted(set(weights) - set(own))
    if unplaced:
        raise ValueError(f"{len(unplaced)} weights have no place in this model, e.g. {unplaced[0]}")
    matching = {name: value.float() for name, value in weights.items() if value.shape == own[name].shape}
    model.load_state_dict(matching, strict=False)
    return [name for name in own if name not in matching]


def train(run: Path, model_cfg: ViTConfig, cfg: TrainConfig, data_root: str | None, device: torch.device,
          workers: int = 2, compile_model: bool = False, command: str = "", val_masks: int = 6) -> dict:
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    is_main = rank == 0

    if cfg.pseudo_labels:
        check_pseudo_labels(cfg.pseudo_labels, model_cfg.image_size, cfg.loss)
    torch.manual_seed(cfg.seed)
    model = SegmentationViT(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg)
    root = resolve_root(data_root)
    train_set = PetDataset(root, TRAINING_SPLIT, model_cfg.image_size, cfg.augment, training=True,
                           segmentation=not (cfg.use_unlabeled or cfg.pseudo_labels), fraction=cfg.label_fraction)
    val_set = PetDataset(root, cfg.val_split, model_cfg.image_size, "none")
    world_size = dist.get_world_size() if distributed else 1
    steps_per_epoch = max(1, len(train_set) // (cfg.batch_size * world_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(cfg, it / steps_per_epoch))
    start_epoch, history = load_train_state(run, model, optimizer, scheduler)
    if cfg.init_from and not start_epoch:
        fresh = warm_start(model, ckpt.read_weights(cfg.init_from))
        if fresh and is_main:
            print(f"from {cfg.init_from}: every weight but {len(fresh)} new ones ({', '.join(fresh)})")
    if start_epoch and is_main:
        print(f"resuming {run} after epoch {start_epoch}")
    if is_main:
        ckpt.remove_partial_writes(run)  # left behind if the last process was killed mid-write

    resident = ResidentSet.load(train_set, device) if cfg.data_on_device or cfg.pseudo_labels else None
    if cfg.pseudo_labels:
        resident = resident.with_pseudo_labels([e.name for e in train_set.entries], cfg.pseudo_labels)
    train_model = torch.compile(model) if compile_model else model
    if distributed:
        train_model = DistributedDataParallel(train_model)
    stop = StopRequested()
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size)  # decoding ~400 small photos needs no workers
    device_text = device_description(device)
    commit = git_commit()  # the code this run started from
    state = "finished"

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        # Seeding per epoch makes shuffling, augmentation and dropout a function of the epoch,
        # so a resumed run repeats exactly what an uninterrupted one would have done.
        epoch_seed = cfg.seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        if resident is not None:
            batches = resident.batches(cfg.batch_size, epoch_seed, cfg.augment, rank, world_size)
            num_batches = resident.num_batches(cfg.batch_size, world_size)
        else:
            sampler = DistributedSampler(train_set, seed=cfg.seed, drop_last=True) if distributed else None
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                                drop_last=True, num_workers=workers, worker_init_fn=ignore_stop_signals,
                                generator=torch.Generator().manual_seed(epoch_seed))
            # The loader's batches have no soft targets (pseudo-labels always train on the device set).
            batches, num_batches = ((*batch, None) for batch in iterate_with_workers(loader)), len(loader)
        paste_generator = torch.Generator(device=device).manual_seed(epoch_seed)
        train_model.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(batches, total=num_batches, desc=f"epoch {epoch}/{cfg.epochs}",
                   disable=not is_main, leave=False, dynamic_ncols=True)
        last_write = 0.0
        for step, (images, masks, breeds, species, soft) in enumerate(bar, start=1):
            images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
            if cfg.paste:
                images, masks, soft = paste_small(images, masks, paste_generator, cfg.paste, soft=soft)
            labels = (species if cfg.class_labels == "species" else breeds).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = train_model(images)
            loss = segmentation_loss(out, masks, labels, cfg, soft)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(images)
            loss_sum += loss.item() * len(images)
            rate = seen / (time.time() - t0)
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.1f}")
            if is_main and time.time() - last_write > 1.0:
                remaining = (cfg.epochs - epoch) * steps_per_epoch + (steps_per_epoch - step)
                write_progress(run, state="running", epoch=epoch, epochs=cfg.epochs, step=step, steps=steps_per_epoch,
                               images_per_s=rate, eta_s=remaining * cfg.batch_size / max(rate, 1e-9), device=device_text,
                               commit=commit)
                last_write = time.time()
            if stop.requested:
                break
        if stop.requested:
            state = "stopped"
            if is_main:
                print(f"stopped during epoch {epoch}; epoch {epoch - 1} is saved. Resume with --resume {run}")
            break

        train_seconds = time.time() - t0
        if is_main:
            row = {"epoch": epoch, "train_loss": loss_sum / max(1, seen), "lr": optimizer.param_groups[0]["lr"],
                   "images_per_s": seen / train_seconds}
            keep = epoch in cfg.snapshot_epochs or epoch == cfg.epochs
            if keep or epoch % cfg.val_every == 0:
                val = evaluate_model(model, val_loader, device)
                row.update(val_loss=val["loss"], pixel_accuracy=val["pixel_accuracy"], iou=val["iou"], miou=val["miou"])
            row["seconds"] = time.time() - t0
            history.append(row)
            # The training state is written last: it is what a resume starts from, so a crash
            # before it costs only this epoch, which the resume redoes (and rewrites the rest).
            if keep:
                ckpt.atomic_save_tensors(ckpt.snapshot_path(run, epoch), ckpt.half_state(model))
            if val_masks:
                save_val_masks(run, model, val_set, device, epoch, val_masks)
            ckpt.atomic_write_bytes(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history).encode())
            save_train_state(run, model, optimizer, scheduler, epoch, history)
            scores = (f"val loss {row['val_loss']:.4f}  pixel acc {row['pixel_accuracy']:.4f}  mIoU {row['miou']:.4f}  "
                      if "miou" in row else "")
            tqdm.write(f"epoch {epoch}: train loss {row['train_loss']:.4f}  {scores}"
                       f"{row['images_per_s']:.1f} img/s  {row['seconds']:.1f} s")
        if distributed:
            dist.barrier()

    summary = {}
    if is_main:
        last = history[-1] if history else {}
        summary = {"command": command, "commit": commit, "device": device_text, "torch": torch.__version__,
                   "wall_time_s": sum(r["seconds"] for r in history), "epochs_done": len(history),
                   "parameters": model.num_params(), "final": {k: last.get(k) for k in ("pixel_accuracy", "miou", "iou")},
                   "final_split": cfg.val_split, "curve": history}
        if state == "finished":
            ckpt.atomic_save_tensors(run / "model.safetensors", model.state_dict())
            ckpt.atomic_write_json(run / "metrics.json", summary)
        write_progress(run, state=state, epoch=len(history), epochs=cfg.epochs, device=device_text, commit=commit)
    if distributed:
        dist.destroy_process_group()
    return summary
