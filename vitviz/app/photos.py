"""Turning whatever a user uploads into an RGB array, or a one-line reason why not."""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # larger images are refused before decoding (decompression bombs)
MAX_BYTES = 30 * 1024 * 1024
# Larger photos are decoded at this size (longer side): twice the largest view (the Segment tab's
# photo, 1024 px), so that a full-screen view stays sharp; 3 MP, a 13th of a 40 MP photo.
MAX_SIDE = 2048


class PhotoError(ValueError):
    """A photo that cannot be used; the message is one line for the user."""


def load_photo_rgb(source: str | os.PathLike | bytes | Image.Image, max_side: int = MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 RGB, its longer side at most `max_side`: EXIF orientation applied, first
    frame of animations, transparency composited on white, 16-bit and CMYK converted."""
    try:
        if isinstance(source, Image.Image):
            im = source
        else:
            if isinstance(source, bytes):
                if len(source) > MAX_BYTES:
                    raise PhotoError(f"file is larger than {MAX_BYTES // 2**20} MB")
                source = io.BytesIO(source)
            elif os.path.getsize(source) > MAX_BYTES:
                raise PhotoError(f"file is larger than {MAX_BYTES // 2**20} MB")
            im = Image.open(source)
        if im.width * im.height > MAX_PIXELS:
            raise PhotoError(f"image is {im.width}x{im.height}, above the {MAX_PIXELS // 1_000_000} megapixel limit")
        if im.width < 1 or im.height < 1:
            raise PhotoError("image has no pixels")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.seek(0)
            im = ImageOps.exif_transpose(shrunk(im, max_side))
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64).clip(0)  # resampling may ring below 0
                im = Image.fromarray((arr / max(arr.max(), 1) * 255).astype(np.uint8))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except PhotoError:
        raise
    except Image.DecompressionBombError:  # Pillow refuses the largest sizes itself, before decoding
        raise PhotoError(f"image is far above the {MAX_PIXELS // 1_000_000} megapixel limit") from None
    except (UnidentifiedImageError, Image.DecompressionBombWarning) as e:
        raise PhotoError(f"not a readable image ({type(e).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise PhotoError(f"the image file is damaged or truncated ({str(e).splitlines()[0][:80]})") from None


def shrunk(im: Image.Image, max_side: int) -> Image.Image:
    """`im` resampled so that its longer side is at most `max_side`, decoded at the smallest size
    the format allows: a JPEG at 1/2, 1/4 or 1/8 scale (`draft`), still at least that large.

    Every later step copies the picture (orientation, mode, the array), and Pillow holds RGB in 4
    bytes a pixel: at full size a 40 MP photo cost over 500 MB to decode, most of it before it was
    shrunk for the views. The orientation is applied afterwards; it does not change the longer side."""
    scale = max_side / max(im.size)
    if scale >= 1:
        return im
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    drafted = im.draft("RGB", size)  # None unless a JPEG not yet decoded
    box = drafted[1] if drafted else None  # the part of the scaled decode that is the picture
    # Whole factors first (`reduce`), then LANCZOS over what is left: the images in between stay
    # small, which keeps a 40 MP PNG under 200 MB, and the pixels differ from LANCZOS alone by a
    # quarter of a level on average.
    return im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=1.0)
