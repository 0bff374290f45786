"""Train tab: start a training run, watch it live, stop and resume it.

The job runs in a process of its own (vitviz.jobs); this tab only reads its run folder, once a
second (a gr.Timer), and sends the browser only what changed. Nothing lives in the app's memory,
so a page reload or an app restart shows the same runs.
"""

import os
from pathlib import Path

import gradio as gr
import torch

from vitviz import jobs
from vitviz.epochs import read_metrics
from vitviz.jobs import JobError, JobManager
from vitviz.presets import PRESETS
from vitviz.train import pick_device
from vitviz.train_views import (RUNS_HEADERS, curves_figure, mask_progression, mask_strips, progress_html, runs_table,
                                status_markdown)
from vitviz.ui.common import Context

POLL_SECONDS = 1.0
MASKS_LABEL = "Predicted masks of validation photos, the true masks on top, then after each epoch"
FIRST_PRESET = "seed-small"  # the article's kind of model, small enough for a laptop CPU
INTRO = """
Train a ViT on the pet photos and watch it learn. The job runs in its own process (the app stays
usable) and writes everything to its run folder; after every epoch you see the curves and the
predicted masks of a few validation photos: blocky at first, finer later. **Stop** keeps the last
finished epoch; **Resume** continues from it. Every weight snapshot of a run also appears in the
checkpoint picker at the top.
"""


def device_note(threads: int) -> str:
    """Where a job started now will train (the trainer picks the same way)."""
    device = pick_device()
    if device.type == "cuda":
        return f"Jobs train on the GPU ({torch.cuda.get_device_name(device)})."
    if device.type == "mps":
        return "Jobs train on this Mac's GPU (mps)."
    return f"No GPU here: jobs train on the CPU with {threads} of its {os.cpu_count()} cores, the rest stay with this app."


def file_signature(path: Path) -> tuple:
    """Changes whenever the file is replaced (every writer replaces files atomically)."""
    return (str(path), path.stat().st_mtime_ns) if path.is_file() else (str(path),)


def masks_picture(folder: Path | None) -> dict:
    """The mask strips of the run as one picture, the epochs it shows in its label."""
    strips = mask_strips(folder) if folder else []
    epochs = ", ".join(caption for _, caption in strips if caption.startswith("epoch"))
    return gr.update(value=mask_progression(strips), label=f"{MASKS_LABEL}: {epochs}" if epochs else MASKS_LABEL)


