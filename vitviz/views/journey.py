"""The tensor journey (brief §1): each stage of one real forward pass as a table row and a picture.

Also here: the "what if" shape table of a model that is only described (built on the 'meta'
device: shapes and parameter counts, no weights), and the check that a linear patch embedding and
its Conv2d copy give the same tokens.
"""

import math

import numpy as np
import torch

from vitviz.app.i18n import DEFAULT, text
from vitviz.app.inference import Analysis
from vitviz.model.patches import LinearPatchEmbed, grid_size, linear_to_conv
from vitviz.model.posembed import KINDS
from vitviz.model.trace import Stage, Trace
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.shapes import trace_blank
from vitviz.views.pictures import OUTLINE, VIRIDIS, colourise, grid_map_image, outline_patch, resize, signed_heatmap
from vitviz.views.segment import colour_mask

# ---------------------------------------------------------------- the shape table


def journey_rows(trace: Trace, total_params: int, lang: str = DEFAULT) -> list[list[str]]:
    """One row per recorded stage: step (named in `lang`), stage, shape with axis names, parameters;
    then the total."""
    rows = [[f"{s.step}. {text(f'journey.step_{s.step}', lang)}", s.name, s.shape_str(),
             f"{s.params:,}" if s.params else "–"] for s in trace.stages]
    rows.append(["", text("journey.total", lang), "", f"{total_params:,} ({total_params / 1e6:.2f}M)"])
    return rows


def forward_flops(tokens: int, dim: int, depth: int) -> int:
    """The brief's estimate of one forward pass of the encoder: L·(24·N·D² + 4·N²·D)."""
    return depth * (24 * tokens * dim**2 + 4 * tokens**2 * dim)


def model_summary(cfg: ViTConfig, total_params: int, lang: str = DEFAULT) -> str:
    """Patch count, tokens, parameters and FLOPs of a configuration, as one Markdown paragraph."""
    rows, cols = cfg.grid
    n = rows * cols
    tokens = n + (1 if cfg.class_token else 0)
    flops = forward_flops(tokens, cfg.embed_dim, cfg.depth)
    tokens_text = text("journey.tokens_with_class" if cfg.class_token else "journey.tokens", lang, tokens=tokens)
    return text("journey.summary", lang, size=cfg.image_size, patch=cfg.patch_size, patches=n, rows=rows, cols=cols,
                tokens=tokens_text, dim=cfg.embed_dim, depth=cfg.depth, params=total_params,
                millions=total_params / 1e6, flops=format_flops(flops))


def format_flops(flops: int) -> str:
    return f"{flops / 1e9:.2f} GFLOPs" if flops >= 1e9 else f"{flops / 1e6:.2f} MFLOPs"


# ---------------------------------------------------------------- one picture per stage


def stretch_channels(x: np.ndarray) -> np.ndarray:
    """(..., C) floats of any range → uint8 (..., 3), each channel stretched to 0–255 over all
    pixels (BatchNorm's output is centred on 0, so it is rescaled for display)."""
    x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1].repeat(3, -1)
    axes = tuple(range(x.ndim - 1))
    lo, hi = x.min(axis=axes), x.max(axis=axes)
    return np.round((x - lo) / np.maximum(hi - lo, 1e-8) * 255).astype(np.uint8)


def matrix_picture(matrix: np.ndarray, selected_row: int | None = None, min_height: int = 256,
                   target_width: int = 512) -> np.ndarray:
    """An (R, K) matrix as a heatmap (blue negative, grey zero, red positive), one band of pixels
    per row; a selected row gets red lines above and below it and a red marker on the left."""
    rows, cols = matrix.shape
    row_px = max(1, math.ceil(min_height / rows))
    width = cols * math.ceil(target_width / cols) if cols < target_width else min(cols, 2 * target_width)
    picture = resize(signed_heatmap(matrix), (rows * row_px, width), smooth=False).copy()
    margin = np.full((picture.shape[0], 12, 3), 255, np.uint8)
    if selected_row is not None:
        top, bottom = selected_row * row_px, (selected_row + 1) * row_px
        picture[max(0, top - 1)] = OUTLINE
        picture[min(len(picture) - 1, bottom)] = OUTLINE
        margin[max(0, top - 3):bottom + 3] = OUTLINE
    return np.concatenate([margin, picture], axis=1)


