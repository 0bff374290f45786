"""Position embeddings: learned, 1D sinusoidal, 2D sinusoidal, or none (brief §4).

Every kind hands the model one (N, D) table for the current patch grid, so a model trained on
one grid runs on another: sinusoidal tables are recomputed, a learned table is resampled as an
image (as the ViT authors do). A class token, when present, gets its own learned row
(`class_weight`) for the learned kind and nothing for the sinusoidal kinds.
"""

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("learned", "sin1d", "sin2d", "none")


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


class PositionEmbedding(nn.Module):
    def __init__(self, kind: str, grid: tuple[int, int], dim: int, class_token: bool):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"position embedding must be one of {KINDS}, got {kind!r}")
        self.kind, self.grid, self.dim = kind, tuple(grid), dim
        self.weight = None
        self.class_weight = None
        if kind == "learned":
            self.weight = nn.Parameter(torch.empty(grid[0] * grid[1], dim))
            nn.init.trunc_normal_(self.weight, std=0.02)
            if class_token:
                self.class_weight = nn.Parameter(torch.zeros(1, dim))
        elif kind != "none":
            self.table(grid)  # fail early on a width the formula cannot use

    def table(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """The (N, D) embedding of every patch of `grid`, or None for kind 'none'."""
        if self.kind == "learned":
            return resample_grid(self.weight, self.grid, grid)
        if self.kind == "sin1d":
            # Patch index x runs row by row, as in the brief; a new grid gets new indices.
            return sincos_1d(grid[0] * grid[1], self.dim)
        if self.kind == "sin2d":
            return sincos_2d(grid, self.dim)
        return None

    def extra_repr(self) -> str:
        return f"kind={self.kind}, grid={self.grid}, dim={self.dim}"
