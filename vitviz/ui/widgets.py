"""What the tabs share besides the `Context`: their pictures and formula boxes, the saved-PNG list,
the cached analysis with its refusals, and the one place where what the browser sends (a click,
a slider, a radio button) is checked.
"""

import math
import reprlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from vitviz.app.i18n import DEFAULT, LANGUAGES, text
from vitviz.app.inference import Analysis
from vitviz.training.checkpoint import CheckpointError
from vitviz.ui.context import AnalysisKey, Context
from vitviz.views.pictures import centre_patch, click_to_patch

# The delimiters of the formulas in the tabs' Markdown: $$display$$ and $inline$.
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


# Gradio writes a few words of its own (the upload box's "Drop File Here", the camera's "Click to
# Access Webcam") in the browser's language and cannot switch them at run time. The page's language
# picker marks <body data-lang="…"> and this style sheet puts our words for that language in their
# place. {element that holds Gradio's words: the key of ours}
UPLOAD_WORDS = '#upload [data-testid="upload-text"]'  # "Drop File Here <span class="or">- or -</span> Click to Upload"
GRADIO_WORDS = {UPLOAD_WORDS: "shell.drop_photo", '#camera [title="grant webcam access"] .wrap': "shell.use_camera"}


def css_string(words: str) -> str:
    """`words` as a CSS string literal (line breaks kept: `white-space: pre-line`)."""
    return '"' + words.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\A ") + '"'


def gradio_words_css() -> str:
    """CSS that hides Gradio's own words in `GRADIO_WORDS`' elements (their icons stay) and shows
    ours in the language <body data-lang> names."""
    rules = [f"body[data-lang] {UPLOAD_WORDS} .or {{ display: none; }}"]  # the one word in an element of its own
    for element, key in GRADIO_WORDS.items():
        rules.append(f"body[data-lang] {element} {{ font-size: 0; }}\n"
                     f"body[data-lang] {element} > * {{ font-size: var(--text-lg); }}")
        rules += [f"body[data-lang=\"{lang}\"] {element}::after {{ content: {css_string(text(key, lang))}; "
                  f"white-space: pre-line; font-size: var(--text-lg); }}" for lang in LANGUAGES]
    return "\n".join(rules)


def figure(label: str, elem_id: str | None = None, fast: bool = False) -> gr.Image:
    """A picture the user can enlarge but not edit. The label names it for screen readers and the
    API but is not shown: Gradio would draw it over the picture's corner.

    By default it is sent as PNG with a download button. `fast` pictures, redrawn on every click,
    are sent as JPEG (a photo-sized PNG takes longer to encode than to draw) without a download
    button: the tab offers their PNG files on demand instead."""
    if fast:
        return gr.Image(label=label, show_label=False, interactive=False, format="jpeg", buttons=["fullscreen"],
                        elem_id=elem_id)
    return gr.Image(label=label, show_label=False, interactive=False, format="png",
                    buttons=["download", "fullscreen"], elem_id=elem_id)


def about(ctx: "Context", key: str, **markdown_options) -> None:
    """A tab's introduction (the text `key`), folded away under "About this tab": the tab's main
    picture comes first on the screen, its explanation one click away."""
    with ctx.localized(gr.Accordion, {"label": "shell.about_tab"}, open=False):
        ctx.localized(gr.Markdown, {"value": key}, **markdown_options)


def saved_files(ctx: "Context", elem_id: str) -> gr.File:
    """Where a tab lists the PNG files its "save" button wrote. Hidden until a save; a tab hides it
    again when it draws a new photo (`HIDE_SAVED`). Clicks leave it as it is: the file names say
    which patch and layer they show, and every output an event returns, even a gr.skip(), costs
    Gradio a rebuild of that component's config."""
    return ctx.localized(gr.File, {"label": "attention.saved"}, file_count="multiple", visible=False,
                         interactive=False, elem_id=elem_id)


def show_saved(paths: list[Path]) -> dict:
    return gr.update(value=[str(p) for p in paths], visible=True)


HIDE_SAVED = gr.update(value=None, visible=False)


def load_analysis(ctx: Context, key: AnalysisKey | None, warn: bool = True, lang: str = DEFAULT) -> Analysis | None:
    """The cached analysis of the current photo, or None (with a message in `lang`) when there is none."""
    if key is None:
        if warn:
            gr.Warning(text("shell.no_photo", lang))
        return None
    try:
        return ctx.analysis_for(key, lang)
    except CheckpointError as e:
        raise gr.Error(text("shell.checkpoint_refused", lang, reason=e)) from None


