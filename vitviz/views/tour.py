"""The guided tour: from the photo to the mask in nine steps, each shown by one tab of the app.

A step is a name (its texts are "tour.<name>.title", ".text" and ".numbers" in the catalogs) and
the id of the tab that shows it. The numbers a step quotes (grid, shapes, heads…) come from the
current photo's forward pass. No Gradio here: vitviz/ui/tour.py wires the panel.
"""

from dataclasses import dataclass

from vitviz.app.i18n import class_values, text
from vitviz.app.inference import Analysis
from vitviz.model.knockout import KnockOut
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.views.knockout import changed_share, knocked_out_probs
from vitviz.views.segment import class_shares


@dataclass(frozen=True)
class Step:
    name: str
    tab: str  # the id of the tab that shows this step


STEPS = (
    Step("patches", "journey"),
    Step("embedding", "journey"),
    Step("position", "positions"),
    Step("attention", "attention"),
    Step("mlp", "journey"),
    Step("head", "journey"),
    Step("mask", "segment"),
    Step("training", "epochs"),
    Step("knockout", "knockout"),
)


def clamp(index: int) -> int:
    """`index` moved into the tour: 0 … len(STEPS) - 1."""
    return min(max(int(index), 0), len(STEPS) - 1)


def facts(analysis: Analysis, cfg: ViTConfig, snapshots: list[int], lang: str) -> dict[str, object]:
    """The numbers the step texts quote, for this photo's forward pass by a model with `cfg` whose
    folder saved weight `snapshots`; the few words among them are in `lang`."""
    rows, cols = analysis.grid
    h, w = analysis.photo.shape[:2]
    p, d = analysis.patch_size, cfg.embed_dim
    tokens = rows * cols + (1 if analysis.has_class_token else 0)
    shares = class_shares(analysis.mask_at_photo_size(), analysis.probs.shape[0])
    return dict(
        width=w, height=h, size=analysis.image_size, rows=rows, cols=cols, patches=rows * cols, patch=p,
        ppc=p * p * cfg.in_channels, dim=d, tokens=tokens, heads=cfg.num_heads, depth=cfg.depth,
        head_dim=d // cfg.num_heads, hidden=int(d * cfg.mlp_ratio), classes=analysis.probs.shape[0],
        embedded=_shape(analysis, 3), position=_shape(analysis, 4), block=_shape(analysis, 6, first=True),
        head_out=_shape(analysis, 7), mask=_shape(analysis, 8),
        pos_kind=text(f"positions.kind_{cfg.pos_embed}", lang),
        shares=class_values(shares, lang, ".0%"),
        snapshots=", ".join(map(str, snapshots)) or text("tour.no_snapshots", lang),
        # What this model's tokenizer and head are: the texts of steps 2 and 6 depend on them.
        tokenizer=text(f"tour.tokenizer.{cfg.patch_embed}", lang, ppc=p * p * cfg.in_channels, patch=p,
                       downs=p.bit_length() - 1),
        head_kind=text(f"tour.head_kind.{cfg.head}", lang, ppc=p * p * cfg.out_channels, patch=p),
    )


def knockout_facts(model: SegmentationViT, analysis: Analysis) -> dict[str, object]:
    """The knock-out step's numbers, measured on this photo: the share of mask pixels that change
    without the position embedding, and without the block whose removal changes most
    (2 forward passes for each, about 0.2 s for the default model)."""
    mask = analysis.probs.argmax(0)

    def share(knockout: KnockOut) -> float:
        return changed_share(mask, knocked_out_probs(model, analysis.image, knockout).argmax(0))

    blocks = [share(KnockOut(attention={b}, mlp={b})) for b in range(model.cfg.depth)]
    top = max(range(len(blocks)), key=blocks.__getitem__)
    return dict(position=share(KnockOut(position=True)), block=top + 1, block_share=blocks[top])


def step_markdown(index: int, lang: str, numbers: dict[str, object] | None) -> str:
    """The step's title, its explanation and, when there is a photo, its numbers for that photo."""
    name = STEPS[clamp(index)].name
    numbers_line = text(f"tour.{name}.numbers", lang, **numbers) if numbers else text("tour.no_photo", lang)
    return f"### {text(f'tour.{name}.title', lang)}\n\n{text(f'tour.{name}.text', lang)}\n\n{numbers_line}"


def progress_markdown(index: int, lang: str) -> str:
    """"Step k of 8" and the short names of all steps, the current one in bold."""
    index = clamp(index)
    names = [text(f"tour.{step.name}.name", lang) for step in STEPS]
    names[index] = f"**{names[index]}**"
    return f"{text('tour.progress', lang, step=index + 1, total=len(STEPS))} · {' → '.join(names)}"


def _shape(analysis: Analysis, step: int, first: bool = False) -> str:
    """The shape (with axis names) of the last (or first) traced stage of journey step `step`."""
    stages = [s for s in analysis.trace.stages if s.step == step]
    return (stages[0] if first else stages[-1]).shape_str() if stages else "–"
