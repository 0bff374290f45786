"""Bad input, security and load.

Generated files that are damaged, odd or hostile go to the photo loader, to the app's own event
handlers (in-process, as the UI calls them) and to a running server's API; broken checkpoint
folders go to the loader and the checkpoint picker. Every case ends in a correct result or a
one-line message, never a stack trace, and the app keeps working afterwards. Then: paths from the
UI stay inside the allowed folders, nothing is unpickled, the caches are bounded, and the load
script runs. Nothing is written into the repository.
"""

import importlib.util
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.torch import load_file, safe_open, save_file

import app as shell
from app import TABS, build_app, tab_id
from session import Session, handler, tab_bar, upload_photo
from vitviz.app import inference, photos, sources
from vitviz.app.inference import ModelCache
from vitviz.app.photos import PhotoError, load_photo_rgb
from vitviz.app.serve import running_app
from vitviz.model.vit import SegmentationViT
from vitviz.training import checkpoint as ckpt, jobs
from vitviz.training.checkpoint import (INT8_SCALE, MAX_PARAMETERS, CheckpointError, load_model, read_config,
                                        snapshot_path)
from vitviz.training.presets import preset
from vitviz.ui import attention as attention_tab, journey as journey_tab, positions as positions_tab
from vitviz.ui.context import PhotoStore
from vitviz.ui.widgets import patch_at
from vitviz.views.pictures import patch_centre

RED, BLUE = (255, 0, 0), (0, 0, 255)


# --- generated files ---------------------------------------------------------------------------

def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def halves(size: tuple[int, int], left: tuple, right: tuple, mode: str = "RGB") -> Image.Image:
    """A picture whose left half is `left` and right half is `right`."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A small, valid-looking PNG that claims width × height 8-bit grey pixels: decoding it would
    need width × height bytes of memory (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def corrupt_png() -> bytes:
    """A PNG whose pixel data no longer matches its checksum."""
    data = bytearray(encoded(Image.new("RGB", (32, 32), RED), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF
    return bytes(data)


def exif_rotated_jpeg(orientation: int) -> bytes:
    """A 60×30 JPEG, red left half and blue right half, with an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(halves((60, 30), RED, BLUE), "JPEG", quality=95, exif=exif)


def rgba_png() -> bytes:
    """Left half transparent (its colour must not show), right half opaque blue."""
    return encoded(halves((40, 20), (0, 255, 0, 0), (0, 0, 255, 255), "RGBA"), "PNG")


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (40, 20), 0)
    image.putpalette([0, 255, 0] + [0, 0, 255] * 255)  # index 0 green (transparent), the rest blue
    image.paste(1, (20, 0, 40, 20))
    return encoded(image, "PNG", transparency=0)


def png_16_bit() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    return encoded(Image.fromarray(ramp), "PNG")