def build(ctx: Context) -> None:
    manager = JobManager(ctx.runs_dir)
    defaults = jobs.form_defaults(FIRST_PRESET)
    gr.Markdown(INTRO)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            preset = gr.Dropdown(list(PRESETS), value=FIRST_PRESET, label="Preset (fills in the fields below)")
            name = gr.Textbox(label="Run name", placeholder="empty: preset and time", max_length=64)
            with gr.Row():
                patch_size = gr.Number(defaults["patch_size"], precision=0, label="Patch size")
                embed_dim = gr.Number(defaults["embed_dim"], precision=0, label="Width")
                depth = gr.Number(defaults["depth"], precision=0, label="Depth (blocks)")
                num_heads = gr.Number(defaults["num_heads"], precision=0, label="Heads")
            with gr.Row():
                pos_embed = gr.Dropdown(list(jobs.KINDS), value=defaults["pos_embed"], label="Position embedding")
                head = gr.Dropdown(list(jobs.HEADS), value=defaults["head"], label="Head")
            with gr.Row():
                epochs = gr.Number(defaults["epochs"], precision=0, label="Epochs")
                lr = gr.Number(defaults["lr"], label="Learning rate")
                batch_size = gr.Number(defaults["batch_size"], precision=0, label="Batch size")
            data_root = gr.Textbox(ctx.data_root or "", label="Data root (the folder that holds oxford-iiit-pet/)")
            start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
            gr.Markdown(device_note(manager.threads))
        with gr.Column(scale=3):
            run = gr.Dropdown([], label=f"Run shown (from {manager.runs_dir})", elem_id="train-run")
            status = gr.Markdown(elem_id="train-status")
            progress = gr.HTML()
            with gr.Row():
                stop_btn = gr.Button("Stop", interactive=False, elem_id="train-stop")
                resume_btn = gr.Button("Resume", interactive=False, elem_id="train-resume")
            message = gr.Markdown(elem_id="train-message")
    curves = gr.Plot(label="Curves", elem_id="train-curves")
    masks = gr.Image(label=MASKS_LABEL, format="png", interactive=False, buttons=["download", "fullscreen"],
                     elem_id="train-masks")
    log = gr.Textbox(label="Last lines of train.log", lines=10, max_lines=10, interactive=False, elem_id="train-log")
    table = gr.Dataframe(headers=RUNS_HEADERS, interactive=False, label="All runs, most recent first",
                         elem_id="train-runs")
    seen = gr.State({})  # what this browser already shows: only changes are sent
    timer = gr.Timer(POLL_SECONDS)

    fields = [patch_size, embed_dim, depth, num_heads, pos_embed, head, epochs, lr, batch_size]
    field_names = [*jobs.MODEL_FIELDS, *jobs.TRAIN_FIELDS]

    def fill_in(preset_name: str) -> list:
        values = jobs.form_defaults(preset_name)
        return [values[f] for f in field_names]

    def poll(selected: str | None, shown: dict) -> list:
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
        text, bars, rows = status_markdown(current), progress_html(current), runs_table(statuses)
        tail = jobs.log_tail(folder) if folder else ""
        can_stop, can_resume = bool(current and current.alive), bool(current and current.state in jobs.RESUMABLE)
        metrics = file_signature(folder / "metrics.jsonl") if folder else None
        strips = (str(folder), sorted(file_signature(p) for p in folder.glob("val_masks/*.png")) if folder else [])
        return [
            update("runs", (names, selected), lambda: gr.update(choices=names, value=selected)),
            update("status", text, lambda: text),
            update("progress", bars, lambda: bars),
            update("stop", can_stop, lambda: gr.update(interactive=can_stop)),
            update("resume", can_resume, lambda: gr.update(interactive=can_resume)),
            update("curves", metrics, lambda: curves_figure(read_metrics(folder)) if folder else None),
            update("masks", strips, lambda: masks_picture(folder)),
            update("log", tail, lambda: tail),
            update("table", rows, lambda: rows),
            shown,
        ]

    poll_outputs = [run, status, progress, stop_btn, resume_btn, curves, masks, log, table, seen]

    def start(preset_name: str, run_name: str, root: str, *values) -> tuple:
        try:
            request = jobs.check_request(manager.runs_dir, preset_name, run_name, root, dict(zip(field_names, values)))
            started = manager.start(request)
        except JobError as e:
            return f"⚠ {e}", gr.skip()
        return f"Started **{started.name}**.", gr.update(choices=[s.name for s in manager.runs()], value=started.name)

    def stop(selected: str | None) -> str:
        try:
            manager.stop(selected)
        except JobError as e:
            return f"⚠ {e}"
        return f"Asked **{selected}** to stop after its current step; it keeps its last finished epoch."

    def resume(selected: str | None) -> str:
        try:
            manager.resume(selected)
        except JobError as e:
            return f"⚠ {e}"
        return f"Resuming **{selected}** from its last finished epoch."

    preset.input(fill_in, preset, fields)
    # Polling only reads files, so every browser may poll at once (concurrency_limit=None).
    quiet = dict(show_progress="hidden", concurrency_limit=None)
    start_btn.click(start, [preset, name, data_root, *fields], [message, run]).then(poll, [run, seen], poll_outputs, **quiet)
    stop_btn.click(stop, run, message).then(poll, [run, seen], poll_outputs, **quiet)
    resume_btn.click(resume, run, message).then(poll, [run, seen], poll_outputs, **quiet)
    run.input(poll, [run, seen], poll_outputs, **quiet)
    timer.tick(poll, [run, seen], poll_outputs, **quiet)
