"""Multi-head self-attention with a fast path and an explicit path that returns the weights.

Fused attention (`scaled_dot_product_attention`) never materialises the (T, T) weights, which
is why hook-based explainers break on it. Here the same module computes softmax(q kᵀ / √d_h)
by hand when asked, and a test proves both paths give the same output.

A head mask switches heads off (`vitviz.model.knockout`): the output is the sum over heads of
W_h·o_h + b/H, and a switched-off head leaves no term, not even its share of the bias.
"""

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # U ∈ R^{D×3D}: q, k, v for all heads at once
        self.proj = nn.Linear(dim, dim)  # U_msa ∈ R^{D×D}: mixes the concatenated heads
        self.dropout = dropout
        self.attn_dropout = nn.Dropout(dropout)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False,
                head_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, D) → (B, T, D), and the weights (B, heads, T, T) when `need_weights`.
        `head_mask`: (heads,) of 1 (on) and 0 (off), or None for all heads on."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            weights = scores.softmax(dim=-1)
            out = self.attn_dropout(weights) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        if head_mask is not None:
            head_mask = head_mask.to(out)
            out = out * head_mask.view(1, -1, 1, 1)
        out = out.transpose(1, 2).reshape(b, t, d)  # concatenate the heads
        if head_mask is None:
            return self.proj_dropout(self.proj(out)), weights
        bias = self.proj.bias * head_mask.mean()  # the heads that are on keep their shares
        return self.proj_dropout(F.linear(out, self.proj.weight, bias)), weights
