"""vitviz: see inside a Vision Transformer that segments pets.

    python app.py                       # http://127.0.0.1:7860, offline, CPU is enough
    python app.py --checkpoint runs/seed-small --data-root /path/to/data

The shell holds the photo, checkpoint and epoch pickers. Whenever one of them changes it runs the
model once (cached) and stores the new `AnalysisKey` in `ctx.analysis`; then the tab on screen
redraws, and each other tab redraws when it is opened (`ui.lazy`).
The header holds the language picker (it re-labels every localized component, then redraws the
tabs in the new language) and the presenter-mode switch; the guided tour sits above the tabs.
"""

import argparse
import atexit
import ipaddress
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import torch
from gradio.utils import is_prop_update

from vitviz.app import gradio_fixes, sources
from vitviz.app.i18n import DEFAULT, LANGUAGES, language_from_browser, text
from vitviz.app.inference import Analysis, ModelCache
from vitviz.app.malloc import bound_fragmentation, trim_every
from vitviz.app.photos import MAX_BYTES, PhotoError, load_photo_rgb
from vitviz.training.checkpoint import CheckpointError, PathNotAllowed
from vitviz.ui import attention, epochs, journey, knockout, positions, segment, tour, train
from vitviz.ui.context import AnalysisKey, Context, PhotoStore
from vitviz.ui.lazy import draw_now, lazy, want
from vitviz.ui.widgets import gradio_words_css
from vitviz.views.pictures import fit_photo

TABS = (segment, journey, positions, attention, knockout, epochs)  # a tab's title is the text "shell.tab_<its id>"
# System fonts only: the default themes would fetch Google Fonts, and a classroom may be offline.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = Path(__file__).parent / "vitviz" / "ui" / "style.css"  # presenter mode, projector-friendly sizes
# Presenter mode is a class on the page's body, switched in the browser (no server round trip).
PRESENTER_JS = "(on) => { document.body.classList.toggle('presenter', on); }"
LANGUAGE_JS = "(lang) => { document.body.dataset.lang = lang; }"  # for `widgets.gradio_words_css`
# At most CONCURRENCY events compute at once (one per core) and at most QUEUE_SIZE wait: a burst
# of clicks gets "queue full" instead of piling up work and memory.
CONCURRENCY = min(4, os.cpu_count() or 1)
QUEUE_SIZE = 64
# Gradio keeps each session (a page load) until this many newer ones have been used: its States
# and its own copy of every component's config, about 0.4 MB for this app. Gradio's default of
# 10,000 would let a classroom's page reloads grow the server by gigabytes.
SESSIONS_KEPT = 256
TRIM_SECONDS = 10  # how often the free pages of the C heap go back to the system (vitviz/app/malloc.py)
RESCAN_SECONDS = 5  # how often the checkpoint picker looks for new runs and snapshots


def reachable_from_elsewhere(host: str, share: bool) -> bool:
    """Whether other computers can reach the app: it listens on an address beyond this computer's
    loopback (0.0.0.0, a network address, a host name), or has a public --share link."""
    if host == "localhost":
        return share
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # another host name: it may resolve to any interface
        loopback = False
    return share or not loopback


def training_locked(args: argparse.Namespace) -> bool:
    """Training is for the person who runs the app: from a page that other computers can reach, it
    is off unless that person passed --allow-remote-training."""
    return reachable_from_elsewhere(args.host, args.share) and not args.allow_remote_training


def tab_id(module) -> str:
    """A tab's id: the name of its module ("epochs"), the same in every language."""
    return module.__name__.rsplit(".", 1)[-1]


