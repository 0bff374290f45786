"""Image <-> patches with plain tensor ops, and the two equivalent patch embeddings.

A (B, C, H, W) image is cut into N = (H/P)·(W/P) non-overlapping P×P patches, each flattened
to P·P·C values in (row, column, channel) order. `unpatchify` is the exact inverse, used to
turn per-patch predictions back into a mask.
"""

import torch
from torch import nn


def grid_size(image_size: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """(rows, cols) of the patch grid; the image must divide evenly into patches."""
    h, w = image_size
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch size {patch_size}")
    return h // patch_size, w // patch_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) → (B, N, P·P·C), patches in row-major order."""
    b, c, h, w = images.shape
    gh, gw = grid_size((h, w), patch_size)
    p = patch_size
    x = images.reshape(b, c, gh, p, gw, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # B, gh, gw, p, p, C
    return x.reshape(b, gh * gw, p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, P·P·C) → (B, C, H, W): the inverse of `patchify`."""
    b, n, ppc = patches.shape
    gh, gw = grid
    p = patch_size
    c = ppc // (p * p)
    x = patches.reshape(b, gh, gw, p, p, c)
    x = x.permute(0, 5, 1, 3, 2, 4)  # B, C, gh, p, gw, p
    return x.reshape(b, c, gh * p, gw * p)


def conv_bn_gelu(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, BatchNorm, GELU: the conv stem's and the skip decoder's unit."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.GELU())


class PatchEmbed(nn.Module):
    """What every tokenizer offers: `forward(images, trace)` → tokens (B, N, D), and
    `forward_with_skips`, which also returns the feature maps a skip decoder reads (finest first;
    none for a tokenizer that maps pixels to tokens in one step)."""

    def forward_with_skips(self, images: torch.Tensor, trace=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self(images, trace), []


class LinearPatchEmbed(PatchEmbed):
    """The reference tokenizer: patchify, then one nn.Linear(P·P·C → D) shared by all patches."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)

    def forward(self, images: torch.Tensor, trace=None) -> torch.Tensor:
        patches = patchify(images, self.patch_size)
        tokens = self.proj(patches)
        if trace is not None:
            trace.add(2, "patchify", patches, "B N PPC")
            trace.add(3, "patch embedding", tokens, "B N D", self.proj)
        return tokens


class ConvPatchEmbed(PatchEmbed):
    """Conv2d(kernel = stride = P): the same map as `LinearPatchEmbed` in a single call (brief §3)."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor, trace=None) -> torch.Tensor:
        x = self.proj(images)  # B, D, gh, gw
        tokens = x.flatten(2).transpose(1, 2)
        if trace is not None:
            trace.add(2, "conv patch embedding", x, "B D gh gw", self.proj)
            trace.add(3, "flatten to tokens", tokens, "B N D")
        return tokens


class ConvStemPatchEmbed(PatchEmbed):
    """A small convolutional tokenizer (as in CCT / "early convolutions help transformers see"):
    stride-2 3x3 convolutions halve the resolution until each token covers P×P pixels.
    It still yields one D-vector per P×P patch, so every view of the model stays the same."""

    convs_per_stage = 1  # 3x3 convolutions at each resolution (the first one halves it)

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        n_down = patch_size.bit_length() - 1
        if patch_size != 2**n_down or n_down < 1:
            raise ValueError("the conv stem needs a power-of-two patch size >= 2")
        self.patch_size = patch_size
        self.widths = [embed_dim // 2 ** (n_down - i) for i in range(1, n_down)] + [embed_dim]
        self.stages = nn.ModuleList()
        c = in_channels
        for width in self.widths[:-1]:
            layers = [*conv_bn_gelu(c, width, stride=2)]
            for _ in range(self.convs_per_stage - 1):
                layers += conv_bn_gelu(width, width)
            self.stages.append(nn.Sequential(*layers))  # flat, so weight names match one-conv stems
            c = width
        self.proj = nn.Conv2d(c, embed_dim, 3, stride=2, padding=1, bias=False)  # the last conv projects

    def forward_with_skips(self, images: torch.Tensor, trace=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Tokens (B, N, D), and every intermediate feature map (finest first) for a skip decoder."""
        skips = []
        x = images
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        x = self.proj(x)
        tokens = x.flatten(2).transpose(1, 2)
        if trace is not None:
            trace.add(2, "conv stem", x, "B D gh gw", self.stages, self.proj)
            trace.add(3, "flatten to tokens", tokens, "B N D")
        return tokens, skips

    def forward(self, images: torch.Tensor, trace=None) -> torch.Tensor:
        return self.forward_with_skips(images, trace)[0]


class DeepConvStemPatchEmbed(ConvStemPatchEmbed):
    """The conv stem with two convolutions per resolution: a small CNN encoder under the transformer
    (TransUNet-style hybrid). With 16×16 patches it leaves the transformer 4× fewer tokens than
    8×8 patches would, and its feature maps give the skip decoder the detail the tokens lack."""

    convs_per_stage = 2


PATCH_EMBEDS = {"linear": LinearPatchEmbed, "conv": ConvPatchEmbed, "convstem": ConvStemPatchEmbed,
                "deepstem": DeepConvStemPatchEmbed}


def linear_to_conv(linear: LinearPatchEmbed) -> ConvPatchEmbed:
    """Copy a linear patch embedding into the equivalent Conv2d: the weight (D, P·P·C) in
    (row, col, channel) order becomes the kernel (D, C, P, P)."""
    p = linear.patch_size
    d, ppc = linear.proj.weight.shape
    c = ppc // (p * p)
    conv = ConvPatchEmbed(p, c, d).to(linear.proj.weight)
    with torch.no_grad():
        conv.proj.weight.copy_(linear.proj.weight.reshape(d, p, p, c).permute(0, 3, 1, 2))
        conv.proj.bias.copy_(linear.proj.bias)
    return conv


def conv_to_linear(conv: ConvPatchEmbed) -> LinearPatchEmbed:
    """The inverse of `linear_to_conv`."""
    d, c, p, _ = conv.proj.weight.shape
    linear = LinearPatchEmbed(p, c, d).to(conv.proj.weight)
    with torch.no_grad():
        linear.proj.weight.copy_(conv.proj.weight.permute(0, 2, 3, 1).reshape(d, p * p * c))
        linear.proj.bias.copy_(conv.proj.bias)
    return linear
