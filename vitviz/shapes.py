"""Print the tensor journey of a model: `python -m vitviz.shapes --preset seed`.

Shapes come from one real forward pass of a blank image (untrained weights, or a checkpoint's),
so they are what the model really does, including the functional steps (patchify, + position,
patches back to a mask).
"""

import argparse
import sys

import torch

from vitviz.model.trace import Trace
from vitviz.model.vit import SegmentationViT, ViTConfig
from vitviz.training.checkpoint import CheckpointError, load_model
from vitviz.training.cli import add_dataclass_flags, overrides
from vitviz.training.presets import PRESETS, preset


def trace_blank(model: SegmentationViT, image_size: int | None = None) -> Trace:
    """Shapes and parameter counts of one forward pass of a blank image (works on 'meta')."""
    size = image_size or model.cfg.image_size
    device = next(model.parameters()).device
    trace = Trace(keep_tensors=False)
    with torch.no_grad():
        model.eval()(torch.zeros(1, model.cfg.in_channels, size, size, device=device), trace)
    return trace


def format_table(trace: Trace, total_params: int) -> str:
    rows = [("step", "stage", "shape", "parameters")]
    for s in trace.stages:
        rows.append((str(s.step), s.name, s.shape_str(), f"{s.params:,}" if s.params else ""))
    rows.append(("", "total", "", f"{total_params:,} ({total_params / 1e6:.2f}M)"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.shapes", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", default="seed", choices=list(PRESETS))
    source.add_argument("--checkpoint", help="a checkpoint folder")
    parser.add_argument("--input-size", type=int, default=None, help="run at another image size than trained")
    add_dataclass_flags(parser, ViTConfig, "model (overrides the preset)")
    args = parser.parse_args(argv)
    try:
        if args.checkpoint:
            model = load_model(args.checkpoint)
        else:
            cfg = preset(args.preset, overrides(args, ViTConfig))[0]
            with torch.device("meta"):  # shapes only: no memory or time spent on random weights
                model = SegmentationViT(cfg)
        trace = trace_blank(model, args.input_size)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(trace, model.num_params()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