def build_app(checkpoint: str | os.PathLike = "checkpoints/default", checkpoints_dir: str | os.PathLike = "checkpoints",
              runs_dir: str | os.PathLike = "runs", data_root: str | os.PathLike | None = None,
              training_locked: bool = False) -> gr.Blocks:
    """The app's page. `training_locked` turns off the Train tab's Start, Stop and Resume (see
    `vitviz.ui.train`); every other tab stays open."""
    found = sources.find_checkpoints(checkpoints_dir, runs_dir)
    start = sources.default_checkpoint(checkpoint, found)
    if start is not None and start not in found.values():
        found[str(start)] = start
    start_name = next((name for name, folder in found.items() if folder == start), None)
    ctx = Context(ModelCache(), PhotoStore(), found, runs_dir=Path(runs_dir), data_root=data_root)
    allowed = [checkpoints_dir, runs_dir, *([start] if start else [])]  # the UI may only open these
    notes = []  # (key, values) of the notes shown under the header for as long as the app runs
    if start is None:
        notes.append(("shell.no_checkpoint", dict(checkpoints=checkpoints_dir, runs=runs_dir)))
    elif start != Path(checkpoint).resolve():
        print(f"vitviz: {checkpoint} is not a checkpoint folder; opening {start_name}")

    examples = sources.bundled_examples()
    try:
        examples += sources.dataset_examples(data_root)
    except (OSError, ValueError) as e:
        notes.append(("shell.no_dataset_examples", dict(reason=e)))
    examples = sources.with_thumbnails(examples)

    def notes_text(lang: str) -> str:
        return "  \n".join(text(key, lang, **values) for key, values in notes)

    def status_text(analysis: Analysis, checkpoint_name: str, epoch_choice: str, lang: str) -> str:
        (rows, cols), (h, w) = analysis.grid, analysis.photo.shape[:2]
        epoch_label = {value: label for label, value in sources.epoch_choices(ctx.checkpoints[checkpoint_name], lang)}
        return text("shell.status", lang, checkpoint=checkpoint_name, epoch=epoch_label.get(epoch_choice, epoch_choice),
                    width=w, height=h, size=analysis.image_size, rows=rows, cols=cols, patch=analysis.patch_size)

    def run_model(photo_id: str | None, checkpoint_name: str | None, epoch_choice: str | None,
                  lang: str = DEFAULT) -> tuple[AnalysisKey | None, str]:
        """Run the model once for the current choice, or find its cached analysis → (analysis key,
        status line)."""
        try:
            folder = sources.checkpoint_folder(checkpoint_name, ctx.checkpoints, allowed)
        except PathNotAllowed as e:
            return None, text("shell.checkpoint_refused", lang, reason=e)
        if folder is None:
            return None, text("shell.no_checkpoint_to_run", lang)
        if photo_id is None:
            return None, text("shell.pick_photo", lang)
        key = AnalysisKey(photo_id, str(folder), sources.parse_epoch(epoch_choice))
        try:
            analysis = ctx.analysis_for(key, lang)
        except CheckpointError as e:
            message = text("shell.checkpoint_refused", lang, reason=e)
            gr.Warning(message)
            return None, message
        return key, status_text(analysis, checkpoint_name, epoch_choice, lang)

    def analyse(photo_id: str | None, checkpoint_name: str | None, epoch_choice: str | None, lang: str = DEFAULT):
        """Run the model once for the current choice (the tabs then read the cache) →
        (analysis key, status line, photo preview)."""
        preview = fit_photo(ctx.photos.get(photo_id, lang), 240) if photo_id else None
        return *run_model(photo_id, checkpoint_name, epoch_choice, lang), preview

    # A photo that cannot be read raises a one-line gr.Error; it only touches the hidden photo
    # id (so no component shows an error badge) and `.success` stops the redraw there.
    def use_upload(path: str | None, lang: str = DEFAULT):
        if path is None:
            return gr.skip()
        try:
            return ctx.photos.put(load_photo_rgb(path))
        except PhotoError as e:
            raise gr.Error(text("shell.bad_upload", lang, reason=e), print_exception=False) from None

    def empty_drop_zone() -> None:
        return None

    def use_example(index: int, lang: str) -> tuple:
        """(photo id, cleared upload box) for example `index`."""
        try:
            photo = load_photo_rgb(examples[index][0])
        except PhotoError as e:
            raise gr.Error(text("shell.bad_example", lang, reason=e), print_exception=False) from None
        return ctx.photos.put(photo, sources.example_truth(examples[index][0])), None

    def pick_example(evt: gr.SelectData, lang: str = DEFAULT) -> tuple:
        return use_example(evt.index, lang)

    def first_example(lang: str = DEFAULT) -> tuple:
        return use_example(0, lang) if examples else (None, None)

    def use_checkpoint(name: str | None, lang: str = DEFAULT):
        try:
            folder = sources.checkpoint_folder(name, ctx.checkpoints, allowed)
        except PathNotAllowed:
            return gr.update(choices=sources.epoch_choices(None, lang), value=sources.FINAL)  # analyse says why
        return gr.update(choices=sources.epoch_choices(folder, lang), value=sources.FINAL)

    def rescan(current: str | None, lang: str = DEFAULT):
        ctx.checkpoints.update(sources.find_checkpoints(checkpoints_dir, runs_dir))
        epochs_now = sources.epoch_choices(ctx.checkpoints.get(current), lang)
        return gr.update(choices=list(ctx.checkpoints)), gr.update(choices=epochs_now)

    def rescan_if_changed(current: str | None, shown: list | None, lang: str = DEFAULT):
        pickers = rescan(current, lang)
        choices = [pickers[0]["choices"], pickers[1]["choices"]]
        return (gr.skip(), gr.skip(), shown) if choices == shown else (*pickers, choices)

    # Every click writes its pictures into Gradio's file cache: files older than an hour go, every 10 minutes.
    with gr.Blocks(title="vitviz", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        ctx.analysis = gr.State(None)
        ctx.point = gr.State(None)  # the selected point on the photo, shared by every tab
        photo_id = gr.State(None)
        # The pickers live in a sidebar, so that the tabs, and each tab's main picture, start at the
        # top of the window (at 1440×900, and at 1280×720 in presenter mode).
        with gr.Sidebar(width=300, elem_id="pickers"):
            ctx.language = ctx.localized(gr.Radio, {"label": "shell.language"}, elem_id="language",
                                         choices=[(name, code) for code, name in LANGUAGES.items()], value=DEFAULT)
            presenter = ctx.localized(gr.Checkbox, {"label": "shell.presenter"}, value=False, elem_id="presenter")
            upload = ctx.localized(gr.File, {"label": "shell.upload"}, file_types=["image"], height=110,
                                   elem_id="upload")
            # A webcam snapshot or a pasted picture: Gradio hands over the file as it came (type
            # "filepath", no image_mode: it reads only the header), and the shell decodes it as an upload.
            camera = ctx.localized(gr.Image, {"label": "shell.camera"}, sources=["webcam", "clipboard"],
                                   type="filepath", image_mode=None, height=210, elem_id="camera",
                                   webcam_options=gr.WebcamOptions(mirror=False))
            preview = ctx.localized(gr.Image, {"label": "shell.preview"}, interactive=False, height=130,
                                    format="png", buttons=[], elem_id="preview")
            gallery = ctx.localized(gr.Gallery, {"label": "shell.examples"},
                                    value=[(thumb, caption) for _, caption, thumb in examples], columns=2,
                                    height=220, allow_preview=False, object_fit="cover", format="png",
                                    elem_id="examples")
            checkpoint_dd = ctx.localized(gr.Dropdown, {"label": "shell.checkpoint"}, choices=list(found),
                                          value=start_name)
            epoch_dd = ctx.localized(gr.Dropdown, {"label": "shell.epoch"}, choices=sources.epoch_choices(start),
                                     value=sources.FINAL)
            status = gr.Markdown(elem_id="status")
            rescan_btn = ctx.localized(gr.Button, {"value": "shell.rescan"}, size="sm", variant="secondary")
        ctx.localized(gr.Markdown, {"value": "shell.intro"}, elem_id="intro")
        browser_language = gr.Textbox(visible=False)  # navigator.language, read when the page loads
        ctx.localized(gr.Markdown, {"value": notes_text}, visible=bool(notes))

        guide = tour.build(ctx)
        refreshes = [(None, guide.refresh)]  # (tab id, Refresh); the tour quotes the photo's numbers: redrawn too
        shown_tab = gr.State(tab_id(TABS[0]))  # the tab on screen: tabs draw only there
        tabs = {}  # tab id → its gr.Tab
        with gr.Tabs(overflow_behavior="wrap") as tab_bar:  # every tab title on screen, never in a menu
            for module in TABS:
                with ctx.localized(gr.Tab, {"label": f"shell.tab_{tab_id(module)}"}, id=tab_id(module)) as tab:
                    built = module.build(ctx)
                    refreshes += [(tab_id(module), refresh) for refresh in (built if isinstance(built, list) else [built])]
                tabs[tab_id(module)] = tab
            # Train starts and watches training jobs; it does not redraw for the photo.
            with ctx.localized(gr.Tab, {"label": "shell.tab_train"}, id=tab_id(train)) as tab:
                train.build(ctx, training_locked)
            tabs[tab_id(train)] = tab
        # The views' States live outside the tabs: Gradio's page fires the change event of every State
        # inside a tab when it first hears of it, even skipped, which drew every tab at each page load.
        views = [lazy(refresh, tab, ctx.analysis) for tab, refresh in refreshes]
        wanted = want(views, ctx.analysis, shown_tab)

        def tab_opener(opened: str) -> Callable[..., dict]:
            def open_tab(key: AnalysisKey | None, shown_before: str, *inputs) -> dict:
                """A click on the tab's title: note the tab on screen, and what each view should now
                show. The page also sends it for the first tab as it loads: nothing to do then."""
                if opened == shown_before:
                    return gr.skip()
                return {shown_tab: opened, **wanted.fn(key, opened, *inputs)}
            return open_tab

        analyse_io = ([photo_id, checkpoint_dd, epoch_dd, ctx.language], [ctx.analysis, status, preview])

        drawing = draw_now(views, ctx.analysis, shown_tab)

        def switch_language(photo: str | None, checkpoint_name: str | None, epoch_choice: str | None, lang: str,
                            *drawing_inputs) -> dict:
            """Every text in `lang`, in one event: the localized components' labels, the shell's own
            texts (the epoch picker's labels, the status line; the analysis is cached) and the views on
            screen drawn again, since their handlers write texts too."""
            updates = {**ctx.translations(lang), status: run_model(photo, checkpoint_name, epoch_choice, lang)[1]}
            updates[epoch_dd]["choices"] = sources.epoch_choices(ctx.checkpoints.get(checkpoint_name), lang)
            for block, value in drawing.fn(*drawing_inputs).items():
                if block in updates:  # a new label and a new value for the same block
                    value = {**updates[block], **(value if is_prop_update(value) else {"value": value})}
                updates[block] = value
            return updates

        def redraw_tabs_after(event) -> None:
            # Only States change here (the drawing is their change events'): too quick to wait in the queue.
            event.then(wanted.fn, wanted.inputs, wanted.outputs, show_progress="hidden", concurrency_limit=None)

        # The drop zone is emptied after every upload, read or refused: the next photo is dropped
        # straight onto it (the current one is shown under it), and a refused file leaves no name behind.
        uploaded = upload.upload(use_upload, [upload, ctx.language], photo_id)
        uploaded.then(empty_drop_zone, None, upload, show_progress="hidden", queue=False)
        redraw_tabs_after(uploaded.success(analyse, *analyse_io))
        snapped = camera.input(use_upload, [camera, ctx.language], photo_id)
        snapped.then(empty_drop_zone, None, camera, show_progress="hidden", queue=False)
        redraw_tabs_after(snapped.success(analyse, *analyse_io))
        redraw_tabs_after(gallery.select(pick_example, ctx.language, [photo_id, upload]).success(analyse, *analyse_io))
        # A second pick while the first is analysed is sent when that is done (always_last), not dropped.
        redraw_tabs_after(checkpoint_dd.input(use_checkpoint, [checkpoint_dd, ctx.language], epoch_dd,
                                              trigger_mode="always_last").then(analyse, *analyse_io))
        redraw_tabs_after(epoch_dd.input(analyse, *analyse_io, trigger_mode="always_last"))
        redraw_tabs_after(demo.load(first_example, ctx.language, [photo_id, upload]).success(analyse, *analyse_io))
        # A new language: one event sends every text (each event that follows another would cost a
        # round trip to the server).
        language_outputs = {id(block): block for block in [*ctx.localized_outputs(), status, *drawing.outputs]}
        ctx.language.change(switch_language, [photo_id, checkpoint_dd, epoch_dd, ctx.language, *drawing.inputs],
                            list(language_outputs.values()), show_progress="hidden")
        demo.load(language_from_browser, browser_language, ctx.language, js="() => navigator.language")
        presenter.change(None, presenter, None, js=PRESENTER_JS)
        ctx.language.change(None, ctx.language, None, js=LANGUAGE_JS)
        # A tour step opens its tab, which then draws.
        for step_event in guide.follow(tab_bar, shown_tab):
            redraw_tabs_after(step_event)
        # Opening a tab draws it, if the photo, checkpoint or epoch changed since its last drawing. One
        # listener per tab: the tab bar's own select event dropped a second tab clicked while the
        # first one's event was on its way (that tab stayed blank), or sent it with the first one's data.
        for opened, tab in tabs.items():
            tab.select(tab_opener(opened), wanted.inputs, [shown_tab, *wanted.outputs], show_progress="hidden",
                       concurrency_limit=None)
        rescan_btn.click(rescan, [checkpoint_dd, ctx.language], [checkpoint_dd, epoch_dd])
        # The same rescan every few seconds, so the runs and snapshots of a training job appear by
        # themselves; the pickers are only sent when their choices changed.
        shown_choices = gr.State(None)
        gr.Timer(RESCAN_SECONDS).tick(rescan_if_changed, [checkpoint_dd, shown_choices, ctx.language],
                                      [checkpoint_dd, epoch_dd, shown_choices], show_progress="hidden",
                                      concurrency_limit=None)  # a millisecond: never queued behind drawings
    return demo


def private_gradio_folder() -> Path:
    """A folder of this server's own (mode 0700) for Gradio's files, removed when the app exits:
    after Ctrl-C, and after SIGTERM too (`stop_like_ctrl_c`)."""
    folder = Path(tempfile.mkdtemp(prefix="vitviz-gradio-"))  # mode 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def stop_like_ctrl_c() -> None:
    """SIGTERM (`kill`, a service manager, a test harness) stops the server as Ctrl-C does: Gradio
    closes it and `launch` returns, so the interpreter exits normally and runs the atexit cleanup.
    By default SIGTERM kills the process on the spot and leaves the private folder behind."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vitviz: an interactive explorer of a segmentation ViT")
    parser.add_argument("--checkpoint", default="checkpoints/default",
                        help="checkpoint folder to open first (default: checkpoints/default, else the first found)")
    parser.add_argument("--checkpoints-dir", default="checkpoints", help="folder of shipped checkpoints")
    parser.add_argument("--runs-dir", default="runs", help="folder of training runs")
    parser.add_argument("--data-root", default=os.environ.get("VITVIZ_DATA"),
                        help="Oxford-IIIT Pet folder (or $VITVIZ_DATA): offers some labeled test photos as examples")
    # Like other Gradio apps, GRADIO_SERVER_NAME and GRADIO_SERVER_PORT apply when no flag is given.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1: this computer only; "
                             "0.0.0.0 lets every computer on your network use the app, without a password)")
    parser.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT", "7860"),
                        help="port (default $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also make a temporary PUBLIC link through gradio.live: anyone with it can use the app")
    parser.add_argument("--allow-remote-training", action="store_true",
                        help="let everyone who can reach the app (--host beyond this computer, --share) start, "
                             "stop and resume training jobs; without it, such an app's Train tab only watches them")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Gradio keeps raw uploads and the pictures it encodes in /tmp/gradio, readable by every local
    # user; this server's own folder (0700, removed at exit) keeps users' photos private. Read when
    # the app is built, so it must be set before `build_app`.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(private_gradio_folder()))
    stop_like_ctrl_c()
    bound_fragmentation()  # before the server's threads start allocating
    gradio_fixes.apply()  # the workarounds for Gradio, for this server only (not for tests that build the app)
    trim_every(TRIM_SECONDS)
    locked = training_locked(args)
    demo = build_app(args.checkpoint, args.checkpoints_dir, args.runs_dir, args.data_root, training_locked=locked)
    if reachable_from_elsewhere(args.host, args.share):
        print(f"vitviz: listening on {args.host}" + (" and on a public gradio.live link" if args.share else "") +
              ": anyone who can reach it can use this app" +
              ("; training from the page is off (--allow-remote-training turns it on)" if locked else ""))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY))  # events side by side, not fighting for cores
    # Gradio limits each event listener on its own; in one group, CONCURRENCY is the limit for all
    # of them together (listeners that set their own limit, such as quick polls, keep it).
    for block_fn in demo.fns.values():
        if block_fn.concurrency_limit == "default":
            block_fn.concurrency_id = "vitviz"
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, theme=THEME, css_paths=[CSS],
                css=gradio_words_css(),
                ssr_mode=False, max_file_size=MAX_BYTES, state_session_capacity=SESSIONS_KEPT)


if __name__ == "__main__":
    main()
