"""One dataset layout for every model: MLPerf parity, image modes, variations, installs.

Parity tolerances (ResNet50-v1.5 against the MLPerf reference's ``pre_process_vgg``,
re-implemented below from its description): the cached 8-bit pixels are compared
exactly (tolerance 0); the float32 tensor after mean subtraction with ``atol=0``, i.e.
bit-identical, because ``x * 1.0 + (-mean)`` in float32 equals ``x - mean``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ckvision.data.cache import PreprocessedDataset, clean_stale_partials
from ckvision.data.imagenet import build_imagenet_cache
from ckvision.data.images import decode_rgb8
from ckvision.data.install import install_dataset
from ckvision.data.variation import Preprocessing
from ckvision.errors import CkVisionError, ConfigError, DataError, ModelError
from ckvision.models.contract import ModelContract
from ckvision.models.registry import get_model_spec

RESNET = get_model_spec("resnet50").contract
EFFNET = get_model_spec("efficientnet-lite0").contract
MEANS = np.array([123.68, 116.78, 103.94], dtype=np.float32)


# -- the MLPerf reference, from its description (vision/classification_and_detection/
#    python/dataset.py: pre_process_vgg, resize_with_aspectratio, center_crop) ----------
def reference_resnet50(path: Path, side: int = 224) -> tuple[np.ndarray, np.ndarray]:
    img = cv2.imread(str(path))
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    height, width, _ = img.shape
    new_h = int(100.0 * side / 87.5)
    new_w = int(100.0 * side / 87.5)
    if height > width:
        w, h = new_w, int(new_h * height / width)
    else:
        h, w = new_h, int(new_w * width / height)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    left, right = int((w - side) / 2), int((w + side) / 2)
    top, bottom = int((h - side) / 2), int((h + side) / 2)
    crop = img[top:bottom, left:right]
    tensor = np.asarray(crop, dtype="float32") - MEANS
    return crop, tensor.transpose([2, 0, 1])


def _name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


@pytest.fixture(scope="module")
def jpeg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (scikit-image) saved as JPEGs of several sizes, both orientations,
    odd crop offsets, 4:2:0 and 4:4:4 chroma, progressive, and one grayscale JPEG."""
    import skimage.data

    folder = tmp_path_factory.mktemp("val")
    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()]
    sizes = [(451, 300), (300, 451), (500, 375), (257, 311), (640, 427), (333, 333)]
    lines = []
    for i, (w, h) in enumerate(sizes, start=1):
        image = Image.fromarray(photos[i % 3]).resize((w, h), Image.Resampling.BICUBIC)
        options = [
            {"quality": 90},
            {"quality": 80, "subsampling": 0},
            {"quality": 95, "progressive": True},
        ][i % 3]
        image.save(folder / _name(i), "JPEG", **options)
        lines.append(f"{_name(i)} {i}\n")
    Image.fromarray(skimage.data.camera()).save(folder / _name(7), "JPEG", quality=85)
    lines.append(f"{_name(7)} 7\n")
    (folder / "val_map.txt").write_text("".join(lines), encoding="utf-8")
    return folder


def test_resnet50_pixels_equal_the_mlperf_reference(jpeg_dir: Path, tmp_path: Path) -> None:
    spec = Preprocessing.for_model(RESNET)
    assert spec.tags() == ["side.224", "crop.875", "using-opencv", "inter.area", "rgb8"]
    cache = build_imagenet_cache(jpeg_dir, tmp_path / "cache", spec)
    fed = cache.for_model(RESNET)
    assert fed.images.shape == (7, 3, 224, 224) and fed.images.dtype == np.float32
    for i, file in enumerate(cache.files):
        crop, tensor = reference_resnet50(jpeg_dir / file)
        np.testing.assert_array_equal(cache.images[i], crop, err_msg=file)  # tolerance 0
        np.testing.assert_array_equal(fed.images[i], tensor, err_msg=file)  # bit-identical


def test_a_wrong_resize_would_be_caught(jpeg_dir: Path, tmp_path: Path) -> None:
    """The parity test can fail: INTER_LINEAR instead of INTER_AREA differs."""
    cache = build_imagenet_cache(
        jpeg_dir, tmp_path / "lin", Preprocessing(library="opencv"), count=1
    )
    crop, _tensor = reference_resnet50(jpeg_dir / cache.files[0])
    assert not np.array_equal(cache.images[0], crop)


# -- images: every mode Pillow opens -> what cv2.imread gives, or one line --------------
def _base(h: int = 23, w: int = 31) -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _save(path: Path, image: Image.Image, **kw: object) -> Path:
    image.save(path, **kw)
    return path


