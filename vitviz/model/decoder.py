"""A U-Net-style decoder for the conv-stem ViT: the `skip` and `skip_full` segmentation heads.

The reference head predicts each P×P block of the mask from its token alone, so thin structures
such as the pet's border depend on a 192-number summary of 64 pixels. This decoder instead lays
the tokens back on their grid and upsamples ×2 at a time, at each step concatenating the conv
stem's feature map of the same resolution, so fine detail the tokens never had to carry comes back
through the skips. The `skip` head predicts logits at half resolution and upsamples them
bilinearly; `skip_full` adds one step at full resolution whose skip is the (normalised) photo, so
the pet's border, a few pixels wide in the trimaps, can follow the photo's own edges. That step
adds 13 % to the default's FLOPs (0.77 against 0.68 GFLOP per 128 px photo) but 31 % to its
training time on a CPU (24.1 against 18.4 minutes for the same 60 epochs,
`checkpoints/experiments/full-resolution-step.json` and `third-schedule.json`), where full-size
feature maps cost more in memory traffic than in arithmetic. The encoder is unchanged:
the same patch tokens, position embeddings and per-head attention that the explorer shows.
"""

import torch
import torch.nn.functional as F
from torch import nn

from vitviz.model.patches import conv_bn_gelu


class SkipDecoder(nn.Module):
    def __init__(self, embed_dim: int, skip_channels: list[int], out_channels: int):
        """`skip_channels`: the widths of the feature maps it mixes in, from the finest (H/2 for the
        stem's first stage, or H for the photo) to the coarsest."""
        super().__init__()
        widths = [max(16, c // 2) for c in skip_channels]  # decoder width at each skip's size, finest first
        self.reduce = nn.Conv2d(embed_dim, skip_channels[-1], 1)
        self.up = nn.ModuleList()
        coarse = skip_channels[-1]
        for skip, width in zip(reversed(skip_channels), reversed(widths)):
            self.up.append(conv_bn_gelu(coarse + skip, width))
            coarse = width
        self.out = nn.Conv2d(coarse, out_channels, 1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], skips: list[torch.Tensor],
                size: tuple[int, int], trace=None) -> torch.Tensor:
        """tokens (B, N, D) + stem features (finest first) → logits (B, K, *size)."""
        b, n, d = tokens.shape
        x = self.reduce(tokens.transpose(1, 2).reshape(b, d, *grid))
        if trace is not None:
            trace.add(7, "tokens → grid", x, "B C h w", self.reduce)
        for skip, block in zip(reversed(skips), self.up):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
            if trace is not None:
                trace.add(7, f"decoder 1/{size[-1] // x.shape[-1]} size", x, "B C h w", block)
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)
