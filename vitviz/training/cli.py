"""Command-line flags generated from the config dataclasses, so every field can be overridden."""

import argparse
import dataclasses
import typing

ALIASES = {"num_heads": ["--heads"], "embed_dim": ["--width"]}


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    """--field-name for every field of `cls`, defaulting to None (= keep the preset's value)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if hint is bool:
            group.add_argument(flag, *ALIASES.get(f.name, []), dest=f.name, type=_parse_bool, default=None,
                               metavar="{true,false}")
        elif typing.get_origin(hint) is list:
            group.add_argument(flag, dest=f.name, type=int, nargs="+", default=None)
        else:
            group.add_argument(flag, *ALIASES.get(f.name, []), dest=f.name, type=hint, default=None)


def overrides(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