def _palette_with_transparency(path: Path) -> Path:
    return _save(path, _base().convert("P"), transparency=3)


def _sixteen_bit_gray(path: Path) -> Path:
    values = np.random.default_rng(2).integers(0, 65536, (23, 31), dtype=np.uint16)
    cv2.imwrite(str(path), values)
    return path


def _sixteen_bit_rgba(path: Path) -> Path:
    values = np.random.default_rng(3).integers(0, 65536, (23, 31, 4), dtype=np.uint16)
    cv2.imwrite(str(path), values)
    return path


def _exif_rotated(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _save(path, _base(), exif=exif, quality=95)


MODES = {
    "rgb.png": lambda p: _save(p, _base()),
    "gray.png": lambda p: _save(p, _base().convert("L")),
    "gray.jpg": lambda p: _save(p, _base().convert("L"), quality=90),
    "bilevel.png": lambda p: _save(p, _base().convert("1")),
    "palette.png": lambda p: _save(p, _base().convert("P")),
    "palette-transparent.png": _palette_with_transparency,
    "palette.gif": lambda p: _save(p, _base().convert("P")),
    "rgba.png": lambda p: _save(p, _base().convert("RGBA")),
    "gray-alpha.png": lambda p: _save(p, _base().convert("LA")),
    "cmyk.jpg": lambda p: _save(p, _base().convert("CMYK"), quality=90),
    "16bit-gray.png": _sixteen_bit_gray,
    "16bit-rgba.png": _sixteen_bit_rgba,
    "exif-rotated.jpg": _exif_rotated,
    "rgb.bmp": lambda p: _save(p, _base()),
    "rgb.webp": lambda p: _save(p, _base(), lossless=True),
}


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_mode_becomes_what_cv2_imread_gives(tmp_path: Path, name: str) -> None:
    path = MODES[name](tmp_path / name)
    ours = decode_rgb8(path)
    reference = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert ours.dtype == np.uint8 and ours.shape == reference.shape
    np.testing.assert_array_equal(ours, reference)
    assert np.ptp(ours) > 0  # a real picture, not a blank one


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    assert decode_rgb8(_exif_rotated(tmp_path / "r.jpg")).shape == (31, 23, 3)


def _low_byte_16bit(path: Path) -> Path:
    cv2.imwrite(str(path), np.arange(23 * 31, dtype=np.uint16).reshape(23, 31) % 200)
    return path


def _alpha_only_drawing(path: Path) -> Path:
    rgba = np.zeros((23, 31, 4), np.uint8)
    rgba[5:15, 5:20, 3] = 255  # a black shape on a transparent (black) background
    return _save(path, Image.fromarray(rgba, "RGBA"))


def _float_tiff(path: Path) -> Path:
    return _save(
        path,
        Image.fromarray(np.linspace(0, 1, 23 * 31, dtype=np.float32).reshape(23, 31), "F"),
        format="TIFF",
    )


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_low_byte_16bit, "would become a single-colour picture"),
        (_alpha_only_drawing, "would become a single-colour picture"),
        (_float_tiff, "floating-point pixels"),
        (lambda p: (p.write_bytes(b"GIF89a not really"), p)[1], "unreadable"),
    ],
    ids=["16bit-low-byte", "alpha-only", "float", "garbage"],
)
def test_images_that_would_go_wrong_are_refused_naming_the_file(
    tmp_path: Path,
    make,
    why: str,  # type: ignore[no-untyped-def]
) -> None:
    path = make(tmp_path / "ILSVRC2012_val_00000042.png")
    with pytest.raises(DataError) as info:
        decode_rgb8(path)
    message = str(info.value)
    assert "ILSVRC2012_val_00000042.png" in message and why in message
    assert "\n" not in message


# -- variations --------------------------------------------------------------------------
def test_tags_parse_into_one_choice() -> None:
    spec = Preprocessing.from_tags(
        ["dataset", "imagenet", "side.160", "crop.1000", "using-opencv", "inter.cubic", "rgb8"]
    )
    assert (spec.side, spec.crop, spec.resize, spec.library, spec.interpolation) == (
        160,
        1000,
        160,
        "opencv",
        "cubic",
    )
    assert Preprocessing.from_tags(spec.tags()) == spec
    assert Preprocessing().resize == 256 and Preprocessing().bytes_per_image == 150528
    side299 = ModelContract(name="m", image_size=299, resize_size=341)  # MLPerf's floor
    assert Preprocessing.for_model(side299).crop == 875
    tiny = ModelContract(name="t", image_size=4, resize_size=4)  # 875 and 1000 both give 4
    assert Preprocessing.for_model(tiny).crop == 1000
    assert Preprocessing(side=4, crop=875).mismatch(tiny) == []  # same pixels
    assert Preprocessing(side=224, crop=1000).mismatch(EFFNET) == [
        "crop 875 = resize 256 (dataset has crop 1000 = resize 224)"
    ]
    assert Preprocessing.for_model(EFFNET).tags() == [
        "side.224",
        "crop.875",
        "using-pillow",
        "inter.linear",
        "rgb8",
    ]


