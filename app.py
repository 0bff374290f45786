"""vitviz: see inside a Vision Transformer that segments pets.

    python app.py                       # http://127.0.0.1:7860, offline, CPU is enough
    python app.py --checkpoint runs/seed-small --data-root /path/to/data

The shell holds the photo, checkpoint and epoch pickers. Whenever one of them changes it runs the
model once (cached), stores the new `AnalysisKey` in `ctx.analysis` and asks every tab to redraw.
"""

import argparse
import os
from pathlib import Path

import gradio as gr
import torch

from vitviz import sources
from vitviz.checkpoint import CheckpointError
from vitviz.inference import Analysis, ModelCache
from vitviz.photos import MAX_BYTES, PhotoError, load_photo_rgb
from vitviz.attention_maps import fit_photo
from vitviz.ui import attention, epochs, journey, positions, segment, train_tab
from vitviz.ui.common import AnalysisKey, Context, PhotoStore

TABS = (("Segment", segment), ("Tensor journey", journey), ("Position embeddings", positions),
        ("Attention", attention), ("Epochs", epochs))
# System fonts only: the default themes would fetch Google Fonts, and a classroom may be offline.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
NO_CHECKPOINT = ("**No checkpoint found** under `{dirs}`. Train one, e.g. `python -m vitviz.train --preset "
                 "seed-small --data-root DATA --name seed-small`, then press ↻.")
# At most CONCURRENCY events compute at once (one per core) and at most QUEUE_SIZE wait: a burst
# of clicks gets "queue full" instead of piling up work and memory.
CONCURRENCY = min(4, os.cpu_count() or 1)
QUEUE_SIZE = 64
RESCAN_SECONDS = 5  # how often the checkpoint picker looks for new runs and snapshots
INTRO = ("# vitviz: inside a Vision Transformer that segments pets\n"
         "Pick a photo (or drop your own), a checkpoint and an epoch; every tab below shows the same forward pass.")


