"""The Vision Transformer for segmentation (brief §1), readable top to bottom.

image ─ BatchNorm ─ patches ─ patch embedding ─ + position ─ L × [pre-norm attention, MLP]
      ─ per-patch head (P·P·C logits) ─ patches back to a C-channel mask

Options are arguments of `ViTConfig`, not forks of the code: the tokenizer (linear, conv or a conv
stem, `PATCH_EMBEDS`), the position embedding (learned, sin1d, sin2d, none: `posembed.KINDS`), an
optional class token with a classification head, and the segmentation head (`HEADS`: linear, MLP,
or a U-Net-style decoder fed by the conv stem, whose `skip_full` kind ends at full resolution with
the photo itself as its finest map). The patch grid is always derived from the input, so a model
trained at 128 px runs at 192 or 256 px too. A `KnockOut` switches parts off for one pass
(`vitviz.model.knockout`).
"""

from dataclasses import asdict, dataclass, fields
from typing import Callable, NamedTuple

import torch
from torch import nn

from vitviz.model.attention import MultiHeadSelfAttention
from vitviz.model.decoder import SkipDecoder
from vitviz.model.knockout import INTACT_BLOCK, NOTHING, BlockKnockOut, KnockOut
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
    # | "skip_full" (the same, with a last step at full resolution that reads the photo)

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
            raise ValueError(f"width {self.embed_dim} (embed_dim) is not divisible by {self.num_heads} heads "
                             "(num_heads): every head gets an equal share of the width")

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

    def forward(self, x: torch.Tensor, need_weights: bool = False,
                off: BlockKnockOut = INTACT_BLOCK) -> tuple[torch.Tensor, torch.Tensor | None]:
        weights = None
        if not off.attention:
            attended, weights = self.attn(self.norm1(x), need_weights, off.heads)
            x = x + attended  # communication: every patch gathers from every other patch
        if not off.mlp:
            x = x + self.mlp(self.norm2(x))  # computation: each patch on its own
        return x, weights


def _decode_per_patch(head: nn.Module, tokens: torch.Tensor, grid: tuple[int, int], skips: list[torch.Tensor],
                      size: tuple[int, int], trace: Trace | None) -> torch.Tensor:
    """Each token → its P·P·C block of logits, the blocks laid back on the grid: the reference head."""
    patch_logits = head(tokens)
    mask = unpatchify(patch_logits, size[0] // grid[0], grid)
    if trace is not None:
        trace.add(7, "output projection", patch_logits, "B N PPC", head)
        trace.add(8, "patches → mask", mask, "B C H W")
    return mask


def _decode_with_skips(head: SkipDecoder, tokens: torch.Tensor, grid: tuple[int, int], skips: list[torch.Tensor],
                       size: tuple[int, int], trace: Trace | None) -> torch.Tensor:
    mask = head(tokens, grid, skips, size, trace)
    if trace is not None:
        trace.add(8, "mask logits", mask, "B C H W", head.out)
    return mask


@dataclass(frozen=True)
class HeadKind:
    """One kind of segmentation head (`ViTConfig.head`): how to build it and how it turns the
    patch tokens into mask logits. A head that `uses_stem_features` upsamples with the conv
    stem's feature maps, so it needs a conv-stem tokenizer; one that also `reads_photo` gets the
    (normalised) photo as its finest map, so its last step works at full resolution."""

    build: Callable[["ViTConfig", nn.Module], nn.Module]  # (config, patch embedding) → the head
    # (head, tokens (B, N, D), grid, feature maps (finest first), image size, trace) → logits (B, C, H, W)
    decode: Callable[..., torch.Tensor] = _decode_per_patch
    uses_stem_features: bool = False
    reads_photo: bool = False


def _patch_logits(cfg: "ViTConfig") -> int:
    return cfg.patch_size**2 * cfg.out_channels


HEADS: dict[str, HeadKind] = {
    "linear": HeadKind(lambda cfg, _: nn.Linear(cfg.embed_dim, _patch_logits(cfg))),
    "mlp": HeadKind(lambda cfg, _: nn.Sequential(nn.Linear(cfg.embed_dim, cfg.embed_dim), nn.GELU(),
                                                 nn.Linear(cfg.embed_dim, _patch_logits(cfg)))),
    "skip": HeadKind(lambda cfg, embed: SkipDecoder(cfg.embed_dim, embed.widths[:-1], cfg.out_channels),
                     _decode_with_skips, uses_stem_features=True),
    "skip_full": HeadKind(lambda cfg, embed: SkipDecoder(cfg.embed_dim, [cfg.in_channels, *embed.widths[:-1]],
                                                         cfg.out_channels),
                          _decode_with_skips, uses_stem_features=True, reads_photo=True),
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

    def forward(self, images: torch.Tensor, trace: Trace | None = None, knockout: KnockOut = NOTHING) -> ViTOutput:
        """images: (B, C, H, W) with H, W multiples of the patch size. Pass a `Trace` to record
        every stage and every layer's per-head attention weights (explicit attention path), or a
        `KnockOut` to switch parts of the model off (`vitviz.model.knockout`)."""
        if knockout:
            if trace is not None:
                raise ValueError("a Trace records the model as trained: trace without a knock-out")
            knockout.check(self.cfg.depth, self.cfg.num_heads)
        note = trace.add if trace is not None else _ignore
        grid = grid_size(images.shape[-2:], self.cfg.patch_size)

        normalised = self.input_norm(images)
        note(1, "input BatchNorm", normalised, "B C H W", self.input_norm)
        # (B, N, D); the tokenizer notes its own steps 2 and 3. A conv stem also hands over its
        # feature maps, for a decoder that reads them.
        x, feature_maps = self.patch_embed.forward_with_skips(normalised, trace)
        if HEADS[self.cfg.head].reads_photo:
            feature_maps = [normalised, *feature_maps]

        order = knockout.permutation(x.shape[1])  # None unless the knock-out shuffles the tokens
        if order is not None and knockout.shuffle == "before_position":
            x = x[:, order]
        pos = None if knockout.position else self.pos_embed.table(grid)
        if pos is not None:
            pos = pos.to(device=x.device, dtype=x.dtype)  # sinusoidal tables are built on the CPU
            note(4, "position embedding", pos, "N D", self.pos_embed)
            x = x + pos
            note(5, "patch + position", x, "B N D")
        if order is not None and knockout.shuffle == "after_position":
            x = x[:, order]
        if self.class_token is not None:
            cls = self.class_token.expand(x.shape[0], -1, -1)
            if self.pos_embed.class_weight is not None and not knockout.position:
                cls = cls + self.pos_embed.class_weight
            x = torch.cat([cls, x], dim=1)
            note(5, "prepend class token", x, "B T D", self.class_token)

        for i, block in enumerate(self.blocks):
            x, weights = block(x, need_weights=trace is not None, off=knockout.block(i, self.cfg.num_heads))
            note(6, f"encoder block {i + 1}", x, "B T D", block)
            if trace is not None and trace.keep_tensors:
                trace.attentions.append(weights.detach().float().cpu())

        n_cls = 1 if self.class_token is not None else 0
        class_logits = None
        if self.class_head is not None:
            class_logits = self.class_head(x[:, 0])
            note(7, "class head", class_logits, "B K", self.class_head)

        tokens = x[:, n_cls:]
        if order is not None:
            tokens = tokens[:, order.argsort()]  # every patch back in its place, so its mask is drawn there
        mask = HEADS[self.cfg.head].decode(self.seg_head, tokens, grid, feature_maps, images.shape[-2:], trace)
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