# --- what the browser sends: every handler checks it here -------------------------------------
# A browser sends what its widgets allow, but anyone can call the API with anything. What cannot be
# used gets a one-line gr.Error, logged without a traceback, and the views stay as they are.

# The selected point: one place on the photo for the whole app, kept in the shell's `ctx.point` as
# (x, y) fractions of the photo's width and height. Each tab maps it to its own patch grid, so a
# click survives a change of tab, epoch or checkpoint (another grid) and stays on the same spot.
Point = tuple[float, float]


def clicked_point(index: Any, shown: tuple[int, int], lang: str = DEFAULT) -> Point | None:
    """The point under a click on a picture of the photo shown at `shown` (height, width), from the
    click's `gr.SelectData.index`: the one place where the tabs' clicks on the photo become points.
    A click outside the picture (an edge pixel that a browser rounds out) gets a warning and None,
    and the tab draws nothing new."""
    x, y = click_point(index, lang)
    height, width = shown
    if not (0 <= x <= width and 0 <= y <= height):
        gr.Warning(text("shell.click_outside", lang, reason=f"the click at ({x:g}, {y:g}) is outside the "
                                                               f"{width}x{height} picture"))
        return None
    return x / width, y / height


def patch_at(point: Any, grid: tuple[int, int]) -> int:
    """The patch of `grid` under the selected point; the centre patch while nothing is selected."""
    if not (isinstance(point, (list, tuple)) and len(point) == 2 and all(map(_finite, point))
            and all(0 <= v <= 1 for v in point)):
        return centre_patch(grid)
    return click_to_patch(point[0], point[1], 1, 1, grid)


def click_point(index: Any, lang: str = DEFAULT) -> tuple[float, float]:
    """(x, y) of a click on a picture, from `gr.SelectData.index`; anything but two finite numbers
    (["a", "b"], [1], "xyz", None, NaN) is refused."""
    if not (isinstance(index, (list, tuple)) and len(index) == 2 and all(map(_finite, index))):
        raise gr.Error(text("shell.bad_click", lang, index=reprlib.repr(index)), print_exception=False)
    return index[0], index[1]


def whole_number(value: Any, low: int, high: int, what: str, lang: str = DEFAULT) -> int:
    """A slider's value, rounded and clamped to low…high. Out of range is no error: a slider may
    still hold a value for the previous checkpoint (layer 12 of a 4-layer model). Anything but a
    finite number is refused, naming `what` (the slider's label in `lang`)."""
    return min(max(round(number(value, what, lang)), low), high)


def number(value: Any, what: str, lang: str = DEFAULT) -> int | float:
    """`value` when it is a finite number, else refused, naming `what` (the field's label in `lang`)."""
    if not _finite(value):
        raise gr.Error(text("shell.bad_number", lang, what=what, value=reprlib.repr(value)), print_exception=False)
    return value


def one_of(value: Any, choices: Sequence[str], what: str, lang: str = DEFAULT) -> str:
    """`value` when it is one of `choices` (a radio button's values), else refused, naming `what`."""
    if value not in choices:
        raise gr.Error(text("shell.bad_choice", lang, what=what, choices=", ".join(choices),
                            value=reprlib.repr(value)), print_exception=False)
    return value


def flag(value: Any, what: str, lang: str = DEFAULT) -> bool:
    """A checkbox's value: True or False, else refused, naming `what`."""
    if not isinstance(value, bool):
        raise gr.Error(text("shell.bad_choice", lang, what=what, choices="true, false", value=reprlib.repr(value)),
                       print_exception=False)
    return value


def some_of(values: Any, choices: Sequence, what: str, lang: str = DEFAULT) -> list:
    """`values` when it is a list of `choices` (a checkbox group's values), else refused, naming `what`.
    A value kept from another checkpoint's choices (block 6 of a 4-block model) is dropped, not refused."""
    if values is None:
        return []
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                        for v in values):
        raise gr.Error(text("shell.bad_choice", lang, what=what, choices=", ".join(map(str, choices)),
                            value=reprlib.repr(values)), print_exception=False)
    return [v for v in values if v in choices]


def _finite(value: Any) -> bool:
    """A number a widget can send: not a bool, a string, None, NaN, infinity, or an integer too
    large for a float (a click or a layer that far out is no click or layer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
