"""What the Train view draws from a run folder: the status line, the progress bars, the curves,
the mask strips and the table of runs. Plain functions of the folder's files and `RunStatus`."""

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from PIL import Image

from vitviz.app.i18n import DEFAULT, text
from vitviz.training.jobs import RunStatus, log_tail
from vitviz.views.pictures import caption_band

# Plain symbols every text font has (no emoji, which some systems draw as empty boxes).
STATE_ICONS = {"starting": "…", "running": "▶", "stopping": "■…", "stopped": "■", "finished": "✔", "crashed": "✖"}
MAX_STRIPS = 12  # mask strips shown: all epochs up to this many, else the first 4 and the last 8


def format_duration(seconds: float, lang: str = DEFAULT) -> str:
    """12 s, 3 min 05 s, 2 h 07 min (in `lang`)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return text("train.seconds", lang, s=seconds)
    if seconds < 3600:
        return text("train.minutes", lang, m=seconds // 60, s=seconds % 60)
    return text("train.hours", lang, h=seconds // 3600, m=seconds % 3600 // 60)


def state_name(state: str, lang: str = DEFAULT) -> str:
    """A run state ("running", "crashed", …) in `lang`."""
    return text(f"train.state_{state}", lang)


def status_markdown(status: RunStatus | None, lang: str = DEFAULT, other_app: int | None = None) -> str:
    """One Markdown line (in `lang`): the run, its state, device, speed and time left, or its final
    scores; and the pid of `other_app` when another app started the run (only it may stop or resume it)."""
    if status is None:
        return text("train.no_run", lang)
    on_device = text("train.on_device", lang, device=status.device) if status.alive and status.device else ""
    parts = [text("train.state_line", lang, icon=STATE_ICONS[status.state], name=status.name,
                  state=state_name(status.state, lang), on_device=on_device)]
    if status.state == "running":
        if status.images_per_s:
            parts.append(text("train.speed", lang, value=status.images_per_s))
        if status.eta_s is not None:
            parts.append(text("train.eta", lang, duration=format_duration(status.eta_s, lang)))
    if status.state == "crashed":
        last = log_tail(status.folder, 1)
        parts.append(text("train.crashed", lang, last=last or text("train.no_output", lang)))
    if status.pixel_accuracy is not None:
        parts.append(text("train.last_validation", lang, accuracy=status.pixel_accuracy, miou=status.miou))
    if other_app:
        parts.append(text("train.other_app", lang, pid=other_app))
    return " · ".join(parts)


def progress_html(status: RunStatus | None, lang: str = DEFAULT) -> str:
    """Two labelled progress bars: epochs of the run, steps of the epoch in progress."""
    if status is None or status.epochs is None:
        return ""
    epochs = text("train.epochs_done", lang, done=status.epochs_done, total=status.epochs)
    bars = [f'<label>{epochs}<br><progress value="{status.epochs_done}" max="{status.epochs}" '
            f'style="width:100%"></progress></label>']
    if status.state == "running" and status.steps:
        steps = text("train.steps_done", lang, epoch=status.epochs_done + 1, step=status.step, steps=status.steps)
        bars.append(f'<label>{steps}<br>'
                    f'<progress value="{status.step}" max="{status.steps}" style="width:100%"></progress></label>')
    return f'<div id="train-progress">{"<br>".join(bars)}</div>'


def curves_figure(metrics: dict[int, dict], lang: str = DEFAULT) -> go.Figure:
    """Loss (training and validation), pixel accuracy and mean IoU per epoch, side by side."""
    titles = [text(f"train.curves_{name}", lang) for name in ("loss", "accuracy", "miou")]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles)
    for key, col in (("train_loss", 1), ("val_loss", 1), ("pixel_accuracy", 2), ("miou", 3)):
        epochs = [e for e in sorted(metrics) if key in metrics[e]]
        fig.add_trace(go.Scatter(x=epochs, y=[metrics[e][key] for e in epochs], name=text(f"train.trace_{key}", lang),
                                 mode="lines+markers"), row=1, col=col)
    fig.update_xaxes(title_text=text("train.epoch_axis", lang), rangemode="tozero")
    fig.update_layout(height=330, margin=dict(l=40, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def mask_strips(folder: str | os.PathLike) -> list[tuple[np.ndarray, str]]:
    """(picture, caption) for the true masks, then the predicted masks after each epoch that the
    trainer saved in val_masks/ (at most MAX_STRIPS epochs: the first 4 and the latest)."""
    folder = Path(folder) / "val_masks"
    epochs = sorted(folder.glob("epoch_*.png"))
    if len(epochs) > MAX_STRIPS:
        epochs = epochs[:4] + epochs[-(MAX_STRIPS - 4):]
    named = ([(folder / "truth.png", "the true masks")] if (folder / "truth.png").is_file() else [])
    named += [(path, f"epoch {int(path.stem.split('_')[1])}") for path in epochs]
    strips = []
    for path, caption in named:
        try:
            with Image.open(path) as im:
                strips.append((np.asarray(im.convert("RGB")), caption))
        except OSError:
            continue  # replaced or removed while we read: the next poll shows it
    return strips


def mask_progression(strips: list[tuple[np.ndarray, str]]) -> np.ndarray | None:
    """The strips one under another, each under a band with its caption; None when there are none."""
    if not strips:
        return None
    width = max(picture.shape[1] for picture, _ in strips)
    rows = [caption_band(np.pad(picture, ((0, 0), (0, width - picture.shape[1]), (0, 0)), constant_values=255), caption)
            for picture, caption in strips]
    return np.concatenate(rows, axis=0)


def runs_headers(lang: str = DEFAULT) -> list[str]:
    """The headers of the runs table, in `lang`."""
    return [text(f"train.header_{name}", lang) for name in ("run", "state", "epochs", "accuracy", "miou", "device")]


def runs_table(statuses: list[RunStatus], lang: str = DEFAULT) -> list[list[str]]:
    """One row per run for a table with `runs_headers`."""
    return [[s.name, f"{STATE_ICONS[s.state]} {state_name(s.state, lang)}", f"{s.epochs_done}/{s.epochs or '?'}",
             "" if s.pixel_accuracy is None else f"{s.pixel_accuracy:.1%}",
             "" if s.miou is None else f"{s.miou:.3f}", s.device] for s in statuses]
