"""The app's texts in English, Japanese and simplified Chinese.

Each language has one catalog, `vitviz/app/locales/<code>.toml`, with one table per tab or concern
(`[shell]`, `[segment]`, `[attention]`, `[tour]`, …); a text is named by its dotted key, e.g.
"attention.intro". Texts that quote numbers have `str.format` placeholders ("{rows}×{cols}"),
the same ones in every language (tests/test_i18n.py checks).
"""

import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

LANGUAGES = {"en": "English", "ja": "日本語", "zh": "简体中文"}
DEFAULT = "en"
LOCALES = Path(__file__).parent / "locales"


@cache
def catalog(lang: str) -> dict[str, str]:
    """Every text of language `lang`, by dotted key (read once)."""
    with open(LOCALES / f"{lang}.toml", "rb") as f:
        return dict(_flatten(tomllib.load(f)))


def _flatten(table: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    for name, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def text(key: str, lang: str = DEFAULT, **values) -> str:
    """The text `key` in `lang` (English for an unknown language), its placeholders filled from
    `values`. A text asked for without values is returned as written, so the LaTeX braces of a
    formula need no escaping; a text with placeholders writes a literal brace as {{ or }}."""
    template = catalog(lang if lang in LANGUAGES else DEFAULT)[key]
    return template.format(**values) if values else template


def class_name(name: str, lang: str = DEFAULT) -> str:
    """A mask class's name in `lang`: the dataset's pet, background and border are translated,
    other names ("class 3") are kept."""
    return text(f"classes.{name}", lang) if f"classes.{name}" in catalog(DEFAULT) else name


def class_values(values: dict[str, float], lang: str, spec: str) -> str:
    """{"pet": 0.52, …} → "pet 52%, background …" in `lang`, each value formatted with `spec`."""
    return text("shell.list_separator", lang).join(f"{class_name(name, lang)} {value:{spec}}"
                                                   for name, value in values.items())


def language_from_browser(tag: str | None) -> str:
    """A browser's language tag (`navigator.language`: "ja-JP", "zh-CN", "zh-Hant-TW", "en-GB")
    → the code of the app language to start in. Every Chinese tag gets simplified Chinese, the
    only Chinese catalog; a language the app does not have gets English."""
    primary = (tag or "").strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in LANGUAGES else DEFAULT
