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
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from vitviz.model import SegmentationViT, ViTConfig


INT8_SCALE = ".int8_scale"


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


def read_weights(folder: str | os.PathLike, epoch: int | None = None) -> dict[str, torch.Tensor]:
    """Weights of `epoch` (a snapshot), or of the last epoch when `epoch` is None."""
    folder = Path(folder)
    try:
        if epoch is not None:
            path = snapshot_path(folder, epoch)
            if not path.is_file():
                raise CheckpointError(f"{folder}: no snapshot for epoch {epoch} (have {list_snapshots(folder)})")
            return dequantize(load_file(path))
        if (folder / "model.safetensors").is_file():
            return load_file(folder / "model.safetensors")
        if (folder / "train_state.safetensors").is_file():
            with safe_open(folder / "train_state.safetensors", "pt") as f:
                return {k[len("model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder}: weights file is unreadable ({e})") from None
    raise CheckpointError(f"{folder}: no model.safetensors or train_state.safetensors")


def load_model(folder: str | os.PathLike, epoch: int | None = None, device: str | torch.device = "cpu") -> SegmentationViT:
    """Build the model from config.json and load its weights (fp32, eval mode)."""
    cfg = ViTConfig.from_dict(read_config(folder)["model"])
    model = SegmentationViT(cfg)
    weights = {k: v.float() if v.is_floating_point() else v for k, v in read_weights(folder, epoch).items()}
    problem = weights_mismatch(model.state_dict(), weights)
    if problem:
        raise CheckpointError(f"{folder}: weights do not match config.json ({problem})")
    model.load_state_dict(weights)
    return model.to(device).eval()


def weights_mismatch(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> str | None:
    """Why `weights` cannot be loaded into a model whose state dict is `expected`, in a few words
    (counts and the first name of each kind), or None when every name and shape matches."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if reshaped:
        k = reshaped[0]
        problems.append(f"{len(reshaped)} of another shape, e.g. {k}: {tuple(weights[k].shape)} in the file, "
                        f"{tuple(expected[k].shape)} in the model")
    return "; ".join(problems) or None
