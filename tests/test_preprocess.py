"""Preprocessing math on tiny images with hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ckvision.data.preprocess import load_image, preprocess, preprocess_file, resize_and_crop
from ckvision.data.variation import Preprocessing
from ckvision.errors import CkVisionError, DataError
from ckvision.models.contract import ModelContract

MEAN = (0.5, 0.4, 0.1)
STD = (0.25, 0.2, 0.5)
PIXEL = (255, 0, 51)  # R, G, B
# (x / 255 - mean) / std per channel, in R, G, B order
EXPECTED_RGB = ((1.0 - 0.5) / 0.25, (0.0 - 0.4) / 0.2, (0.2 - 0.1) / 0.5)  # 2, -2, 0.2


def _contract(**kw: object) -> ModelContract:
    base: dict[str, object] = {
        "name": "t",
        "image_size": 2,
        "resize_size": 2,
        "mean": MEAN,
        "std": STD,
    }
    base.update(kw)
    return ModelContract(**base)  # type: ignore[arg-type]


def _constant(width: int = 4, height: int = 4) -> Image.Image:
    return Image.new("RGB", (width, height), PIXEL)


def test_normalisation_nchw_rgb() -> None:
    out = preprocess(_constant(), _contract())
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    for c, value in enumerate(EXPECTED_RGB):
        np.testing.assert_allclose(out[c], np.full((2, 2), value), rtol=1e-6)


def test_nhwc_layout() -> None:
    out = preprocess(_constant(), _contract(layout="NHWC"))
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[1, 0], EXPECTED_RGB, rtol=1e-6)


def test_bgr_swaps_channels_and_means_are_in_model_order() -> None:
    # The model wants B, G, R; mean/std are listed in that order too.
    out = preprocess(_constant(), _contract(color_order="BGR"))
    b, g, r = 51 / 255, 0.0, 1.0
    expected = ((b - MEAN[0]) / STD[0], (g - MEAN[1]) / STD[1], (r - MEAN[2]) / STD[2])
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-6)


def test_dtype_follows_contract() -> None:
    out = preprocess(_constant(), _contract(input_dtype="float16"))
    assert out.dtype == np.float16
    np.testing.assert_allclose(out[:, 1, 1], EXPECTED_RGB, rtol=1e-3)


def test_resnet_style_mean_subtraction_without_scaling() -> None:
    contract = _contract(
        mean=(123.68 / 255, 116.78 / 255, 103.94 / 255), std=(1 / 255, 1 / 255, 1 / 255)
    )
    out = preprocess(_constant(), contract)
    np.testing.assert_allclose(out[:, 0, 0], (255 - 123.68, 0 - 116.78, 51 - 103.94), rtol=1e-5)


def test_centre_crop_keeps_the_middle_columns() -> None:
    # 6 x 2 image whose column i has value 10 * i; shorter side already 2 -> no resize.
    columns = np.repeat((np.arange(6, dtype=np.uint8) * 10)[None, :, None], 3, axis=2)
    image = Image.fromarray(np.repeat(columns, 2, axis=0))
    out = preprocess(image, _contract(mean=(0, 0, 0), std=(1, 1, 1)))
    np.testing.assert_allclose(out[0, 0] * 255, [20, 30], rtol=1e-5)


@pytest.mark.parametrize("library", ["pillow", "opencv"])
def test_resize_shorter_side_then_crop_geometry(library: str) -> None:
    spec = Preprocessing(side=56, crop=875, library=library)  # resize 64
    assert resize_and_crop(np.zeros((150, 300, 3), np.uint8), spec).shape == (56, 56, 3)
    spec = Preprocessing(side=224, crop=875, library=library)
    assert resize_and_crop(np.zeros((300, 150, 3), np.uint8), spec).shape == (224, 224, 3)


def test_absurd_aspect_ratio_is_refused() -> None:
    with pytest.raises(DataError, match=r"cannot use image x\.png: 10000x2 is more than"):
        resize_and_crop(np.zeros((2, 10000, 3), np.uint8), Preprocessing(), "x.png")


def test_grey_and_rgba_images_become_rgb(tmp_path: Path) -> None:
    grey = Image.new("L", (4, 4), 128)
    out = preprocess(grey, _contract(mean=(0, 0, 0), std=(1, 1, 1)))
    np.testing.assert_allclose(out, np.full((3, 2, 2), 128 / 255), rtol=1e-6)
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (4, 4), (*PIXEL, 10)).save(path)
    np.testing.assert_allclose(preprocess_file(path, _contract())[:, 0, 0], EXPECTED_RGB, rtol=1e-6)


def _truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_truncated_jpeg, id="truncated-jpeg"),
        pytest.param(lambda p: (p.write_bytes(b"not an image at all"), p)[1], id="garbage"),
        pytest.param(lambda p: p, id="missing"),
    ],
)
def test_unreadable_image_is_a_data_error_naming_the_file(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path / "ILSVRC2012_val_00000007.JPEG")
    match = r"cannot use image .*ILSVRC2012_val_00000007\.JPEG: .*; remove or replace it"
    with pytest.raises(DataError, match=match):
        load_image(path)


def test_error_message_is_one_line(tmp_path: Path) -> None:
    path = _truncated_jpeg(tmp_path / "bad.jpg")
    with pytest.raises(CkVisionError) as info:
        preprocess_file(path, _contract())
    assert "\n" not in str(info.value)
