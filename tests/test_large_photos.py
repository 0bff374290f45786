"""Large uploads: decoded no larger than the views need, the right way up, and cheaply; the memory
is measured in a fresh process.

Run as a script for the README's figures of a 40 MP JPEG and a 40 MP PNG (both within the upload
limits): the decode alone, then the decode, the analysis and the Segment tab's pictures:

    PYTHONPATH=. .venv/bin/python tests/test_large_photos.py
"""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitviz.views.pictures import fit_photo
from vitviz.app.photos import MAX_BYTES, MAX_PIXELS, MAX_SIDE, load_photo_rgb

ROOT = Path(__file__).resolve().parents[1]
SIZE_40MP = (7296, 5472)  # 39.9 MP: 7300×5480 would be just above the 40 MP limit
PEAK_ABOVE_IDLE_LIMIT = 200 * 2**20

# Run in a new interpreter: imports and Pillow's plugins are loaded (a tiny decode) first, then the
# high-water mark of resident memory is reset (/proc/self/clear_refs) and read again after the decode.
# With "analysis", the model is loaded and run once beforehand too (as in a running app), and what is
# measured is the decode, the traced forward pass and the Segment tab's pictures.
MEASURE = """
import sys
import tempfile
from PIL import Image
from vitviz.app.downloads import FAST, save_pngs
from vitviz.app.inference import ModelCache
from vitviz.app.photos import load_photo_rgb
from vitviz.views.pictures import fit_photo
from vitviz.views.segment import class_mask, overlay_mask, probability_maps

def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

def segment_tab(photo):
    analysis = cache.analysis(photo, "checkpoints/default", None)
    probs = analysis.probs_at_photo_size()
    pictures = {"photo": fit_photo(analysis.photo, 1024),
                "mask": overlay_mask(analysis.photo, class_mask(probs), 0.5, len(probs)),
                **probability_maps(analysis.probs, analysis.photo.shape)}
    save_pngs(pictures, tempfile.mkdtemp(), compress_level=FAST)

with_analysis = sys.argv[2:] == ["analysis"]
cache = ModelCache()
small = load_photo_rgb(Image.new("RGB", (8, 8)))
if with_analysis:
    segment_tab(small)
Image.open(sys.argv[1]).close()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
idle = status("VmRSS")
photo = load_photo_rgb(sys.argv[1])
if with_analysis:
    segment_tab(photo)
print(status("VmHWM") - idle, *photo.shape)
"""


def photo_like(width: int, height: int, grain: int, seed: int = 0) -> Image.Image:
    """A picture with smooth colour ramps, a bright disc, and random grain of `grain` levels."""
    y, x = np.ogrid[:height, :width]
    picture = np.random.default_rng(seed).integers(0, grain, (height, width, 3), dtype=np.uint8)
    picture[..., 0] += (x * (200 / width)).astype(np.uint8)
    picture[..., 1] += (y * (200 / height)).astype(np.uint8)
    disc = (x - width / 3) ** 2 + (y - height / 2) ** 2 < (height / 4) ** 2
    picture[disc, 2] += 200
    return Image.fromarray(picture)


def write_photo(path: Path, fmt: str, size: tuple[int, int] = SIZE_40MP) -> Path:
    """A `size` photo in `fmt`, checked to be within the upload limits (so the app would decode it).
    A lossless file holds less grain, or it would not fit them."""
    grain, options = {"JPEG": (24, {"quality": 90}), "PNG": (2, {"compress_level": 3})}[fmt]
    photo_like(*size, grain).save(path, format=fmt, **options)
    assert size[0] * size[1] <= MAX_PIXELS and path.stat().st_size <= MAX_BYTES, path.stat().st_size
    return path


def peak_above_idle(path: Path, with_analysis: bool = False) -> tuple[int, tuple[int, ...]]:
    """(bytes of peak resident memory above idle, shape of the decoded photo) of
    `load_photo_rgb(path)` in a fresh process; `with_analysis`: then the `default` model's analysis
    of it and the Segment tab's pictures too."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), *(["analysis"] if with_analysis else [])],
                          cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    peak, *shape = map(int, done.stdout.split())
    return peak, tuple(shape)


def test_a_40_megapixel_jpeg_costs_less_than_200_mb_to_decode(tmp_path):
    peak, shape = peak_above_idle(write_photo(tmp_path / "camera.jpg", "JPEG"))
    assert peak < PEAK_ABOVE_IDLE_LIMIT, f"{peak / 2**20:.0f} MB above idle for a {shape} photo"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_photo_is_decoded_at_the_largest_size_a_view_needs_and_looks_the_same(fmt):
    data = io.BytesIO()
    photo_like(4000, 3000, grain=8).save(data, format=fmt)
    photo = load_photo_rgb(data.getvalue())
    assert photo.shape == (1536, MAX_SIDE, 3)
    # The same pixels as the whole photo decoded, then shrunk (a JPEG's scaled decode differs a little).
    with Image.open(data) as full:
        expected = fit_photo(np.asarray(full.convert("RGB")), MAX_SIDE)
    assert np.abs(photo.astype(int) - expected).mean() < 1.5


def test_a_large_turned_jpeg_is_decoded_small_and_the_right_way_up():
    turned = np.zeros((2000, 4000, 3), np.uint8)
    turned[:, :2000, 0] = turned[:, 2000:, 2] = 255  # red | blue, as stored by a camera held upright
    exif = Image.Exif()
    exif[0x0112] = 6  # to be shown turned 90° clockwise: red on top, blue below
    data = io.BytesIO()
    Image.fromarray(turned).save(data, format="JPEG", quality=95, exif=exif)
    photo = load_photo_rgb(data.getvalue())
    assert photo.shape == (MAX_SIDE, MAX_SIDE // 2, 3)
    assert photo[:900, :, 0].min() > 240 and photo[-900:, :, 2].min() > 240


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("JPEG", "PNG"):
            path = write_photo(Path(folder) / f"photo.{fmt.lower()}", fmt)
            decoded, shape = peak_above_idle(path)
            shown, _ = peak_above_idle(path, with_analysis=True)
            print(f"{fmt} {SIZE_40MP[0]}x{SIZE_40MP[1]} ({path.stat().st_size / 2**20:.1f} MB file), decoded to "
                  f"{shape}: peak {decoded / 2**20:.0f} MiB above idle to decode, {shown / 2**20:.0f} MiB with the "
                  f"analysis and the Segment tab's pictures")
