"""Train tab: start a training run, watch it live, stop and resume it.

The job runs in a process of its own (vitviz.training.jobs); this tab only reads its run folder, once a
second (a gr.Timer), and sends the browser only what changed. Nothing lives in the app's memory,
so a page reload or an app restart shows the same runs.

Training is for the person who runs the app: when the app can be reached from other computers
(app.py --host, --share) and was not started with --allow-remote-training, the tab is `locked`:
Start, Stop and Resume are off, and their handlers refuse too, since the API can call them without
the page. Runs that another app started can be watched here, not stopped or resumed.
"""

import os
from functools import partial
from pathlib import Path

import gradio as gr
import torch

from vitviz.app.i18n import DEFAULT, text
from vitviz.model.posembed import KINDS
from vitviz.model.vit import HEADS
from vitviz.training import jobs
from vitviz.training.checkpoint import read_metrics
from vitviz.training.jobs import JobError, JobManager
from vitviz.training.loop import pick_device
from vitviz.training.presets import PRESETS
from vitviz.ui.context import Context
from vitviz.views.train import (curves_figure, mask_progression, mask_strips, progress_html, runs_headers, runs_table,
                                status_markdown)

POLL_SECONDS = 1.0
FIRST_PRESET = "seed-small"  # the article's kind of model, small enough for a laptop CPU


def device_note(threads: int, lang: str = DEFAULT) -> str:
    """Where a job started now will train (the trainer picks the same way)."""
    device = pick_device()
    if device.type == "cuda":
        return text("train.device_cuda", lang, name=torch.cuda.get_device_name(device))
    if device.type == "mps":
        return text("train.device_mps", lang)
    return text("train.device_cpu", lang, threads=threads, cores=os.cpu_count())


def file_signature(path: Path) -> tuple:
    """Changes whenever the file is replaced (every writer replaces files atomically)."""
    return (str(path), path.stat().st_mtime_ns) if path.is_file() else (str(path),)


def data_root_note(data_roots: list[str], lang: str = DEFAULT) -> str:
    """One line under the data-root field: where a data root may be, or why there is none."""
    if not data_roots:
        return text("train.no_data_root", lang)
    return text("train.data_root_inside", lang, folders=", ".join(str(Path(root).resolve()) for root in data_roots))


def masks_picture(folder: Path | None, lang: str = DEFAULT) -> dict:
    """The mask strips of the run as one picture, the epochs it shows in its label."""
    strips = mask_strips(folder) if folder else []
    # The strips' own captions ("epoch 3") are drawn in English; the label names them in `lang`.
    epochs = text("shell.list_separator", lang).join(text("epochs.snapshot", lang, epoch=caption.split()[-1])
                                                     for _, caption in strips if caption.startswith("epoch"))
    label = text("train.masks_epochs", lang, epochs=epochs) if epochs else text("train.masks", lang)
    return gr.update(value=mask_progression(strips), label=label)