def patch_mosaic(patches: np.ndarray, grid: tuple[int, int], patch_size: int, selected: int | None = None,
                 min_tile: int = 24, gap: int = 3) -> np.ndarray:
    """(N, P·P·C) flattened patches → their P×P tiles laid out in order, row by row, with gaps."""
    p, rows, cols = patch_size, *grid
    tiles = stretch_channels(patches.reshape(len(patches), p, p, -1))  # (row, col, channel) order
    scale = math.ceil(min_tile / p)
    tile = p * scale
    canvas = np.full((rows * (tile + gap) + gap, cols * (tile + gap) + gap, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = gap + r * (tile + gap), gap + c * (tile + gap)
        canvas[top:top + tile, left:left + tile] = t.repeat(scale, 0).repeat(scale, 1)
    if selected is not None:
        r, c = divmod(selected, cols)
        top, left = r * (tile + gap), c * (tile + gap)
        canvas[top:top + tile + 2 * gap, left:left + tile + 2 * gap] = OUTLINE
        canvas[top + gap:top + gap + tile, left + gap:left + gap + tile] = tiles[selected].repeat(scale, 0).repeat(scale, 1)
    return canvas


def enlarge(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Integer nearest-neighbour upscaling of a small picture, so each model pixel stays a square."""
    return grid_map_image(image, max(1, math.ceil(min_side / min(image.shape[:2]))))


def mask_picture(logits: np.ndarray, grid: tuple[int, int], selected: int | None = None) -> np.ndarray:
    """(C, H, W) mask logits → the coloured argmax mask, the selected patch outlined."""
    picture = enlarge(colour_mask(logits.argmax(0), len(logits)))
    return picture if selected is None else outline_patch(picture, selected, grid)


def input_picture(image: np.ndarray, grid: tuple[int, int], selected: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 model input, enlarged, the selected patch outlined."""
    picture = enlarge(image)
    return picture if selected is None else outline_patch(picture, selected, grid)


def stage_picture(stage: Stage, grid: tuple[int, int], patch_size: int, selected: int | None = None) -> np.ndarray:
    """The picture that fits a stage's tensor (batch element 0): image, patch mosaic, token
    matrix (one row per token) or mask; `selected` marks that patch wherever it appears."""
    x = stage.tensor.numpy()
    x = x[0] if stage.axes[0] == "B" else x
    n_patches = grid[0] * grid[1]
    if stage.axes == ("B", "C", "H", "W"):
        if stage.step == 1:
            return input_picture(stretch_channels(x.transpose(1, 2, 0)), grid, selected)
        return mask_picture(x, grid, selected)
    if stage.axes[-2:] == ("h", "w"):  # a decoder feature map: how strongly each pixel responds
        energy = np.sqrt((x**2).mean(0))
        return enlarge(colourise(energy / max(1e-9, energy.max()), VIRIDIS))
    if stage.step == 2 and stage.axes[-1] == "PPC":
        return patch_mosaic(x, grid, patch_size, selected)
    if stage.axes[-2:] == ("gh", "gw"):  # a convolution's (D, gh, gw) output: one column per patch
        x = x.reshape(x.shape[0], -1).T
    if x.ndim == 1:  # a class head's (K,) scores: one row
        return matrix_picture(x[None])
    extra = x.shape[0] - n_patches  # 1 when a class token row comes first
    row = selected + extra if selected is not None and extra in (0, 1) else None
    return matrix_picture(x, row)


def journey_pictures(analysis: Analysis, selected: int | None = None,
                     lang: str = DEFAULT) -> list[tuple[np.ndarray, str]]:
    """(picture, caption in `lang`) for the model's input, then for every stage of the traced pass."""
    size = analysis.image_size
    image = (analysis.image.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    pictures = [(input_picture(image, analysis.grid, selected), text("journey.input_caption", lang, size=size))]
    for s in analysis.trace.stages:
        pictures.append((stage_picture(s, analysis.grid, analysis.patch_size, selected),
                         f"{s.step} · {s.name} {s.shape_str()}"))
    return pictures


# ---------------------------------------------------------------- what if


WHAT_IF_LIMITS = {"image_size": (8, 1024), "patch_size": (1, 256), "embed_dim": (4, 4096),
                  "num_heads": (1, 64), "depth": (1, 48)}


def what_if(base: ViTConfig, image_size: float, patch_size: float, embed_dim: float, num_heads: float,
            depth: float, class_token: bool, pos_embed: str, lang: str = DEFAULT) -> tuple[ViTConfig, Trace, int]:
    """The configuration `base` with these settings changed, its traced shapes and its parameter
    count, from a model built on the 'meta' device (no memory, no weights). Raises ValueError
    with a one-line reason for settings that cannot make a model (in `lang`, except the model's
    own checks)."""
    sizes = dict(image_size=image_size, patch_size=patch_size, embed_dim=embed_dim, num_heads=num_heads, depth=depth)
    for name, value in sizes.items():
        label = text(f"journey.{name}", lang)
        if value is None or not float(value).is_integer():
            raise ValueError(text("journey.not_whole", lang, label=label, value=value))
        lo, hi = WHAT_IF_LIMITS[name]
        if not lo <= value <= hi:
            raise ValueError(text("journey.out_of_range", lang, label=label, low=lo, high=hi, value=int(value)))
    if pos_embed not in KINDS:
        raise ValueError(text("journey.unknown_kind", lang, kinds=", ".join(KINDS), value=repr(pos_embed)))
    changes = {name: int(value) for name, value in sizes.items()}
    # A classification head reads the class token, so it goes when the class token goes.
    num_classes = base.num_classes if class_token else 0
    cfg = ViTConfig(**{**base.to_dict(), **changes, "class_token": bool(class_token), "pos_embed": pos_embed,
                       "num_classes": num_classes})
    with torch.device("meta"):  # the forward pass too: sinusoidal tables are built in it
        model = SegmentationViT(cfg)
        trace = trace_blank(model)
    return cfg, trace, model.num_params()


# ---------------------------------------------------------------- linear vs Conv2d


def comparison_embed(model: SegmentationViT) -> LinearPatchEmbed:
    """The model's own linear patch embedding, or a fresh one of the same size for models that
    tokenize with a convolution (fixed seed, so the comparison is repeatable)."""
    if isinstance(model.patch_embed, LinearPatchEmbed):
        return model.patch_embed
    cfg = model.cfg
    embed = LinearPatchEmbed(cfg.patch_size, cfg.in_channels, cfg.embed_dim)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        torch.nn.init.trunc_normal_(embed.proj.weight, std=0.02, generator=generator)
    return embed


@torch.no_grad()
def linear_conv_difference(embed: LinearPatchEmbed, images: torch.Tensor) -> float:
    """Max |difference| between the tokens of `embed` (patchify + nn.Linear) and of the Conv2d
    with the same weights (kernel = stride = P) on the (B, C, H, W) `images`."""
    grid_size(images.shape[-2:], embed.patch_size)  # a clear error for a size that does not divide
    conv = linear_to_conv(embed)
    return (embed(images) - conv(images)).abs().max().item()
