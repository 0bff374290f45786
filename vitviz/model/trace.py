"""A record of one real forward pass: every stage's tensor, shape, axis names and parameters.

The model's forward takes an optional `Trace` and notes each stage in it as it goes, so the
shape table, the tensor-journey view and the attention views all read the same pass.
"""

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Stage:
    step: int  # the step of the brief's 8-step journey this stage belongs to
    name: str
    axes: tuple[str, ...]  # one name per dimension, e.g. ("B", "N", "D")
    shape: tuple[int, ...]
    params: int  # parameters owned by this stage's module(s)
    tensor: torch.Tensor  # detached, on the CPU

    def shape_str(self) -> str:
        return "(" + ", ".join(f"{a}={s}" for a, s in zip(self.axes, self.shape)) + ")"


def count_params(*modules: nn.Module | nn.Parameter | None) -> int:
    total = 0
    for m in modules:
        if isinstance(m, nn.Parameter):
            total += m.numel()
        elif m is not None:
            total += sum(p.numel() for p in m.parameters())
    return total


@dataclass
class Trace:
    """Pass one to `SegmentationViT.forward(images, trace=...)`; it fills `stages` and
    `attentions` (one (B, heads, T, T) tensor per block, rows sum to 1)."""

    keep_tensors: bool = True
    stages: list[Stage] = field(default_factory=list)
    attentions: list[torch.Tensor] = field(default_factory=list)

    def add(self, step: int, name: str, tensor: torch.Tensor, axes: str, *owners) -> None:
        axes_t = tuple(axes.split())
        if len(axes_t) != tensor.dim():
            raise ValueError(f"stage {name!r}: axes {axes_t} do not match shape {tuple(tensor.shape)}")
        kept = tensor.detach().float().cpu() if self.keep_tensors and not tensor.is_meta else torch.empty(0)
        self.stages.append(Stage(step, name, axes_t, tuple(tensor.shape), count_params(*owners), kept))

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)