def build_app(checkpoint: str | os.PathLike = "checkpoints/default", checkpoints_dir: str | os.PathLike = "checkpoints",
              runs_dir: str | os.PathLike = "runs", data_root: str | os.PathLike | None = None) -> gr.Blocks:
    found = sources.find_checkpoints(checkpoints_dir, runs_dir)
    start = sources.default_checkpoint(checkpoint, found)
    if start is not None and start not in found.values():
        found[str(start)] = start
    start_name = next((name for name, folder in found.items() if folder == start), None)
    ctx = Context(ModelCache(), PhotoStore(), found, runs_dir=Path(runs_dir), data_root=data_root)
    allowed = [checkpoints_dir, runs_dir, *([start] if start else [])]  # the UI may only open these
    scan_dirs = f"{checkpoints_dir}/ or {runs_dir}/"
    notes = []  # shown under the header for as long as the app runs
    if start is None:
        notes.append(NO_CHECKPOINT.format(dirs=scan_dirs))
    elif start != Path(checkpoint).resolve():
        print(f"vitviz: {checkpoint} is not a checkpoint folder; opening {start_name}")

    examples = sources.bundled_examples()
    try:
        examples += sources.dataset_examples(data_root)
    except (OSError, ValueError) as e:
        notes.append(f"⚠ No dataset photos among the examples: {e}")
    examples = sources.with_thumbnails(examples)

    def status_text(analysis: Analysis, checkpoint_name: str, epoch_choice: str) -> str:
        s, (rows, cols) = analysis.image_size, analysis.grid
        h, w = analysis.photo.shape[:2]
        epoch_label = {value: label for label, value in sources.epoch_choices(ctx.checkpoints[checkpoint_name])}
        return (f"**{checkpoint_name}**, {epoch_label.get(epoch_choice, epoch_choice)} · photo {w}×{h} → "
                f"model input {s}×{s}, {rows}×{cols} patches of {analysis.patch_size} px")

    def analyse(photo_id: str | None, checkpoint_name: str | None, epoch_choice: str | None):
        """Run the model once for the current choice (the tabs then read the cache) →
        (analysis key, status line, photo preview)."""
        preview = fit_photo(ctx.photos.get(photo_id), 240) if photo_id else None
        try:
            folder = sources.checkpoint_folder(checkpoint_name, ctx.checkpoints, allowed)
        except sources.PathNotAllowed as e:
            return None, f"⚠ {e}", preview
        if folder is None:
            return None, "No checkpoint to run (see the note below).", preview
        if photo_id is None:
            return None, "Upload a photo or pick an example.", preview
        key = AnalysisKey(photo_id, str(folder), sources.parse_epoch(epoch_choice))
        try:
            analysis = ctx.analysis_for(key)
        except CheckpointError as e:
            gr.Warning(str(e))
            return None, f"⚠ {e}", preview
        return key, status_text(analysis, checkpoint_name, epoch_choice), preview

    # A photo that cannot be read raises a one-line gr.Error; it only touches the hidden photo
    # id (so no component shows an error badge) and `.success` stops the redraw there.
    def use_upload(path: str | None):
        if path is None:
            return gr.skip()
        try:
            return ctx.photos.put(load_photo_rgb(path))
        except PhotoError as e:
            raise gr.Error(f"This file cannot be used as a photo: {e}", print_exception=False) from None

    def use_example(index: int) -> tuple:
        """(photo id, cleared upload box) for example `index`."""
        try:
            photo = load_photo_rgb(examples[index][0])
        except PhotoError as e:
            raise gr.Error(f"This example cannot be read: {e}", print_exception=False) from None
        return ctx.photos.put(photo), None

    def pick_example(evt: gr.SelectData) -> tuple:
        return use_example(evt.index)

    def first_example() -> tuple:
        return use_example(0) if examples else (None, None)

    def use_checkpoint(name: str | None):
        try:
            folder = sources.checkpoint_folder(name, ctx.checkpoints, allowed)
        except sources.PathNotAllowed:
            return gr.update(choices=sources.epoch_choices(None), value=sources.FINAL)  # analyse says why
        return gr.update(choices=sources.epoch_choices(folder), value=sources.FINAL)

    def rescan(current: str | None):
        ctx.checkpoints.update(sources.find_checkpoints(checkpoints_dir, runs_dir))
        epochs_now = sources.epoch_choices(ctx.checkpoints.get(current))
        return gr.update(choices=list(ctx.checkpoints)), gr.update(choices=epochs_now)

    def rescan_if_changed(current: str | None, shown: list | None):
        pickers = rescan(current)
        choices = [pickers[0]["choices"], pickers[1]["choices"]]
        return (gr.skip(), gr.skip(), shown) if choices == shown else (*pickers, choices)

    with gr.Blocks(title="vitviz", analytics_enabled=False) as demo:
        ctx.analysis = gr.State(None)
        photo_id = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=200):
                upload = gr.File(label="Your photo (drop or click)", file_types=["image"], height=120)
                preview = gr.Image(label="Current photo", interactive=False, height=150, format="png",
                                   buttons=[])
            with gr.Column(scale=4):
                gallery = gr.Gallery([(thumb, caption) for _, caption, thumb in examples], label="Examples (click one)",
                                     columns=6, height=230, allow_preview=False, object_fit="cover", format="png")
            with gr.Column(scale=3, min_width=240):
                checkpoint_dd = gr.Dropdown(list(found), value=start_name, label="Checkpoint")
                epoch_dd = gr.Dropdown(sources.epoch_choices(start), value=sources.FINAL, label="Epoch")
                status = gr.Markdown()
                rescan_btn = gr.Button("↻ Look for new checkpoints and snapshots", size="sm", variant="secondary")
        gr.Markdown("  \n".join(notes), visible=bool(notes))

        refreshes = []
        for title, module in TABS:
            with gr.Tab(title):
                refreshes.append(module.build(ctx))
        with gr.Tab("Train"):  # starts and watches training jobs; it does not redraw for the photo
            train_tab.build(ctx)

        analyse_io = ([photo_id, checkpoint_dd, epoch_dd], [ctx.analysis, status, preview])

        def redraw_tabs_after(event):
            for r in refreshes:
                event = event.then(r.fn, [ctx.analysis, *r.inputs], r.outputs)

        redraw_tabs_after(upload.upload(use_upload, upload, photo_id).success(analyse, *analyse_io))
        redraw_tabs_after(gallery.select(pick_example, None, [photo_id, upload]).success(analyse, *analyse_io))
        redraw_tabs_after(checkpoint_dd.input(use_checkpoint, checkpoint_dd, epoch_dd).then(analyse, *analyse_io))
        redraw_tabs_after(epoch_dd.input(analyse, *analyse_io))
        redraw_tabs_after(demo.load(first_example, None, [photo_id, upload]).success(analyse, *analyse_io))
        rescan_btn.click(rescan, checkpoint_dd, [checkpoint_dd, epoch_dd])
        # The same rescan every few seconds, so the runs and snapshots of a training job appear by
        # themselves; the pickers are only sent when their choices changed.
        shown_choices = gr.State(None)
        gr.Timer(RESCAN_SECONDS).tick(rescan_if_changed, [checkpoint_dd, shown_choices],
                                      [checkpoint_dd, epoch_dd, shown_choices], show_progress="hidden")
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="vitviz: an interactive explorer of a segmentation ViT")
    parser.add_argument("--checkpoint", default="checkpoints/default",
                        help="checkpoint folder to open first (default: checkpoints/default, else the first found)")
    parser.add_argument("--checkpoints-dir", default="checkpoints", help="folder of shipped checkpoints")
    parser.add_argument("--runs-dir", default="runs", help="folder of training runs")
    parser.add_argument("--data-root", default=os.environ.get("VITVIZ_DATA"),
                        help="Oxford-IIIT Pet folder (or $VITVIZ_DATA): offers some labeled test photos as examples")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 lets every "
                             "computer on your network use the app, without a password)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true",
                        help="also make a temporary PUBLIC link through gradio.live: anyone with it can use the app")
    args = parser.parse_args(argv)
    demo = build_app(args.checkpoint, args.checkpoints_dir, args.runs_dir, args.data_root)
    if args.host != "127.0.0.1" or args.share:
        print(f"vitviz: listening on {args.host}" + (" and on a public gradio.live link" if args.share else "") +
              ": anyone who can reach it can use this app")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY))  # events side by side, not fighting for cores
    # Gradio limits each event listener on its own; in one group, CONCURRENCY is the limit for all
    # of them together (listeners that set their own limit, such as quick polls, keep it).
    for block_fn in demo.fns.values():
        if block_fn.concurrency_limit == "default":
            block_fn.concurrency_id = "vitviz"
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, theme=THEME, ssr_mode=False,
                max_file_size=MAX_BYTES)


if __name__ == "__main__":
    main()
