"""Any image Pillow can open -> correct 8-bit RGB, or one line naming the file.

The rule is the MLPerf reference's: it reads images with ``cv2.imread(path)``
(``IMREAD_COLOR``), so we produce exactly what that call gives, converted BGR -> RGB:

=============================  ==============================================================
source                          8-bit RGB we produce (= ``cv2.imread`` + BGR->RGB)
=============================  ==============================================================
RGB, YCbCr JPEG                 decoded pixels (Pillow and OpenCV share libjpeg-turbo: equal)
L, 1 (grayscale, bilevel)       the gray value in all three channels
P (palette)                     the palette colours (transparency ignored)
RGBA, LA, PA, RGBa              the colour channels; alpha is dropped, not composited
CMYK (JPEG)                     OpenCV's JPEG conversion: ``R = (255-K) - ((C*(255-K)) >> 8)``
I;16 (16-bit)                   the high byte ``v >> 8``, as OpenCV's PNG reader
I (32-bit int)                  as 16-bit when every value is 0..65535, else refused
F (floating point)              refused: float pixels have no defined 8-bit scale
EXIF orientation                applied (``cv2.imread`` applies it by default)
=============================  ==============================================================

A conversion must never turn a picture into a blank one: if the result is a single
colour while the source was not (a 16-bit image that uses only the low byte, a drawing
whose shape lives only in its alpha channel), the image is refused with one line.
Unreadable, truncated and decompression-bomb files are refused with one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ckvision.errors import DataError

__all__ = ["decode_rgb8", "to_rgb8"]

_ALPHA_MODES = {"RGBA": "RGB", "RGBa": "RGB", "LA": "L", "La": "L", "PA": "RGB"}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _refuse(name: str, why: str) -> DataError:
    shown = name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name
    return DataError(f"cannot use image {shown}: {why}; remove or replace it")


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    # OpenCV's PNG reader keeps the high byte (libpng's strip_16).
    return (values.astype(np.uint32) >> 8).astype(np.uint8)


def _gray3(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def to_rgb8(image: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image -> HxWx3 uint8 RGB (see the module table); ``name`` is for
    the error line."""
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    source_varies = True
    if mode == "RGB":
        out = np.asarray(image, dtype=np.uint8)
    elif mode in ("L", "1"):
        out = _gray3(np.asarray(image.convert("L"), dtype=np.uint8))
    elif mode == "P":
        out = np.asarray(image.convert("RGB"), dtype=np.uint8)
    elif mode in _ALPHA_MODES:
        full = image.convert("RGBA" if _ALPHA_MODES[mode] == "RGB" else "LA")
        values = np.asarray(full, dtype=np.uint8)
        source_varies = bool(np.ptp(values.reshape(-1, values.shape[-1]), axis=0).any())
        colour = values[:, :, :-1]
        out = colour if colour.shape[2] == 3 else _gray3(colour[:, :, 0])
    elif mode == "CMYK":
        cmyk = np.asarray(image, dtype=np.uint16)
        white = 255 - cmyk[:, :, 3:4]
        out = (white - ((cmyk[:, :, :3] * white) >> 8)).astype(np.uint8)
    elif mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(image)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise _refuse(name, "32-bit integer pixels outside 0..65535 have no 8-bit scale")
        source_varies = bool(values.size and np.ptp(values) > 0)
        out = _gray3(_sixteen_to_eight(values))
    elif mode == "F":
        raise _refuse(name, "floating-point pixels (mode F) have no defined 8-bit scale")
    else:
        try:
            out = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (ValueError, OSError) as err:
            raise _refuse(name, f"Pillow cannot convert mode {mode} to RGB ({err})") from err
    if out.ndim != 3 or out.shape[2] != 3 or out.size == 0:
        raise _refuse(name, f"decoded to shape {out.shape}, not an HxWx3 picture")
    if source_varies and mode not in ("RGB", "L", "1", "P", "CMYK") and _is_blank(out):
        raise _refuse(
            name,
            f"mode {mode} would become a single-colour picture in 8-bit RGB "
            "(its content is in the alpha channel or below the 8 high bits)",
        )
    return np.ascontiguousarray(out)


def _is_blank(pixels: np.ndarray) -> bool:
    flat = pixels.reshape(-1, 3)
    return bool((flat == flat[0]).all())


def decode_rgb8(path: Path | str) -> np.ndarray:
    """Decode ``path`` fully (a truncated file fails here) into HxWx3 uint8 RGB."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb8(image, str(path))
    except DataError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _refuse(str(path), f"unreadable ({reason})") from err
