"""Pixels in two steps: once per dataset choice, then per model at load time.

1. :func:`resize_and_crop` (cached, ``rgb8``): 8-bit RGB from :mod:`ckvision.data.images`,
   the shorter side resized to ``floor(side * 1000 / crop)`` with the choice's library
   and interpolation, the longer side keeping the aspect ratio (floored), then a centre
   crop whose offsets are floored. This is the geometry of the MLPerf reference's
   ``resize_with_aspectratio`` + ``center_crop``; with ``using-opencv, inter.area`` it is
   its ``pre_process_vgg`` up to the mean subtraction.
2. :func:`normalise` (by the program, when LoadGen loads samples): per channel
   ``(x / 255 - mean) / std`` with mean/std listed in the model's channel order (as
   ck-mlperf's ``ML_MODEL_GIVEN_CHANNEL_MEANS``: a BGR model's means are B, G, R), the
   model's layout (NCHW/NHWC) and dtype. One affine per channel, vectorised over a batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ckvision.data.images import decode_rgb8, to_rgb8
from ckvision.data.variation import Preprocessing
from ckvision.errors import DataError
from ckvision.models.contract import ModelContract

__all__ = [
    "load_image",
    "resize_and_crop",
    "normalise",
    "normalize",
    "preprocess",
    "preprocess_file",
    "rgb8_file",
    "MAX_ASPECT",
]

MAX_ASPECT = 50  # a longer side above 50 x the shorter one is refused (memory bomb)

_PIL_FILTERS = {
    "linear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "cubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def _cv2_flag(interpolation: str) -> int:
    import cv2

    return {
        "linear": cv2.INTER_LINEAR,
        "area": cv2.INTER_AREA,
        "cubic": cv2.INTER_CUBIC,
        "nearest": cv2.INTER_NEAREST,
    }[interpolation]


def load_image(path: Path | str) -> Image.Image:
    """Decode ``path`` into an RGB PIL image (the rules of :mod:`ckvision.data.images`)."""
    return Image.fromarray(decode_rgb8(path), "RGB")


def resized_size(width: int, height: int, spec: Preprocessing) -> tuple[int, int]:
    """(width, height) after the resize, as the MLPerf reference computes it."""
    short = spec.resize
    if height > width:
        return short, short * height // width
    return short * width // height, short


def _geometry(width: int, height: int, spec: Preprocessing, name: str) -> tuple[int, int, int, int]:
    """(width, height) after the resize and the centre crop's (left, top); an image far
    longer than wide is refused in one line."""
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise DataError(
            f"cannot use image {name}: {width}x{height} is more than {MAX_ASPECT} times "
            "longer than wide; remove or replace it"
        )
    new_w, new_h = resized_size(width, height, spec)
    return new_w, new_h, (new_w - spec.side) // 2, (new_h - spec.side) // 2


def resize_and_crop(pixels: np.ndarray, spec: Preprocessing, name: str = "image") -> np.ndarray:
    """HxWx3 uint8 RGB -> side x side x 3 uint8 RGB, per ``spec``."""
    height, width = pixels.shape[:2]
    new_w, new_h, left, top = _geometry(width, height, spec, name)
    if (new_w, new_h) != (width, height):
        if spec.library == "opencv":
            import cv2

            pixels = cv2.resize(pixels, (new_w, new_h), interpolation=_cv2_flag(spec.interpolation))
        else:
            image = Image.fromarray(pixels, "RGB")
            pixels = np.asarray(image.resize((new_w, new_h), _PIL_FILTERS[spec.interpolation]))
    return np.ascontiguousarray(pixels[top : top + spec.side, left : left + spec.side])


_ORIENTATION = 0x0112  # EXIF tag


def rgb8_file(path: Path | str, spec: Preprocessing) -> np.ndarray:
    """Read ``path`` and make the cached rgb8 sample of ``spec``.

    The common case (an RGB file without an EXIF rotation, resized with Pillow) skips
    the round trip through numpy between decoding and resizing: the same pixels, fewer
    copies (the preprocessing of 50,000 files runs at the raw loop's speed). Everything
    else, and every error, takes the general path of :func:`decode_rgb8`.
    """
    if spec.library == "pillow":
        try:
            with Image.open(path) as image:
                if image.mode == "RGB" and image.getexif().get(_ORIENTATION, 1) == 1:
                    image.load()
                    return _pillow_resize_and_crop(image, spec, str(path))
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
            pass  # the general path names the problem in one line
    return resize_and_crop(decode_rgb8(path), spec, str(path))


def _pillow_resize_and_crop(image: Image.Image, spec: Preprocessing, name: str) -> np.ndarray:
    """:func:`resize_and_crop` of a decoded RGB PIL image, with Pillow, no numpy round trip."""
    width, height = image.size
    new_w, new_h, left, top = _geometry(width, height, spec, name)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), _PIL_FILTERS[spec.interpolation])
    return np.asarray(image.crop((left, top, left + spec.side, top + spec.side)), dtype=np.uint8)


def _affine(contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    """Per model-channel (scale, offset) with ``out = x * scale + offset`` on 0..255."""
    mean = np.asarray(contract.mean, dtype=np.float64)
    std = np.asarray(contract.std, dtype=np.float64)
    return 1.0 / (255.0 * std), -mean / std


def normalise(batch: np.ndarray, contract: ModelContract) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, ...) in the model's layout, channel order and dtype."""
    if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
        raise DataError(f"expected an (N, H, W, 3) uint8 batch, got {batch.shape} {batch.dtype}")
    dtype = np.dtype(contract.input_dtype)
    scale, offset = _affine(contract)
    order = (2, 1, 0) if contract.color_order == "BGR" else (0, 1, 2)
    if dtype.kind != "f":
        identity = np.allclose(scale, 1.0) and np.allclose(offset, 0.0) and order == (0, 1, 2)
        if not (identity and dtype == np.uint8):
            raise DataError(
                f"model {contract.name}: input dtype {dtype} with normalisation is not "
                "supported; only float inputs, or uint8 RGB pixels as they are"
            )
        return np.ascontiguousarray(
            batch.transpose(0, 3, 1, 2) if contract.layout == "NCHW" else batch
        )
    work = np.float32 if dtype.itemsize <= 4 else np.float64
    n, h, w, _ = batch.shape
    shape = (n, 3, h, w) if contract.layout == "NCHW" else (n, h, w, 3)
    out = np.empty(shape, dtype=work)
    for c, rgb in enumerate(order):  # model channel c takes RGB channel rgb
        dst = out[:, c] if contract.layout == "NCHW" else out[..., c]
        np.multiply(batch[..., rgb], work(scale[c]), out=dst, dtype=work)
        dst += work(offset[c])
    return out if out.dtype == dtype else out.astype(dtype)


def normalize(pixels: np.ndarray, contract: ModelContract) -> np.ndarray:
    """One HxWx3 uint8 RGB sample -> one model input (no batch axis)."""
    sample: np.ndarray = normalise(pixels[None], contract)[0]
    return sample


def preprocess(image: Image.Image, contract: ModelContract) -> np.ndarray:
    """One decoded PIL image -> one model input sample (both steps, no batch axis)."""
    spec = Preprocessing.for_model(contract)
    return normalize(resize_and_crop(to_rgb8(image, "image"), spec), contract)


def preprocess_file(path: Path | str, contract: ModelContract) -> np.ndarray:
    """Read ``path`` and preprocess it to ``contract`` (e.g. for INT8 calibration)."""
    return normalize(rgb8_file(path, Preprocessing.for_model(contract)), contract)
