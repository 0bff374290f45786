"""The three catalogs: the same keys and placeholders everywhere, and the browser's language picked right."""

import re

import pytest

from vitviz.app import i18n

# A str.format field: {name}, {name:.1%} or {name!r}; LaTeX braces in formulas ({x}, {D_h}) look the
# same and are compared too, so a translated formula must keep them.
FIELD = re.compile(r"(?<!\{)\{(\w+)(?:[:!][^{}]*)?\}(?!\})")


def placeholders(template: str) -> set[str]:
    return set(FIELD.findall(template))


@pytest.mark.parametrize("lang", [code for code in i18n.LANGUAGES if code != i18n.DEFAULT])
def test_every_key_exists_in_every_language_with_the_same_placeholders(lang):
    english, other = i18n.catalog(i18n.DEFAULT), i18n.catalog(lang)
    assert sorted(set(english) - set(other)) == [], f"missing in {lang}"
    assert sorted(set(other) - set(english)) == [], f"only in {lang}"
    for key, template in english.items():
        assert placeholders(other[key]) == placeholders(template), key
        assert other[key].strip(), key


@pytest.mark.parametrize("lang", list(i18n.LANGUAGES))
def test_every_text_is_a_string_whose_markdown_emphasis_closes(lang):
    """CommonMark does not close `**bold：**` before a Chinese or Japanese letter: the stars would show."""
    markdown = pytest.importorskip("markdown_it").MarkdownIt("commonmark")
    for key, value in i18n.catalog(lang).items():
        assert isinstance(value, str), key
        if "$" not in value:  # formulas are rendered by KaTeX, not Markdown
            html = re.sub(r"<code>.*?</code>", "", markdown.render(FIELD.sub("x", value)))
            assert "*" not in html.replace("P·P·C", ""), key


def test_texts_are_filled_in_and_formulas_left_as_written():
    assert i18n.text("journey.token", "en", token=5) == "token 5"
    assert i18n.text("epochs.pixel_accuracy", "ja", value=0.5) == "ピクセル精度 **50.0%**"
    assert r"\frac{HW}{P^2}" in i18n.text("journey.formulas", "zh")  # no values: braces untouched
    assert i18n.text("shell.checkpoint", "fr") == "Checkpoint"  # an unknown language falls back to English


def test_class_names_are_translated_and_others_kept():
    assert [i18n.class_name(name, "zh") for name in ("pet", "background", "border")] == ["宠物", "背景", "边缘"]
    assert i18n.class_name("class 3", "ja") == "class 3"


@pytest.mark.parametrize("tag, lang", [
    ("ja-JP", "ja"), ("ja", "ja"), ("zh-CN", "zh"), ("zh-Hans", "zh"), ("zh-TW", "zh"), ("zh-Hant-HK", "zh"),
    ("zh_CN", "zh"), ("en-GB", "en"), ("fr-FR", "en"), ("", "en"), (None, "en"), ("JA-jp", "ja"),
])
def test_the_browser_language_picks_the_catalog(tag, lang):
    assert i18n.language_from_browser(tag) == lang


def test_gradios_own_words_give_way_to_ours_in_every_language():
    from vitviz.ui.widgets import GRADIO_WORDS, css_string, gradio_words_css

    css = gradio_words_css()
    for element, key in GRADIO_WORDS.items():
        for lang in i18n.LANGUAGES:
            assert f'body[data-lang="{lang}"] {element}::after {{ content: {css_string(i18n.text(key, lang))};' in css
    assert css_string('say "hi"\\now\nthen') == '"say \\"hi\\"\\\\now\\A then"'  # quotes, backslashes, line breaks