def cmyk_jpeg() -> bytes:
    return encoded(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)  # red in CMYK


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (30, 20), colour) for colour in (RED, BLUE)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def truncated(data: bytes) -> bytes:
    return data[:len(data) // 2]


JPEG = encoded(halves((64, 48), RED, BLUE), "JPEG", quality=90)
PNG = encoded(halves((64, 48), RED, BLUE), "PNG")

# name → (file bytes, check of the decoded (H, W, 3) array)
READABLE: dict[str, tuple[bytes, Callable[[np.ndarray], bool]]] = {
    "1x1": (encoded(Image.new("RGB", (1, 1), RED), "PNG"), lambda a: a.shape == (1, 1, 3) and tuple(a[0, 0]) == RED),
    "grayscale": (encoded(Image.new("L", (20, 10), 128), "PNG"),
                  lambda a: a.shape == (10, 20, 3) and (a == 128).all()),
    "rgba": (rgba_png(), lambda a: (a[:, :20] == 255).all() and tuple(a[0, -1]) == BLUE),
    "palette with transparency": (palette_png_with_transparency(),
                                  lambda a: (a[:, :20] == 255).all() and tuple(a[0, -1]) == BLUE),
    "16-bit png": (png_16_bit(), lambda a: a.shape == (8, 64, 3) and a.min() == 0 and a.max() == 255),
    "cmyk jpeg": (cmyk_jpeg(), lambda a: a.shape == (32, 32, 3) and a[..., 0].min() > 200 and a[..., 1:].max() < 60),
    # Orientation 6: the camera was turned, the picture must be turned 90° clockwise to show it.
    "exif rotated": (exif_rotated_jpeg(6), lambda a: a.shape == (60, 30, 3) and a[2, :, 0].min() > 200
                     and a[-3, :, 2].min() > 200),
    "animated gif": (animated_gif(), lambda a: a.shape == (20, 30, 3) and (a[..., 0] > 200).all()),
    # Decoded no larger than the views need (photos.MAX_SIDE): 2048 px on the longer side.
    "wide 4000x20": (encoded(Image.new("RGB", (4000, 20), RED), "PNG"), lambda a: a.shape == (10, 2048, 3)),
    "tall 20x4000": (encoded(Image.new("RGB", (20, 4000), RED), "PNG"), lambda a: a.shape == (2048, 10, 3)),
}

# name → (file bytes, a word the one-line reason must contain)
UNREADABLE: dict[str, tuple[bytes, str]] = {
    "truncated jpeg": (truncated(JPEG), "truncated"),
    "truncated png": (truncated(PNG), "truncated"),
    "corrupt png": (corrupt_png(), "damaged"),
    "not an image": (b"#!/bin/sh\necho this is a shell script\n", "not a readable image"),
    "empty file": (b"", "not a readable image"),
    "decompression bomb 30000x30000": (png_header_only(30_000, 30_000), "megapixel limit"),
}


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message and len(message) < 300


@pytest.fixture
def write(tmp_path) -> Callable[[str, bytes], Path]:
    def write_file(name: str, data: bytes) -> Path:
        path = tmp_path / name.replace(" ", "-")
        path.write_bytes(data)
        return path
    return write_file


# --- the photo loader --------------------------------------------------------------------------

@pytest.mark.parametrize("name", READABLE)
def test_odd_but_valid_photos_load_correctly(name, write):
    data, check = READABLE[name]
    photo = load_photo_rgb(write(name, data))
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert check(photo), f"{name}: unexpected pixels, shape {photo.shape}"
    assert check(load_photo_rgb(data))  # the same from bytes


@pytest.mark.parametrize("name", UNREADABLE)
def test_unreadable_files_give_a_one_line_reason(name, write):
    data, word = UNREADABLE[name]
    for source in (write(name, data), data):
        with pytest.raises(PhotoError) as caught:
            load_photo_rgb(source)
        assert one_line(str(caught.value)) and word in str(caught.value), str(caught.value)


def test_a_bomb_is_refused_before_decoding(write, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the bomb was decoded")
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(PhotoError, match="megapixel limit"):
        load_photo_rgb(write("bomb.png", png_header_only(30_000, 30_000)))


def test_a_file_above_the_size_limit_is_refused_unread(write, monkeypatch):
    monkeypatch.setattr(photos, "MAX_BYTES", 1000)
    with pytest.raises(PhotoError, match="larger than"):
        load_photo_rgb(write("big.png", PNG + b"\0" * 1000))


def test_orientations_that_swap_the_sides(write):
    for orientation in (5, 6, 7, 8):
        assert load_photo_rgb(exif_rotated_jpeg(orientation)).shape == (60, 30, 3), orientation
    assert load_photo_rgb(exif_rotated_jpeg(3)).shape == (30, 60, 3)  # upside down: same sides


# --- the app's handlers, called in-process as the UI calls them ----------------------------------

def click(x: float, y: float) -> gr.SelectData:
    return select([x, y])


def select(index) -> gr.SelectData:
    """A select event whose index is anything an API caller may send."""
    return gr.SelectData(None, {"index": index, "value": None, "selected": True})


@pytest.fixture(scope="module")
def app(tiny_checkpoint, tmp_path_factory) -> tuple[gr.Blocks, str]:
    """The app on the tiny checkpoint (no server), and the checkpoint's name in the picker."""
    demo = build_app(checkpoint=tiny_checkpoint, checkpoints_dir=tmp_path_factory.mktemp("no-checkpoints"),
                     runs_dir=tiny_checkpoint.parent)
    return demo, f"{tiny_checkpoint.parent.name}/tiny"


def upload_and_analyse(app: tuple[gr.Blocks, str], path: Path):
    """What an upload does: read the file, then run the model (→ analysis key, status line)."""
    demo, checkpoint_name = app
    photo = handler(demo, "use_upload")(str(path))
    key, status, _ = handler(demo, "analyse")(photo, checkpoint_name, sources.FINAL)
    return key, status


@pytest.mark.parametrize("name", UNREADABLE)
def test_the_upload_handler_answers_a_bad_file_in_one_line_then_takes_a_good_one(app, name, write):
    with pytest.raises(gr.Error) as caught:
        handler(app[0], "use_upload")(str(write(name, UNREADABLE[name][0])))
    assert one_line(caught.value.message) and caught.value.message.startswith("This file cannot be used as a photo")
    key, status = upload_and_analyse(app, write("good.jpg", JPEG))
    assert key is not None and "photo 64×48" in status


@pytest.mark.parametrize("name", ["1x1", "wide 4000x20", "tall 20x4000", "exif rotated", "animated gif"])
def test_odd_photos_go_through_every_tab(app, name, write):
    demo = app[0]
    session = Session(demo)  # one browser: it uploads, then opens every tab (each draws only while shown)
    upload_photo(session, str(write(name, READABLE[name][0])))
    for module in TABS:
        session.select_tab(tab_bar(demo), tab_id(module))
    analyse = next(block_fn for block_fn in demo.fns.values() if block_fn.api_name == "analyse")
    key, status = (session.value(block) for block in analyse.outputs[:2])
    assert key is not None, status
    # Each view is drawn by the change listener of a State holding what it should show (`ui.lazy`).
    drawn = {fn._id for fn in session.finished
             if fn.targets and fn.targets[0][1] == "change" and isinstance(demo.blocks[fn.targets[0][0]], gr.State)}
    assert len(drawn) == len(TABS) + 3  # every tab (Position embeddings, Tensor journey in two parts), the tour panel
    strip = next(block for block in demo.blocks.values() if block.elem_id == "epochs-strip")
    assert [caption for _, caption in session.value(strip)] == ["epoch 1", "final (epoch 2)"]


def test_clicks_before_a_photo_and_outside_it_change_nothing(app, write):
    demo = app[0]
    patch_clicks = [("select_patch", lambda key, e: handler(demo, "select_patch", journey_tab)(key, e)),
                    ("attention", lambda key, e: handler(demo, "on_click", attention_tab)(key, 1, "query", "local", e)),
                    ("positions", lambda key, e: handler(demo, "on_click", positions_tab)(key, "fixed", e))]
    for name, on_click in patch_clicks:
        assert all(out == gr.skip() for out in on_click(None, click(3, 3))), name
    key, _ = upload_and_analyse(app, write("good.png", PNG))
    for name, on_click in patch_clicks:
        for outside in (click(-5, 3), click(3, 99_999)):
            with pytest.warns(UserWarning, match="That click is not on the picture"):
                assert all(out == gr.skip() for out in on_click(key, outside)), name
        assert patch_at(on_click(key, click(1, 1))[0], (4, 4)) == 0  # the top-left patch, after the refused clicks


# What an API caller may send instead of a click's [x, y]: each is refused with one line.
MALFORMED_CLICKS = [["a", "b"], [1], "xyz", None, [float("nan"), 3], [3, float("inf")], [10**400, 3], [True, False],
                    [1, 2, 3], {"x": 1, "y": 2}]
# Numbers, but outside the picture: a warning, and nothing changes.
FAR_CLICKS = [[1e300, 3], [-5, -5], [3, -(10**30)]]
# What an API caller may send instead of a slider's number.
NOT_NUMBERS = ["xyz", None, float("nan"), float("inf"), [1], 10**400, True]


def refused_in_one_line(call: Callable, *words: str) -> None:
    """`call()` raises the app's one-line gr.Error (containing `words`), logged without a traceback."""
    with pytest.raises(gr.Error) as caught:
        call()
    assert one_line(caught.value.message) and not caught.value.print_exception, caught.value.message
    assert all(word in caught.value.message for word in words), caught.value.message


def patch_click_handlers(demo: gr.Blocks) -> dict[str, Callable]:
    """Every picture a patch is clicked on: fn(key, select event) → the handler's outputs."""
    positions = [handler(demo, "on_click", positions_tab, i) for i in range(4)]  # the photo, then 3 maps
    return {"journey": handler(demo, "select_patch", journey_tab),
            "attention": lambda key, e: handler(demo, "on_click", attention_tab)(key, 1, "query", "local", e),
            **{f"positions {i}": lambda key, e, fn=fn: fn(key, "fixed", e) for i, fn in enumerate(positions)}}


def test_malformed_clicks_get_one_line_and_change_nothing(app, write):
    """Click data sent through the API: whatever it holds, one line for the user and nothing
    changed; a good click afterwards works."""
    key, _ = upload_and_analyse(app, write("good.png", PNG))
    for name, on_click in patch_click_handlers(app[0]).items():
        for index in MALFORMED_CLICKS:
            refused_in_one_line(lambda: on_click(key, select(index)), "That click cannot be read")
        for index in FAR_CLICKS:
            with pytest.warns(UserWarning, match="That click is not on the picture") as warned:
                assert all(out == gr.skip() for out in on_click(key, select(index))), (name, index)
            assert all(one_line(str(w.message)) for w in warned)
        assert patch_at(on_click(key, click(1, 1))[0], (4, 4)) == 0, name  # the top-left patch


def test_malformed_controls_of_the_attention_tab_get_one_line(app, write):
    """The layer slider and the direction and colour-scale radios, as an API caller may send them:
    a non-number or an unknown choice is refused in one line; a number out of range is clamped to
    the model's layers (a slider may still hold a layer of the previous checkpoint)."""
    demo = app[0]
    key, _ = upload_and_analyse(app, write("good.png", PNG))
    depth = 2  # the tiny checkpoint's
    handlers = {name: handler(demo, name, attention_tab) for name in ("on_control", "refresh", "on_save")}
    for name, handler_ in handlers.items():
        for value in NOT_NUMBERS:
            refused_in_one_line(lambda: handler_(key, None, value, "query", "local"), "Layer must be a number")
        for direction in ("xyz", None, ["query"]):
            refused_in_one_line(lambda: handler_(key, None, 1, direction, "local"),
                                "Direction must be one of query, key")
        refused_in_one_line(lambda: handler_(key, None, 1, "query", 3), "Colour scale must be one of local, global")
    for layer, shown in ((-5, 1), (0, 1), (1.4, 1), (10**6, depth), (1e300, depth)):
        status = handlers["on_control"](key, None, layer, "key", "global")[0]
        assert f"layer {shown} of {depth}" in status, (layer, status)
        assert handlers["refresh"](key, None, layer, "key", "global")[-3]["value"] == shown  # the slider, put right
    assert "Patch **5**" in handlers["on_control"](key, patch_centre(5, (4, 4)), 2, "query", "local")[0]  # still works


def test_malformed_controls_of_the_position_tab_get_one_line(app, write):
    """The dimension slider and the colour-range radio, as for the Attention tab: a dimension out of
    range is clamped to the table's width, anything else refused in one line."""
    demo = app[0]
    key, _ = upload_and_analyse(app, write("good.png", PNG))
    on_dimension = handler(demo, "on_dimension", positions_tab)
    refresh_tables = handler(demo, "refresh_tables", positions_tab)
    for value in NOT_NUMBERS:
        refused_in_one_line(lambda: on_dimension(key, value), "Embedding dimension d must be a number")
        refused_in_one_line(lambda: refresh_tables(key, "fixed", value), "Embedding dimension d must be a number")
    width = 32  # the tiny checkpoint's
    for d, shown in ((-5, 0), (10**6, width - 1), (1e300, width - 1)):
        assert on_dimension(key, d) == on_dimension(key, shown)
        assert refresh_tables(key, "fixed", d)[1 + 3 + 3]["value"] == shown  # the slider, put right
    handlers = [handler(demo, "on_colour_range", positions_tab), handler(demo, "refresh", positions_tab)]
    for handler_ in handlers:
        for colour_range in ("xyz", None, ["fixed"], 1):
            refused_in_one_line(lambda: handler_(key, None, colour_range),
                                "Similarity colour range must be one of fixed, stretch")
    refused_in_one_line(lambda: refresh_tables(key, "xyz", 0), "Similarity colour range must be one of")
    assert "Patch **5**" in handlers[0](key, patch_centre(5, (4, 4)), "fixed")[1]  # the tab still works


def test_malformed_what_if_numbers_get_one_line(app):
    """The what-if fields are number fields: an empty one is a reason beside the table, anything no
    number field sends is refused in one line."""
    settings, *values = journey_tab.seed_settings()
    for value in ("xyz", [1], 10**400, float("inf"), True):
        refused_in_one_line(lambda: journey_tab.show_what_if(settings, value, *values[1:]),
                            "image size (px) must be a number")
    summary, _ = journey_tab.show_what_if(settings, None, *values[1:])
    assert one_line(summary) and "whole number" in summary
    summary, _ = journey_tab.show_what_if(settings, *values)
    assert "86,284,806" in summary  # the reference model, after the refused values


def test_a_running_server_answers_bad_uploads_in_one_line_and_keeps_serving(tiny_checkpoint, tmp_path, write):
    """Through the HTTP API, as a script or a browser sends them: each bad file gets a one-line
    error, a file above the upload limit is refused, and a good photo afterwards gets its analysis."""
    args = ["--checkpoint", str(tiny_checkpoint), "--checkpoints-dir", str(tmp_path / "none"),
            "--runs-dir", str(tiny_checkpoint.parent)]
    with running_app(*args) as app:
        client = Client(app.url, verbose=False, download_files=False)
        for name, file_name in (("not an image", "not-an-image.jpg"), ("truncated jpeg", "truncated.jpg"),
                                ("decompression bomb 30000x30000", "bomb.png"), ("not an image", "script.sh")):
            with pytest.raises(AppError) as caught:
                client.predict(handle_file(write(file_name, UNREADABLE[name][0])), api_name="/use_upload")
            # Gradio itself refuses a name that is not an image's; the app reads the others and says why not.
            reason = "Invalid file type" if file_name.endswith(".sh") else "cannot be used as a photo"
            assert one_line(str(caught.value)) and reason in str(caught.value), str(caught.value)
        huge = write("huge.png", PNG + b"\0" * photos.MAX_BYTES)
        with pytest.raises(Exception, match="(?i)too large|413|size"):
            client.predict(handle_file(huge), api_name="/use_upload")
        client.predict(handle_file(write("good.jpg", JPEG)), api_name="/use_upload")
        status, _ = client.predict(f"{tiny_checkpoint.parent.name}/tiny", sources.FINAL, api_name="/analyse")
        assert "photo 64×48" in status


# --- broken checkpoint folders -----------------------------------------------------------------

def break_folder(folder: Path, how: str) -> None:
    """Damage a copy of a checkpoint folder in one of the ways a download or a hand edit can."""
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    if how == "no weights":
        weights_path.unlink()
        (folder / "train_state.safetensors").unlink()
    elif how == "truncated weights":
        weights_path.write_bytes(weights_path.read_bytes()[:1000])
    elif how == "weights of the wrong shape":
        weights = load_file(weights_path)
        name = next(k for k, v in weights.items() if v.dim() == 2)
        weights[name] = weights[name][:, :-1].contiguous()
        save_file(weights, weights_path)
    elif how == "config that does not match the weights":
        config = json.loads(config_path.read_text())
        config["model"]["depth"] += 1
        config_path.write_text(json.dumps(config))
    elif how == "unreadable config":
        config_path.write_text("{ not json")
    elif how == "no config":
        config_path.unlink()


BROKEN = ["no weights", "truncated weights", "weights of the wrong shape", "config that does not match the weights",
          "unreadable config", "no config"]


def snapshot_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_model_in_memory(monkeypatch) -> None:
    """From now on, building a model anywhere but on the meta device fails the test: a folder must
    be refused before its model takes any memory."""
    def meta_only(cfg):
        assert torch.empty(0).is_meta, f"a model of width {cfg.embed_dim} × {cfg.depth} blocks was built in memory"
        return SegmentationViT(cfg)
    monkeypatch.setattr(ckpt, "SegmentationViT", meta_only)


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_checkpoint_folder_gives_one_line_and_is_left_as_it_was(tiny_checkpoint, tmp_path, how, monkeypatch):
    no_model_in_memory(monkeypatch)
    folder = tmp_path / "runs" / "broken"
    shutil.copytree(tiny_checkpoint, folder)
    break_folder(folder, how)
    before = snapshot_of(folder)
    with pytest.raises(CheckpointError) as caught:
        load_model(folder)
    assert one_line(str(caught.value)) and str(folder) in str(caught.value)
    assert snapshot_of(folder) == before  # nothing written, not even half-way


@pytest.mark.parametrize("how", ["no weights", "truncated weights", "weights of the wrong shape",
                                 "config that does not match the weights", "unreadable config"])
def test_switching_to_a_broken_checkpoint_shows_a_message_and_the_good_one_still_works(tiny_checkpoint, tmp_path,
                                                                                      how, write):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_checkpoint, runs / "good")
    shutil.copytree(tiny_checkpoint, runs / "broken")
    break_folder(runs / "broken", how)
    demo = build_app(checkpoint=runs / "good", checkpoints_dir=tmp_path / "none", runs_dir=runs)
    photo = handler(demo, "use_upload")(str(write("good.png", PNG)))
    if how != "unreadable config":  # a folder whose config cannot be read offers only "final"
        assert handler(demo, "use_checkpoint")("runs/broken")["value"] == sources.FINAL
    key, status, preview = handler(demo, "analyse")(photo, "runs/broken", sources.FINAL)
    assert key is None and status.startswith("⚠") and one_line(status) and preview is not None
    key, status, _ = handler(demo, "analyse")(photo, "runs/good", sources.FINAL)
    assert key is not None and status.startswith("**runs/good**")


def test_a_folder_with_only_a_config_is_refused_before_any_model_is_built(tmp_path, monkeypatch):
    """What a training job writes first, within seconds: the folder is in the picker, and picking
    it must not build its model (302M parameters here: 1.2 GB) only to find no weights."""
    folder = tmp_path / "runs" / "starting"
    folder.mkdir(parents=True)
    cfg = preset("seed", {"embed_dim": 1024, "depth": 24, "num_heads": 16})[0]  # ViT-L's encoder
    (folder / "config.json").write_text(json.dumps({"model": cfg.to_dict()}))
    assert list(sources.find_checkpoints(tmp_path / "runs").values()) == [folder]
    no_model_in_memory(monkeypatch)
    for load in (load_model, ModelCache().model):
        with pytest.raises(CheckpointError) as caught:
            load(folder)
        assert one_line(str(caught.value)) and "no model.safetensors" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("width, depth", [(65536, 1000), (1024, 24)])
@pytest.mark.parametrize("epoch", [None, 1])
def test_a_config_too_large_to_open_is_refused_in_one_line(tiny_checkpoint, tmp_path, width, depth, epoch,
                                                           monkeypatch):
    """A config.json asking for more than MAX_PARAMETERS, beside weights (of another model): refused
    with the count, before the 51 GB that its first block alone would take (65536 wide) are asked for."""
    folder = tmp_path / "runs" / "big"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"].update(embed_dim=width, depth=depth)
    (folder / "config.json").write_text(json.dumps(config))
    no_model_in_memory(monkeypatch)
    with pytest.raises(CheckpointError) as caught:
        load_model(folder, epoch)
    message = str(caught.value)
    assert one_line(message) and str(folder) in message and f"at most {MAX_PARAMETERS:,}" in message, message


def change_a_matrix(path: Path, key: str, change: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Rewrite one tensor of a safetensors file, keeping the rest and the header's metadata."""
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    tensors[key] = change(tensors[key]).contiguous()
    save_file(tensors, path, metadata)


@pytest.mark.parametrize("where", ["model.safetensors", "train_state.safetensors", "snapshot", "int8 snapshot",
                                   "int8 snapshot's scale"])
def test_weights_of_another_shape_are_named_before_any_model_is_built(tiny_checkpoint, tmp_path, where, monkeypatch):
    folder = tmp_path / "runs" / "reshaped"
    shutil.copytree(tiny_checkpoint, folder)
    name = "blocks.1.mlp.fc2.weight"
    epoch = 1 if "snapshot" in where else None
    if where.startswith("int8"):  # as shipped checkpoints keep them: a scale per row of each matrix
        ckpt.atomic_save_tensors(snapshot_path(folder, epoch), *ckpt.int8_state(load_model(folder, epoch)))
    no_model_in_memory(monkeypatch)
    if where == "model.safetensors":
        change_a_matrix(folder / where, name, lambda t: t[:, :-1])
    elif where == "train_state.safetensors":
        (folder / "model.safetensors").unlink()  # a run that has not finished: its weights are in the state
        change_a_matrix(folder / where, f"model.{name}", lambda t: t[:, :-1])
    elif where == "int8 snapshot's scale":
        change_a_matrix(snapshot_path(folder, epoch), name + INT8_SCALE, lambda t: t[:3, 0])
    else:
        change_a_matrix(snapshot_path(folder, epoch), name, lambda t: t[:, :-1])
    with pytest.raises(CheckpointError) as caught:
        load_model(folder, epoch)
    message = str(caught.value)
    assert one_line(message) and str(folder) in message and name in message, message
    if where != "int8 snapshot's scale":
        assert f"{name}: (32, 127) in the file, (32, 128) in the model" in message, message


def test_a_checkpoint_with_no_config_is_not_offered(tiny_checkpoint, tmp_path):
    shutil.copytree(tiny_checkpoint, tmp_path / "runs" / "broken")
    break_folder(tmp_path / "runs" / "broken", "no config")
    assert sources.find_checkpoints(tmp_path / "runs") == {}
    with pytest.raises(CheckpointError, match="no config.json"):
        read_config(tmp_path / "runs" / "broken")


# --- paths from the UI --------------------------------------------------------------------------

def test_paths_from_the_ui_are_resolved_and_confined(tmp_path):
    runs, data = tmp_path / "runs", tmp_path / "data"
    (runs / "a").mkdir(parents=True)
    data.mkdir()
    assert ckpt.confine(runs / "a", [runs, data]) == (runs / "a").resolve()
    assert ckpt.confine(data, [runs, data]) == data.resolve()
    for outside in (tmp_path, runs / ".." / ".." / "etc", "/etc/passwd", runs.parent / "runs-evil"):
        with pytest.raises(ckpt.PathNotAllowed) as caught:
            ckpt.confine(outside, [runs, data])
        assert one_line(str(caught.value))
    (runs / "link").symlink_to(tmp_path, target_is_directory=True)  # a link out of runs/ is followed
    with pytest.raises(ckpt.PathNotAllowed):
        ckpt.confine(runs / "link", [runs])


@pytest.mark.parametrize("data_root", [None, "tiny_data"])
def test_the_train_tab_trains_only_on_data_inside_the_apps_data_root(tiny_data, tmp_path, data_root):
    data_root = tiny_data if data_root else None
    demo = build_app(checkpoint=tmp_path / "none", checkpoints_dir=tmp_path / "none", runs_dir=tmp_path / "runs",
                     data_root=data_root)
    field = next(block for block in demo.blocks.values() if block.elem_id == "train-data-root")
    form = jobs.form_defaults("tiny")
    values = [form[f] for f in (*jobs.MODEL_FIELDS, *jobs.TRAIN_FIELDS)]
    start = handler(demo, "start")
    if data_root is None:  # the field says why it cannot be used, and a start through the API is refused
        assert field.info == jobs.NO_DATA_ROOT and not field.interactive and field.value == ""
        message, _ = start("tiny", "run", str(tiny_data), "en", *values)
        assert message == f"⚠ {jobs.NO_DATA_ROOT}"
    else:
        assert str(tiny_data.resolve()) in field.info and field.interactive and field.value == str(tiny_data)
        for outside in ("/etc", f"{tiny_data}/..", tmp_path):
            message, _ = start("tiny", "run", str(outside), "en", *values)
            assert message.startswith("⚠ Data root:") and "is outside the folders this app may read" in message
            assert one_line(message)
    assert not (tmp_path / "runs").exists()  # no job was started


def test_a_checkpoint_that_links_outside_the_allowed_folders_is_refused(tiny_checkpoint, tmp_path, write):
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    shutil.copytree(tiny_checkpoint, runs / "good")
    shutil.copytree(tiny_checkpoint, elsewhere)
    (runs / "link").symlink_to(elsewhere, target_is_directory=True)
    demo = build_app(checkpoint=runs / "good", checkpoints_dir=tmp_path / "none", runs_dir=runs)
    photo = handler(demo, "use_upload")(str(write("good.png", PNG)))
    key, status, _ = handler(demo, "analyse")(photo, "runs/link", sources.FINAL)
    assert key is None and "outside the folders this app may read" in status
    assert sources.checkpoint_folder("runs/good", {"runs/good": runs / "good"}, [runs]) == (runs / "good").resolve()
    assert sources.checkpoint_folder("missing", {}, [runs]) is None


# --- load: bounded memory, and the load script -----------------------------------------------------

def test_the_photo_store_is_bounded_by_memory():
    small = 100 * 100 * 3
    store = PhotoStore(capacity=64, max_bytes=3 * small)
    ids = [store.put(np.full((100, 100, 3), i, np.uint8)) for i in range(5)]
    assert all(store.get(pid) is not None for pid in ids[-3:])
    with pytest.raises(gr.Error, match="no longer in memory"):
        store.get(ids[-4])
    big = store.put(np.zeros((1000, 1000, 3), np.uint8))  # above the budget on its own: kept, alone
    assert store.get(big).shape == (1000, 1000, 3)
    with pytest.raises(gr.Error):
        store.get(ids[-1])


def test_the_model_cache_keeps_every_snapshot_of_a_small_run_and_respects_its_budget(tiny_checkpoint, monkeypatch):
    loads = []

    def counted_load(*args):
        loads.append(args)
        return load_model(*args)
    monkeypatch.setattr(inference, "load_model", counted_load)
    cache = ModelCache()
    for _ in range(3):  # the final weights and both snapshots, as the Epochs view asks for them
        for epoch in (None, 1, 2):
            cache.model(tiny_checkpoint, epoch)
    assert len(loads) == 3
    tight = ModelCache(max_model_bytes=1)  # room for the newest model only
    for epoch in (None, 1, None):
        tight.model(tiny_checkpoint, epoch)
    assert len(loads) == 6


def test_the_analysis_cache_respects_its_memory_budget(tiny_checkpoint):
    photos = [np.full((40, 40, 3), value, np.uint8) for value in (10, 20, 30)]
    one = ModelCache().analysis(photos[0], tiny_checkpoint)
    assert one.nbytes > sum(a.numel() * a.element_size() for a in one.trace.attentions) > 0
    cache = ModelCache(max_analysis_bytes=one.nbytes * 5 // 2)  # room for two analyses of this size
    kept = [cache.analysis(photo, tiny_checkpoint) for photo in photos]
    assert cache.analysis(photos[2], tiny_checkpoint) is kept[2]
    assert cache.analysis(photos[1], tiny_checkpoint) is kept[1]
    assert cache.analysis(photos[0], tiny_checkpoint) is not kept[0]  # the oldest went: computed again


def test_the_load_script_runs_two_users_for_a_few_requests_with_page_reloads(tiny_checkpoint, capsys):
    spec = importlib.util.spec_from_file_location("load_test", Path(__file__).parents[1] / "scripts" / "load_test.py")
    load_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_test)
    # Stopped by a request count, not a clock, so a busy machine still gets as far as the clicks.
    code = load_test.main(["--checkpoint", str(tiny_checkpoint), "--users", "2", "--duration", "300",
                           "--max-requests", "60", "--ramp", "0", "--think", "0.2", "--clicks", "4", "--reload"])
    out = capsys.readouterr().out
    assert code == 0 and ", 0 errors" in out, out
    assert "attention click" in out and "tab open" in out and "tab redraw" in out and "until drawn" in out
    assert "page load" in out  # each new page fetches the page and runs its load listeners, as a browser does
    assert "server RSS" in out and "MB a minute" in out
    assert load_test.trend([(0, 5.0), (1, 7.0), (2, 9.0)]) == pytest.approx(2.0)


def test_no_code_unpickles_anything():
    """Weights load through safetensors only: no torch.load and no pickle anywhere in the code."""
    repo = Path(__file__).parents[1]
    for path in [repo / "app.py", *(repo / "vitviz").rglob("*.py"), *(repo / "scripts").glob("*.py")]:
        code = path.read_text()
        assert "torch.load(" not in code and "import pickle" not in code and "pickle.load" not in code, path


def test_the_server_bounds_native_memory_where_glibc_allows_it():
    """app.py calls this before serving; glibc takes the settings, other C libraries are left alone."""
    import platform

    from vitviz.app.malloc import bound_fragmentation
    assert bound_fragmentation() == (platform.libc_ver()[0] == "glibc")


def test_free_heap_pages_go_back_to_the_system_every_few_seconds():
    """Blocks below the mmap threshold, freed while a later block stays in use, keep their pages
    in the process until the trimming thread hands them back."""
    import ctypes
    import platform
    import threading
    import time

    from vitviz.app.malloc import _glibc, trim_every
    stop = threading.Event()
    if platform.libc_ver()[0] != "glibc":
        assert trim_every(0.05, stop) is None
        return
    libc = _glibc()
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = 100 << 10  # below the 256 KB threshold: from the heap, not mmap
    blocks = [libc.malloc(block) for _ in range(2000)]  # 200 MB
    for address in blocks:
        ctypes.memset(address, 1, block)  # touched: resident
    before = rss_bytes()
    for address in blocks[:-1]:
        libc.free(address)  # the last block stays in use: the heap's top cannot simply shrink
    assert rss_bytes() > before - (50 << 20)  # freed, yet still resident
    thread = trim_every(0.05, stop)
    assert thread.daemon and thread.is_alive()
    deadline = time.monotonic() + 10
    while rss_bytes() > before - (150 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    libc.free(blocks[-1])
    assert rss_bytes() < before - (150 << 20)
    stop.set()  # no trimming left running for the rest of the tests
    thread.join(timeout=5)
    assert not thread.is_alive()


def rss_bytes() -> int:
    """This process's resident memory (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_the_server_listens_on_this_computer_only_and_bounds_what_it_keeps(tiny_checkpoint, tmp_path, monkeypatch):
    """What `python app.py` hands Gradio: 127.0.0.1 unless asked, an upload size limit, a bounded
    queue, and a bounded number of sessions kept (each holds a copy of the page's config)."""
    launched, trimmed = {}, []
    monkeypatch.setattr(gr.Blocks, "launch", lambda demo, **kwargs: launched.update(kwargs, demo=demo))
    # The server's process settings, not this test process's:
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(shell, "trim_every", trimmed.append)
    monkeypatch.setattr(shell, "stop_like_ctrl_c", lambda: None)  # the server's signal handling, not pytest's
    monkeypatch.setattr("os.environ", dict(os.environ))  # app.main sets Gradio's analytics variables
    shell.main(["--checkpoint", str(tiny_checkpoint), "--checkpoints-dir", str(tmp_path), "--runs-dir", str(tmp_path)])
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False
    assert launched["max_file_size"] == photos.MAX_BYTES
    assert launched["state_session_capacity"] == shell.SESSIONS_KEPT <= 1000
    assert launched["demo"]._queue.max_size == shell.QUEUE_SIZE
    assert trimmed == [shell.TRIM_SECONDS]
    # Gradio's own copies of uploads and pictures sit in a folder of this server's, not in /tmp/gradio.
    gradio_folder = Path(os.environ["GRADIO_TEMP_DIR"])
    assert gradio_folder.name.startswith("vitviz-gradio-") and gradio_folder.stat().st_mode & 0o777 == 0o700
    assert Path(launched["demo"].GRADIO_CACHE) == gradio_folder
