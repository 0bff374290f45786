"""Knock-outs: switch parts of the model off for one forward pass, to see what they do (causal views).

An attention map says where a patch looks, not what the model needs. Removing a part and watching
the mask change does: `SegmentationViT.forward(images, knockout=KnockOut(...))`. What can go:

- a head: the attention output of a block is a sum of one term per head, W_h·o_h + b/H (the output
  projection's slice for that head applied to its output, plus an equal share of the projection's
  bias). Switching a head off removes its term, so switching off every head of a block is exactly
  skipping that block's attention;
- a block's attention or its MLP: the block keeps only the residual path around it (z' = z);
  both together remove the whole block;
- the position embedding: no table is added (nor the class token's learned row);
- the order of the patch tokens (`SHUFFLES`): they are permuted before or after the position
  embedding is added and put back in place before the segmentation head, so each patch's mask is
  drawn where the patch is. After the embedding a permutation changes nothing (attention treats
  the tokens as a set); before it, each patch is told it sits somewhere else.

With nothing knocked out (`NOTHING`) the forward pass is the normal one, fast path included.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch

SHUFFLES = ("none", "before_position", "after_position")


class BlockKnockOut(NamedTuple):
    """What one encoder block leaves out: its attention, its MLP, and which heads (a (heads,) mask of
    1 = on, 0 = off; None when all are on)."""

    attention: bool = False
    mlp: bool = False
    heads: torch.Tensor | None = None


INTACT_BLOCK = BlockKnockOut()


@dataclass(frozen=True)
class KnockOut:
    heads: frozenset[tuple[int, int]] = frozenset()  # (block, head) pairs switched off, counted from 0
    attention: frozenset[int] = frozenset()  # blocks whose attention is skipped
    mlp: frozenset[int] = frozenset()  # blocks whose MLP is skipped
    position: bool = False  # leave out the position embedding
    shuffle: str = "none"  # one of SHUFFLES
    seed: int = 0  # of the token permutation

    def __post_init__(self):
        if self.shuffle not in SHUFFLES:
            raise ValueError(f"shuffle must be one of {', '.join(SHUFFLES)}, got {self.shuffle!r}")
        for name in ("heads", "attention", "mlp"):  # accept any iterable, keep a hashable frozenset
            object.__setattr__(self, name, frozenset(getattr(self, name)))

    def __bool__(self) -> bool:
        return bool(self.heads or self.attention or self.mlp or self.position or self.shuffle != "none")

    def check(self, depth: int, num_heads: int) -> None:
        """Refuse blocks and heads the model does not have."""
        blocks = self.attention | self.mlp | {block for block, _ in self.heads}
        if any(not 0 <= b < depth for b in blocks) or any(not 0 <= h < num_heads for _, h in self.heads):
            raise ValueError(f"knock-out outside a model of {depth} blocks × {num_heads} heads: "
                             f"blocks {sorted(blocks)}, heads {sorted(self.heads)}")

    def block(self, index: int, num_heads: int) -> BlockKnockOut:
        """What block `index` (from 0) leaves out."""
        off = [h for b, h in self.heads if b == index]
        heads = None
        if off:
            heads = torch.ones(num_heads)
            heads[off] = 0
        if not (off or index in self.attention or index in self.mlp):
            return INTACT_BLOCK
        return BlockKnockOut(index in self.attention, index in self.mlp, heads)

    def permutation(self, num_tokens: int) -> torch.Tensor | None:
        """The patch tokens' new order (slot j gets token perm[j]), or None when they keep theirs."""
        if self.shuffle == "none":
            return None
        return torch.randperm(num_tokens, generator=torch.Generator().manual_seed(self.seed))


NOTHING = KnockOut()