@pytest.mark.parametrize(
    ("tags", "match"),
    [
        (["inter.bogus"], r"unknown variation tag 'inter\.bogus'; use one of inter\.linear"),
        (["using-tensorflow"], r"unknown variation tag 'using-tensorflow'"),
        (["side.abc"], r"side 'abc' must be a positive whole number"),
        (["side.0"], r"side '0' must be a positive"),
        (["crop.1250"], r"side\.224 with crop\.1250 is impossible"),
        (["side.4000", "crop.1"], r"side\.4000 with crop\.1 is impossible"),
        (["side.99999"], r"side\.99999 is impossible"),
        (["side.224", "side.160"], r"tags side\.224 and side\.160 contradict"),
        (["rgbf32"], r"variation rgbf32 is not offered"),
    ],
)
def test_bad_variation_tags_are_one_line(tags: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        Preprocessing.from_tags(tags)
    assert "\n" not in str(info.value)


# -- one copy, every matching model; mismatches refused ---------------------------------
@pytest.fixture(scope="module")
def shared(jpeg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PreprocessedDataset:
    return build_imagenet_cache(
        jpeg_dir, tmp_path_factory.mktemp("c") / "data", Preprocessing(), count=3
    )


def test_one_copy_serves_every_model_whose_spatial_contract_matches(
    shared: PreprocessedDataset,
) -> None:
    nhwc_bgr = ModelContract(
        name="other",
        layout="NHWC",
        color_order="BGR",
        mean=(0.1, 0.2, 0.3),
        std=(0.3, 0.2, 0.1),
        input_dtype="float16",
    )
    a, b = shared.for_model(EFFNET), shared.for_model(nhwc_bgr)
    rgb = shared.images[:3].astype(np.float64) / 255
    np.testing.assert_allclose(
        a.images[[0, 2]], ((rgb - 0.5) / 0.5).transpose(0, 3, 1, 2)[[0, 2]], rtol=1e-6, atol=1e-6
    )
    bgr = (rgb[..., ::-1] - np.array([0.1, 0.2, 0.3])) / np.array([0.3, 0.2, 0.1])
    assert b.images.dtype == np.float16 and b.images.shape == (3, 224, 224, 3)
    np.testing.assert_allclose(np.asarray(b.images).astype(np.float64), bgr, rtol=2e-3, atol=2e-3)


def test_a_mismatching_model_is_one_line_naming_the_tags_to_install(
    shared: PreprocessedDataset,
) -> None:
    with pytest.raises(ModelError) as info:
        shared.for_model(RESNET)
    message = str(info.value)
    assert "\n" not in message
    assert "library 'opencv'" in message and "interpolation 'area'" in message
    assert (
        "--tags=dataset,imagenet,preprocessed,first.3,side.224,crop.875,using-opencv,inter.area,rgb8"
        in message
    )


def test_unbound_rgb8_pixels_never_reach_a_model(shared: PreprocessedDataset) -> None:
    with pytest.raises(ModelError, match=r"rgb8 pixels: the program normalises them"):
        shared.check_matches(EFFNET)


# -- installs: side by side, checked first, nothing left behind --------------------------
def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _variation_env(**choice: str) -> dict[str, str]:
    return {f"CKVISION_DATASET_{k.upper()}": v for k, v in choice.items()}


def test_second_variation_never_touches_the_first(jpeg_dir: Path, tmp_path: Path) -> None:
    first = tmp_path / "pillow"
    install_dataset("imagenet", first, {}, source=jpeg_dir, count=2, log=lambda _m: None)
    before = _tree_digest(first)
    second = tmp_path / "opencv"
    install_dataset(
        "imagenet",
        second,
        _variation_env(library="opencv", interpolation="area"),
        source=jpeg_dir,
        count=2,
        log=lambda _m: None,
    )
    assert _tree_digest(first) == before
    a = PreprocessedDataset.open(first / "data")
    b = PreprocessedDataset.open(second / "data")
    assert a.spec == Preprocessing() and b.spec == Preprocessing.for_model(RESNET)
    a.for_model(EFFNET)
    b.for_model(RESNET)


@pytest.mark.parametrize(
    ("env", "error", "match"),
    [
        (_variation_env(side="big"), ConfigError, r"CKVISION_DATASET_SIDE 'big'"),
        (_variation_env(crop="2000"), ConfigError, r"crop\.2000 is impossible"),
        (_variation_env(library="magick"), ConfigError, r"library 'magick' unknown"),
        (
            {**get_model_spec("resnet50").contract.to_env()},
            ModelError,
            r"does not match model resnet50, .*install with tags side\.224,crop\.875,using-opencv",
        ),
    ],
    ids=["side", "crop", "library", "model-mismatch"],
)
def test_bad_install_is_one_line_and_installs_nothing(
    jpeg_dir: Path, tmp_path: Path, env: dict[str, str], error: type, match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        install_dataset("imagenet", tmp_path / "pkg", env, source=jpeg_dir, log=lambda _m: None)
    assert isinstance(info.value, CkVisionError) and "\n" not in str(info.value)
    assert not (tmp_path / "pkg").exists()


_SLOW_BUILD = """
import sys, time
import numpy as np
from pathlib import Path
from ckvision.data.cache import write_rgb8_cache
from ckvision.data.variation import Preprocessing

def load(name):
    if name == "3":
        print("building", flush=True)
        time.sleep(60)
    return np.zeros((4, 4, 3), np.uint8)

write_rgb8_cache(Path(sys.argv[1]), name="t", kind="sample", source="test",
                 spec=Preprocessing(side=4, crop=1000),
                 items=[(str(i), i) for i in range(8)], load=load)
"""


def test_a_killed_install_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    dest = tmp_path / "pkg" / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_BUILD, str(dest)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "building\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    left = [p.name for p in dest.parent.iterdir()]
    assert not dest.exists() and len(left) == 1 and left[0].endswith(".partial")
    # a live builder's .partial is never removed; a dead one's is
    live = dest.parent / ".data.live.partial"
    live.mkdir()
    (live / ".owner").write_text(str(os.getpid()))
    pixels = np.full((4, 4, 3), 7, np.uint8)
    from ckvision.data.cache import write_rgb8_cache

    started = time.monotonic()
    ds = write_rgb8_cache(
        dest,
        name="t",
        kind="sample",
        source="test",
        spec=Preprocessing(side=4, crop=1000),
        items=[("0", 0)],
        load=lambda _f: pixels,
    )
    assert time.monotonic() - started < 10
    assert ds.size == 1
    assert sorted(p.name for p in dest.parent.iterdir()) == [live.name, "data"]
    assert clean_stale_partials(dest) == []  # the live one stays


def test_two_matching_datasets_give_one_line_naming_the_tags() -> None:
    from ckvision.data.select import ambiguity_error

    base = ["dataset", "imagenet", "preprocessed", "side.224", "crop.875", "rgb8"]
    err = ambiguity_error(
        "images",
        "dataset,imagenet,preprocessed",
        [
            ("1a2b", [*base, "ckvision-sample", "using-pillow", "inter.linear"]),
            ("3c4d", [*base, "full", "using-opencv", "inter.area"]),
        ],
    )
    assert err is not None and "\n" not in str(err)
    assert "1a2b (ckvision-sample,using-pillow,inter.linear)" in str(err)
    assert "3c4d (full,using-opencv,inter.area)" in str(err)
    assert "--dep_add_tags.images=ckvision-sample,using-pillow,inter.linear" in str(err)
    assert ambiguity_error("images", "x", [("1a2b", base)]) is None


def test_a_file_name_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    path = tmp_path / "evil\nname.png"
    path.write_bytes(b"not an image")
    with pytest.raises(DataError) as info:
        decode_rgb8(path)
    assert "\n" not in str(info.value) and "evil\\nname.png" in str(info.value)


@pytest.mark.timeout(60)
def test_a_killed_builder_not_yet_reaped_counts_as_dead(tmp_path: Path) -> None:
    """A zombie answers kill(pid, 0); its .partial must still be cleaned up by the next
    install started right after (the parent has not reaped it yet)."""
    import subprocess
    import sys

    from ckvision.data.cache import process_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][:1] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, 0)  # still "there" for kill(): the bug's cause
        assert not process_alive(child.pid)
        dest = tmp_path / "data"
        partial = tmp_path / ".data.x.partial"
        partial.mkdir()
        (partial / ".owner").write_text(str(child.pid))
        assert clean_stale_partials(dest) == [partial]
    finally:
        child.kill()
        child.wait(timeout=30)
    assert process_alive(os.getpid())
