"""Pure image preprocessing to a model's data contract.

One path for every dataset: decode with PIL (forced full decode, so a truncated JPEG
fails here and not later), resize the shorter side to ``contract.resize_size``
(bilinear), centre-crop ``contract.image_size``, scale to [0, 1], normalise per channel
``(x - mean) / std`` with mean/std listed in the model's channel order (as ck-mlperf's
``ML_MODEL_GIVEN_CHANNEL_MEANS``: a BGR model's means are B, G, R), lay out as NCHW or NHWC and cast
to the contract's dtype. All pixel arithmetic is vectorised numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ckvision.errors import DataError
from ckvision.models.contract import ModelContract

__all__ = ["load_image", "resize_and_crop", "normalize", "preprocess", "preprocess_file"]


def load_image(path: Path | str) -> Image.Image:
    """Decode ``path`` fully and return it as an RGB PIL image."""
    try:
        with Image.open(path) as image:
            image.load()  # force the full decode: truncated files fail here
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot read image {path}: {reason}; remove or replace it") from err


def resize_and_crop(image: Image.Image, resize_size: int, crop_size: int) -> Image.Image:
    """Resize so the shorter side is ``resize_size`` (bilinear), then centre-crop a square."""
    width, height = image.size
    scale = resize_size / min(width, height)
    new_w = max(crop_size, round(width * scale))
    new_h = max(crop_size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left = (new_w - crop_size) // 2
    top = (new_h - crop_size) // 2
    return image.crop((left, top, left + crop_size, top + crop_size))


def normalize(pixels: np.ndarray, contract: ModelContract) -> np.ndarray:
    """HWC uint8 RGB pixels -> one sample in the contract's layout, order and dtype."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DataError(f"expected an HxWx3 image, got shape {pixels.shape}")
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    out = pixels.astype(np.float32) / np.float32(255.0)
    if contract.color_order == "BGR":
        out = out[:, :, ::-1]  # mean/std are listed in the model's channel order
    out = (out - mean) / std
    if contract.layout == "NCHW":
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out, dtype=np.dtype(contract.input_dtype))


def preprocess(image: Image.Image, contract: ModelContract) -> np.ndarray:
    """One decoded image -> one model input sample (no batch axis)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    cropped = resize_and_crop(image, contract.resize_size, contract.image_size)
    return normalize(np.asarray(cropped, dtype=np.uint8), contract)


def preprocess_file(path: Path | str, contract: ModelContract) -> np.ndarray:
    """Read ``path`` and preprocess it to ``contract``."""
    return preprocess(load_image(path), contract)