def build(ctx: Context, locked: bool = False) -> None:
    manager = JobManager(ctx.runs_dir)
    defaults = jobs.form_defaults(FIRST_PRESET)
    data_roots = [ctx.data_root] if ctx.data_root else []  # a typed data root must lie inside these
    ctx.localized(gr.Markdown, {"value": "train.intro"})
    ctx.localized(gr.Markdown, {"value": "train.remote_off"}, visible=locked, elem_id="train-locked")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            preset = ctx.localized(gr.Dropdown, {"label": "train.preset"}, choices=list(PRESETS), value=FIRST_PRESET)
            name = ctx.localized(gr.Textbox, {"label": "train.run_name", "placeholder": "train.run_name_placeholder"},
                                 max_length=64)

            def number(field: str, **kwargs) -> gr.Number:
                return ctx.localized(gr.Number, {"label": f"train.{field}"}, value=defaults[field], **kwargs)

            with gr.Row():
                patch_size = number("patch_size", precision=0)
                embed_dim = number("embed_dim", precision=0)
                depth = number("depth", precision=0)
                num_heads = number("num_heads", precision=0)
            with gr.Row():
                pos_embed = ctx.localized(gr.Dropdown, {"label": "train.pos_embed"}, choices=list(KINDS),
                                          value=defaults["pos_embed"])
                head = ctx.localized(gr.Dropdown, {"label": "train.head"}, choices=list(HEADS),
                                     value=defaults["head"])
            with gr.Row():
                epochs = number("epochs", precision=0)
                lr = number("lr")
                batch_size = number("batch_size", precision=0)
            data_root_texts = {"label": "train.data_root", "info": partial(data_root_note, data_roots)}
            data_root = ctx.localized(gr.Textbox, data_root_texts, value=ctx.data_root or "",
                                      interactive=bool(data_roots), elem_id="train-data-root")
            start_btn = ctx.localized(gr.Button, {"value": "train.start"}, variant="primary", interactive=not locked,
                                      elem_id="train-start")
            ctx.localized(gr.Markdown, {"value": partial(device_note, manager.threads)})
        with gr.Column(scale=3):
            run = ctx.localized(gr.Dropdown, {"label": lambda lang: text("train.run", lang, folder=manager.runs_dir)},
                                choices=[], elem_id="train-run")
            status = gr.Markdown(elem_id="train-status")
            progress = gr.HTML()
            with gr.Row():
                stop_btn = ctx.localized(gr.Button, {"value": "train.stop"}, interactive=False, elem_id="train-stop")
                resume_btn = ctx.localized(gr.Button, {"value": "train.resume"}, interactive=False,
                                           elem_id="train-resume")
            message = gr.Markdown(elem_id="train-message")
    curves = ctx.localized(gr.Plot, {"label": "train.curves"}, elem_id="train-curves")
    masks = ctx.localized(gr.Image, {"label": "train.masks"}, format="png", interactive=False,
                          buttons=["download", "fullscreen"], elem_id="train-masks")
    log = ctx.localized(gr.Textbox, {"label": "train.log"}, lines=10, max_lines=10, interactive=False,
                        elem_id="train-log")
    table = ctx.localized(gr.Dataframe, {"label": "train.table"}, headers=runs_headers(), interactive=False,
                          elem_id="train-runs")
    seen = gr.State({})  # what this browser already shows: only changes are sent
    timer = gr.Timer(POLL_SECONDS)

    fields = [patch_size, embed_dim, depth, num_heads, pos_embed, head, epochs, lr, batch_size]
    field_names = [*jobs.MODEL_FIELDS, *jobs.TRAIN_FIELDS]

    def fill_in(preset_name: str) -> list:
        values = jobs.form_defaults(preset_name)
        return [values[f] for f in field_names]

    def poll(selected: str | None, shown: dict, lang: str = DEFAULT) -> list:
        """Everything the run folder says now, as updates for the components whose content changed
        since this browser's last poll (`shown` keeps a signature of what it shows)."""
        shown = dict(shown)

        def update(key: str, signature, make):
            """make() when `signature` differs from what was last sent for `key`, else skip."""
            if key in shown and shown[key] == signature:
                return gr.skip()
            shown[key] = signature
            return make()

        statuses = manager.runs()
        names = [s.name for s in statuses]
        if selected not in names:  # nothing chosen yet: the running job, else the latest run
            selected = next((s.name for s in statuses if s.alive), names[0] if names else None)
        current = next((s for s in statuses if s.name == selected), None)
        folder = current.folder if current else None
        other_app = manager.other_app(folder) if folder else None
        line = status_markdown(current, lang, other_app)
        bars, rows = progress_html(current, lang), runs_table(statuses, lang)
        tail = jobs.log_tail(folder) if folder else ""
        controls = bool(current) and not locked and other_app is None
        can_stop, can_resume = controls and current.alive, controls and current.state in jobs.RESUMABLE
        # The pictures' texts are in `lang`, so a new language redraws them too.
        metrics = (lang, file_signature(folder / "metrics.jsonl") if folder else None)
        strips = (lang, str(folder),
                  sorted(file_signature(p) for p in folder.glob("val_masks/*.png")) if folder else [])
        return [
            update("runs", (names, selected), lambda: gr.update(choices=names, value=selected)),
            update("status", line, lambda: line),
            update("progress", bars, lambda: bars),
            update("stop", can_stop, lambda: gr.update(interactive=can_stop)),
            update("resume", can_resume, lambda: gr.update(interactive=can_resume)),
            update("curves", metrics, lambda: curves_figure(read_metrics(folder), lang) if folder else None),
            update("masks", strips, lambda: masks_picture(folder, lang)),
            update("log", tail, lambda: tail),
            update("table", (lang, rows), lambda: gr.update(value=rows, headers=runs_headers(lang))),
            shown,
        ]

    poll_outputs = [run, status, progress, stop_btn, resume_btn, curves, masks, log, table, seen]

    def refuse_when_locked(lang: str) -> None:
        """The buttons are off when locked, but an API call reaches the handlers all the same."""
        if locked:
            raise JobError(text("train.remote_off", lang))

    # `lang` comes before the form's fields here, which vary in number.
    def start(preset_name: str, run_name: str, root: str, lang: str, *values) -> tuple:
        try:
            refuse_when_locked(lang)
            request = jobs.check_request(manager.runs_dir, preset_name, run_name, root, dict(zip(field_names, values)),
                                         data_roots)
            started = manager.start(request)
        except JobError as e:
            return text("train.refused", lang, reason=e), gr.skip()
        return (text("train.started", lang, name=started.name),
                gr.update(choices=[s.name for s in manager.runs()], value=started.name))

    def control(action, done: str, selected: str | None, lang: str) -> str:
        """Stop or resume the selected run: `done` is the text key said when it was asked."""
        try:
            refuse_when_locked(lang)
            action(selected)
        except JobError as e:
            return text("train.refused", lang, reason=e)
        return text(done, lang, name=selected)

    def stop(selected: str | None, lang: str = DEFAULT) -> str:
        return control(manager.stop, "train.stopping", selected, lang)

    def resume(selected: str | None, lang: str = DEFAULT) -> str:
        return control(manager.resume, "train.resuming", selected, lang)

    preset.input(fill_in, preset, fields, trigger_mode="always_last")  # the last preset picked fills the form
    # Polling only reads files, so every browser may poll at once (concurrency_limit=None).
    quiet = dict(show_progress="hidden", concurrency_limit=None)
    poll_inputs = [run, seen, ctx.language]
    start_btn.click(start, [preset, name, data_root, ctx.language, *fields], [message, run]).then(
        poll, poll_inputs, poll_outputs, **quiet)
    stop_btn.click(stop, [run, ctx.language], message).then(poll, poll_inputs, poll_outputs, **quiet)
    resume_btn.click(resume, [run, ctx.language], message).then(poll, poll_inputs, poll_outputs, **quiet)
    run.input(poll, poll_inputs, poll_outputs, trigger_mode="always_last", **quiet)
    timer.tick(poll, poll_inputs, poll_outputs, **quiet)
