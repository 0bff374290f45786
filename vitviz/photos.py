"""Turning whatever a user uploads into an RGB array, or a one-line reason why not."""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # larger images are refused before decoding (decompression bombs)
MAX_BYTES = 30 * 1024 * 1024


class PhotoError(ValueError):
    """A photo that cannot be used; the message is one line for the user."""


def load_photo_rgb(source: str | os.PathLike | bytes | Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB: EXIF orientation applied, first frame of animations, transparency
    composited on white, 16-bit and CMYK converted."""
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
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
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
