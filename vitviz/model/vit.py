"""The Vision Transformer for segmentation (brief §1), readable top to bottom.

image ─ BatchNorm ─ patches ─ patch embedding ─ + position ─ L × [pre-norm attention, MLP]
      ─ per-patch head (P·P·C logits) ─ patches back to a C-channel mask

Options are arguments of `ViTConfig`, not forks of the code: the tokenizer (linear, conv or conv
stem), the position embedding (learned, sin1d, sin2d, none), an optional class token with a
classification head, and a linear or MLP segmentation head. The patch grid is always derived
from the input, so a model trained at 128 px runs at 192 or 256 px too.
"""

from dataclasses import asdict, dataclass, fields
from typing import Callable, NamedTuple

import torch
from torch import nn

from vitviz.model.attention import MultiHeadSelfAttention
from vitviz.model.decoder import SkipDecoder
from vitviz.model.patches import PATCH_EMBEDS, ConvStemPatchEmbed, grid_size, unpatchify
from vitviz.model.posembed import PositionEmbedding, position_kind
from vitviz.model.trace import Trace


@dataclass
class ViTConfig:
    """Defaults are the article's `VisionTransformerArgs`: 86.28M parameters."""

    image_size: int = 128
    patch_size: int = 16
    in_channels: int = 3
    out_channels: int = 3  # pet, background, border
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.2
    patch_embed: str = "linear"  # "linear" (reference) | "conv" (same map) | "convstem" | "deepstem"
    pos_embed: str = "learned"  # a kind of `posembed.KINDS`: "learned" | "sin1d" | "sin2d" | "none"
    class_token: bool = False
    num_classes: int = 0  # > 0 adds a classification head on the class token
    head: str = "linear"  # segmentation head of `HEADS`: "linear" (reference) | "mlp" | "skip" (U-Net decoder)

    def __post_init__(self):
        if self.patch_embed not in PATCH_EMBEDS:
            raise ValueError(f"patch_embed must be one of {sorted(PATCH_EMBEDS)}, got {self.patch_embed!r}")
        if self.head not in HEADS:
            *others, last = map(repr, HEADS)
            raise ValueError(f"head must be {', '.join(others)} or {last}, got {self.head!r}")
        if HEADS[self.head].uses_stem_features and not issubclass(PATCH_EMBEDS[self.patch_embed], ConvStemPatchEmbed):
            raise ValueError(f"the {self.head} head decodes with a conv stem's features: "
                             "use patch_embed='convstem' or 'deepstem'")
        position_kind(self.pos_embed, self.embed_dim)
        if self.num_classes and not self.class_token:
            raise ValueError("a classification head (num_classes > 0) needs class_token=True")
        grid_size((self.image_size, self.image_size), self.patch_size)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def grid(self) -> tuple[int, int]:
        return grid_size((self.image_size, self.image_size), self.patch_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


class MLP(nn.Module):
    """The computation step: Linear D→4D, GELU, Linear 4D→D, Dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm encoder block: z' = MSA(LN(z)) + z;  z_out = MLP(LN(z')) + z'."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = MultiHeadSelfAttention(cfg.embed_dim, cfg.num_heads, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.embed_dim)
        self.mlp = MLP(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio), cfg.dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attn(self.norm1(x), need_weights)
        x = x + attended  # communication: every patch gathers from every other patch
        x = x + self.mlp(self.norm2(x))  # computation: each patch on its own
        return x, weights


@dataclass(frozen=True)
class HeadKind:
    """One kind of segmentation head (`ViTConfig.head`). Per-patch heads map each token to its
    P·P·C block of logits; a head that `uses_stem_features` upsamples with the conv stem's maps."""

    build: Callable[["ViTConfig", nn.Module], nn.Module]  # (config, patch embedding) → the head
    uses_stem_features: bool = False


def _patch_logits(cfg: "ViTConfig") -> int:
    return cfg.patch_size**2 * cfg.out_channels


HEADS: dict[str, HeadKind] = {
    "linear": HeadKind(lambda cfg, _: nn.Linear(cfg.embed_dim, _patch_logits(cfg))),
    "mlp": HeadKind(lambda cfg, _: nn.Sequential(nn.Linear(cfg.embed_dim, cfg.embed_dim), nn.GELU(),
                                                 nn.Linear(cfg.embed_dim, _patch_logits(cfg)))),
    "skip": HeadKind(lambda cfg, embed: SkipDecoder(cfg.embed_dim, embed.widths[:-1], cfg.out_channels),
                     uses_stem_features=True),
}


class ViTOutput(NamedTuple):
    mask_logits: torch.Tensor  # (B, out_channels, H, W)
    class_logits: torch.Tensor | None  # (B, num_classes) when the model has a classification head


class SegmentationViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.embed_dim, cfg.patch_size
        self.input_norm = nn.BatchNorm2d(cfg.in_channels)  # replaces input normalisation
        self.patch_embed = PATCH_EMBEDS[cfg.patch_embed](p, cfg.in_channels, d)
        self.pos_embed = PositionEmbedding(cfg.pos_embed, cfg.grid, d, cfg.class_token)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.class_token else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.seg_head = HEADS[cfg.head].build(cfg, self.patch_embed)
        self.class_head = nn.Linear(d, cfg.num_classes) if cfg.num_classes else None
        self.apply(_init_weights)
        if self.class_token is not None:
            nn.init.trunc_normal_(self.class_token, std=0.02)

    def forward(self, images: torch.Tensor, trace: Trace | None = None) -> ViTOutput:
        """images: (B, C, H, W) with H, W multiples of the patch size. Pass a `Trace` to record
        every stage and every layer's per-head attention weights (explicit attention path)."""
        note = trace.add if trace is not None else _ignore
        grid = grid_size(images.shape[-2:], self.cfg.patch_size)

        x = self.input_norm(images)
        note(1, "input BatchNorm", x, "B C H W", self.input_norm)

        if HEADS[self.cfg.head].uses_stem_features:  # keep the conv stem's feature maps for the decoder
            x, skips = self.patch_embed.forward_with_skips(x, trace)
        else:
            x = self.patch_embed(x, trace)  # (B, N, D); the tokenizer notes its own steps 2 and 3

        pos = self.pos_embed.table(grid)
        if pos is not None:
            pos = pos.to(device=x.device, dtype=x.dtype)  # sinusoidal tables are built on the CPU
            note(4, "position embedding", pos, "N D", self.pos_embed)
            x = x + pos
            note(5, "patch + position", x, "B N D")
        if self.class_token is not None:
            cls = self.class_token.expand(x.shape[0], -1, -1)
            if self.pos_embed.class_weight is not None:
                cls = cls + self.pos_embed.class_weight
            x = torch.cat([cls, x], dim=1)
            note(5, "prepend class token", x, "B T D", self.class_token)

        for i, block in enumerate(self.blocks):
            x, weights = block(x, need_weights=trace is not None)
            note(6, f"encoder block {i + 1}", x, "B T D", block)
            if trace is not None and trace.keep_tensors:
                trace.attentions.append(weights.detach().float().cpu())

        n_cls = 1 if self.class_token is not None else 0
        class_logits = None
        if self.class_head is not None:
            class_logits = self.class_head(x[:, 0])
            note(7, "class head", class_logits, "B K", self.class_head)

        if HEADS[self.cfg.head].uses_stem_features:
            mask = self.seg_head(x[:, n_cls:], grid, skips, images.shape[-2:], trace)
            note(8, "mask logits", mask, "B C H W", self.seg_head.out)
        else:
            patch_logits = self.seg_head(x[:, n_cls:])
            note(7, "output projection", patch_logits, "B N PPC", self.seg_head)
            mask = unpatchify(patch_logits, self.cfg.patch_size, grid)
            note(8, "patches → mask", mask, "B C H W")
        return ViTOutput(mask, class_logits)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _ignore(*args) -> None:
    pass


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
