"""Checkpoint folders: safetensors weights + JSON, written atomically, never pickled.

    <folder>/config.json               {"model": ViTConfig fields, "train": recipe, "labels": …}
    <folder>/model.safetensors         weights of the last epoch (shipped folders: fp16)
    <folder>/train_state.safetensors   run folders only: weights, optimizer tensors, and in the
                                       header the epoch, scheduler, history (one atomic file)
    <folder>/snapshots/epoch_NNN.safetensors   weights kept at chosen epochs (fp16)
    <folder>/metrics.jsonl / metrics.json      per-epoch curve / the finished run's summary
    <folder>/val_masks/epoch_NNN.png           run folders only: predicted masks of a few val photos
"""

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save

from vitviz.model.vit import SegmentationViT, ViTConfig


INT8_SCALE = ".int8_scale"
# The largest model a checkpoint folder may describe, checked before anything is built. The
# article's reference model has 86.28M parameters (345 MB in fp32); 100M opens it with room to
# spare, and one such model stays well inside the app's 1 GiB model cache and a laptop's memory.
# The Train tab allows up to 2.4B (width 2048 × 48 blocks, 9 GiB in fp32): such a run is refused
# with this number instead of filling the server's memory.
MAX_PARAMETERS = 100_000_000


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used; the message is one line for the user."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a reader
    (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of atomic writes whose writer was killed before the rename (in
    `folder` and below) and return them; the files they were to replace are still whole."""
    leftovers = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for p in leftovers:
        p.unlink()
    return leftovers


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def half_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """fp16 copy of the floating-point weights (integer buffers such as BatchNorm counts stay)."""
    return {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def int8_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Row-wise symmetric int8 copy of the matrices (a quarter of fp32), fp16 for the rest:
    snapshots for the epoch views, where a 0.4% weight error does not change a mask."""
    out = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point() and v.dim() >= 2:
            scale = v.abs().amax(dim=tuple(range(1, v.dim())), keepdim=True).clamp(min=1e-12) / 127
            out[k] = torch.round(v / scale).to(torch.int8)
            out[k + INT8_SCALE] = scale.half()
        else:
            out[k] = v.half() if v.is_floating_point() else v
    return out, {"format": "int8-rowwise"}


def dequantize(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `int8_state`; a no-op for plain weights."""
    return {k: (v.float() * tensors[k + INT8_SCALE].float() if k + INT8_SCALE in tensors else v)
            for k, v in tensors.items() if not k.endswith(INT8_SCALE)}


def snapshot_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / "snapshots" / f"epoch_{epoch:03d}.safetensors"


def list_snapshots(folder: str | os.PathLike) -> list[int]:
    """Epochs with a saved weight snapshot, ascending."""
    d = Path(folder) / "snapshots"
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := re.fullmatch(r"epoch_(\d+)\.safetensors", p.name)))


class PathNotAllowed(ValueError):
    """A path from the UI that lies outside the folders the app may read; one line for the user."""


def confine(path: str | os.PathLike, allowed: Iterable[str | os.PathLike]) -> Path:
    """`path` resolved (symlinks and `..` followed, relative to the working folder), when it is one
    of the `allowed` folders or lies inside one; otherwise PathNotAllowed. For every checkpoint, run
    or data-root value that comes from the UI, before anything reads it."""
    resolved = Path(path).resolve()
    roots = [Path(folder).resolve() for folder in allowed]
    if any(resolved.is_relative_to(root) for root in roots):
        return resolved
    raise PathNotAllowed(f"{path} is outside the folders this app may read ({', '.join(map(str, roots))})")


def read_metrics(folder: str | os.PathLike) -> dict[int, dict]:
    """Epoch → that epoch's row (train_loss, and val_loss, pixel_accuracy, miou, iou when the
    epoch was validated), from metrics.jsonl (written every epoch) or else metrics.json's curve."""
    folder = Path(folder)
    rows: list[dict] = []
    if (folder / "metrics.jsonl").is_file():
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a blank or foreign line does not hide the others
    elif (folder / "metrics.json").is_file():
        try:
            rows = json.loads((folder / "metrics.json").read_text()).get("curve", [])
        except (json.JSONDecodeError, AttributeError):
            rows = []
    return {int(r["epoch"]): r for r in rows if isinstance(r, dict) and "epoch" in r}


def read_config(folder: str | os.PathLike) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json, so this is not a checkpoint folder")
    try:
        config = json.loads(path.read_text())
        ViTConfig.from_dict(config["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable model config ({e})") from None
    return config


def weights_file(folder: Path, epoch: int | None = None) -> tuple[Path, str]:
    """The file holding the weights of `epoch` (a snapshot), or of the last epoch when `epoch` is
    None, and the prefix of their names in it."""
    if epoch is not None:
        path = snapshot_path(folder, epoch)
        if not path.is_file():
            raise CheckpointError(f"{folder}: no snapshot for epoch {epoch} (have {list_snapshots(folder)})")
        return path, ""
    for name, prefix in (("model.safetensors", ""), ("train_state.safetensors", "model.")):
        if (folder / name).is_file():
            return folder / name, prefix
    raise CheckpointError(f"{folder}: no model.safetensors or train_state.safetensors")


def read_weights(folder: str | os.PathLike, epoch: int | None = None) -> dict[str, torch.Tensor]:
    """Weights of `epoch` (a snapshot), or of the last epoch when `epoch` is None."""
    path, prefix = weights_file(Path(folder), epoch)
    try:
        with safe_open(path, "pt") as f:
            return dequantize({k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder}: weights file is unreadable ({e})") from None


def weight_shapes(folder: str | os.PathLike, epoch: int | None = None) -> dict[str, tuple[int, ...]]:
    """Name → shape of each tensor `read_weights` would return, from the file's header alone: no
    tensor is read."""
    path, prefix = weights_file(Path(folder), epoch)
    try:
        with safe_open(path, "pt") as f:
            shapes = {k[len(prefix):]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix)}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder}: weights file is unreadable ({e})") from None
    return {k: _scaled_shape(folder, k, s, shapes[k + INT8_SCALE]) if k + INT8_SCALE in shapes else s
            for k, s in shapes.items() if not k.endswith(INT8_SCALE)}


def _scaled_shape(folder: str | os.PathLike, name: str, shape: tuple[int, ...],
                  scale: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of an int8 snapshot's matrix times its scale, as `dequantize` multiplies them."""
    try:
        return tuple(torch.broadcast_shapes(shape, scale))
    except RuntimeError:
        raise CheckpointError(f"{folder}: {name}{INT8_SCALE} of shape {scale} cannot scale {name} of shape "
                              f"{shape}") from None


def meta_model(cfg: ViTConfig) -> SegmentationViT:
    """The model `cfg` describes on the meta device: every parameter's shape, no memory."""
    with torch.device("meta"):
        return SegmentationViT(cfg)


def parameter_count(cfg: ViTConfig) -> int:
    """Parameters of the model `cfg` describes, from a meta model of one block (the blocks are all
    alike), so that a config of a million blocks costs no more than one of twelve."""
    one = meta_model(replace(cfg, depth=1))
    return one.num_params() + (cfg.depth - 1) * sum(p.numel() for p in one.blocks[0].parameters())


def check_folder(folder: str | os.PathLike, epoch: int | None = None) -> ViTConfig:
    """The model config of a checkpoint folder whose weights fit it, found without building the
    model in memory: the weights file is there, the model has at most MAX_PARAMETERS, and every
    tensor name and shape in the file's header is the model's. A folder that a training job has
    just created holds only config.json, and a config may ask for any size: the app's model cache
    builds nothing until this says yes. Raises CheckpointError with a one-line reason."""
    cfg = ViTConfig.from_dict(read_config(folder)["model"])
    shapes = weight_shapes(folder, epoch)
    try:
        problem = model_mismatch(cfg, shapes)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:  # the model's own checks
        raise CheckpointError(f"{folder}: config.json describes no model ({e})") from None
    if problem:
        raise CheckpointError(f"{folder}: {problem}")
    return cfg


def model_mismatch(cfg: ViTConfig, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why weights of these shapes cannot make the model `cfg` describes, or None. The model is
    only ever built on the meta device, and only once its depth is known to fit the file."""
    count = parameter_count(cfg)
    if count > MAX_PARAMETERS:
        return f"config.json describes a model of {count:,} parameters; vitviz opens at most {MAX_PARAMETERS:,}"
    if cfg.depth > len(shapes):  # every block has tensors of its own: this file cannot hold them all
        return f"weights do not match config.json ({cfg.depth} blocks, {len(shapes)} tensors in the file)"
    expected = {k: tuple(v.shape) for k, v in meta_model(cfg).state_dict().items()}
    problem = weights_mismatch(expected, shapes)
    return problem and f"weights do not match config.json ({problem})"


def load_model(folder: str | os.PathLike, epoch: int | None = None, device: str | torch.device = "cpu") -> SegmentationViT:
    """Build the model from config.json and load its weights (fp32, eval mode), once
    `check_folder` has found that they fit."""
    model = SegmentationViT(check_folder(folder, epoch))
    weights = read_weights(folder, epoch)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    return model.to(device).eval()


def weights_mismatch(expected: dict[str, tuple[int, ...]], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why weights of `shapes` (name → shape) cannot be loaded into a model whose state dict has
    `expected`, in a few words (counts and the first name of each kind), or None when every name
    and shape matches."""
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    reshaped = [k for k in expected if k in shapes and shapes[k] != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if reshaped:
        k = reshaped[0]
        problems.append(f"{len(reshaped)} of another shape, e.g. {k}: {shapes[k]} in the file, "
                        f"{expected[k]} in the model")
    return "; ".join(problems) or None
