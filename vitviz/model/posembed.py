"""Position embeddings: learned, 1D sinusoidal, 2D sinusoidal, or none (brief §4).

Every kind hands the model one (N, D) table for the current patch grid, so a model trained on
one grid runs on another: sinusoidal tables are recomputed, a learned table is resampled as an
image (as the ViT authors do). A class token, when present, gets its own learned row
(`class_weight`) for the learned kind and nothing for the sinusoidal kinds.
"""

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _sincos(positions: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """Interleaved sin/cos of `positions / base^(2i/dim)`, i = 0 … dim/2 − 1 → (len, dim)."""
    i = torch.arange(dim // 2, dtype=torch.float64)
    freq = 1.0 / base ** (2 * i / dim)
    angles = positions.double()[:, None] * freq[None, :]
    table = torch.stack([angles.sin(), angles.cos()], dim=-1)  # even dims sin, odd dims cos
    return table.reshape(len(positions), dim).float()


def sincos_1d(num_positions: int, dim: int) -> torch.Tensor:
    """PE(x, 2i) = sin(x / 10000^(2i/D)), PE(x, 2i+1) = cos(x / 10000^(2i/D)), x = patch index."""
    if dim % 2:
        raise ValueError(f"sin1d needs an even embedding width, got {dim}")
    return _sincos(torch.arange(num_positions), dim, 10000.0)


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """First D/2 dims encode the column x, last D/2 the row y, each with 10000^(4i/D)."""
    if dim % 4:
        raise ValueError(f"sin2d needs an embedding width divisible by 4, got {dim}")
    rows, cols = grid
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    # _sincos over dim/2 values uses base^(2i/(D/2)) = base^(4i/D), exactly the brief's formula.
    return torch.cat([_sincos(x.flatten(), dim // 2, 10000.0), _sincos(y.flatten(), dim // 2, 10000.0)], dim=1)


def resample_grid(table: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resampling of an (N, D) table laid out on `old_grid` to `new_grid`."""
    if tuple(old_grid) == tuple(new_grid):
        return table
    d = table.shape[1]
    image = table.T.reshape(1, d, *old_grid)
    image = F.interpolate(image, size=new_grid, mode="bicubic", align_corners=False)
    return image.reshape(d, -1).T


@dataclass(frozen=True)
class PositionKind:
    """One kind of position embedding: where its table comes from and which widths it can use.
    The model, the Train form, the Journey's "what if" and the Position tab all read this
    registry, so a new kind is one entry here (and its names in the locale files)."""

    learned: bool  # a parameter trained with the model, resampled to other grids
    formula: Callable[[tuple[int, int], int], torch.Tensor] | None  # (grid, D) → (N, D), if computed
    width_multiple: int = 1  # D must be a multiple of this: sin and cos pairs, per axis

    @property
    def has_table(self) -> bool:
        """Whether the kind adds anything to the patches (all but "none")."""
        return self.learned or self.formula is not None


KINDS: dict[str, PositionKind] = {
    "learned": PositionKind(learned=True, formula=None),
    # Patch index x runs row by row, as in the brief; a new grid gets new indices.
    "sin1d": PositionKind(learned=False, formula=lambda grid, dim: sincos_1d(grid[0] * grid[1], dim), width_multiple=2),
    "sin2d": PositionKind(learned=False, formula=sincos_2d, width_multiple=4),
    "none": PositionKind(learned=False, formula=None),
}


def position_kind(name: str, dim: int) -> PositionKind:
    """The kind called `name`, checked against the embedding width `dim`: the one place that
    refuses an unknown kind or a width its formula cannot use (`ViTConfig` calls it, and through
    it the Train form)."""
    if name not in KINDS:
        raise ValueError(f"unknown position embedding {name!r}: choose one of {', '.join(KINDS)}")
    kind = KINDS[name]
    if dim % kind.width_multiple:
        raise ValueError(f"the {name} position embeddings need a width divisible by {kind.width_multiple}, got {dim}")
    return kind


class PositionEmbedding(nn.Module):
    def __init__(self, kind: str, grid: tuple[int, int], dim: int, class_token: bool):
        super().__init__()
        self.spec = position_kind(kind, dim)
        self.kind, self.grid, self.dim = kind, tuple(grid), dim
        self.weight = None
        self.class_weight = None
        if self.spec.learned:
            self.weight = nn.Parameter(torch.empty(grid[0] * grid[1], dim))
            nn.init.trunc_normal_(self.weight, std=0.02)
            if class_token:
                self.class_weight = nn.Parameter(torch.zeros(1, dim))

    def table(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """The (N, D) embedding of every patch of `grid`, or None for kind 'none'."""
        if self.spec.learned:
            return resample_grid(self.weight, self.grid, grid)
        return self.spec.formula(grid, self.dim) if self.spec.formula else None

    def extra_repr(self) -> str:
        return f"kind={self.kind}, grid={self.grid}, dim={self.dim}"
