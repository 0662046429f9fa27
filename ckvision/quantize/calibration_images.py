"""Where INT8 calibration images come from: never the scored set.

:func:`calibration_source` is the one function the quantizer (and any other INT8 path)
asks for calibration images; it returns the shared
:class:`ckvision.models.calibration.CalibrationSource`, whose ``load`` preprocesses a
file exactly as inference does (``preprocess_file`` bound to the model's contract).

Two sources, in order:

1. a folder of images (a calibration set package's folder, or one the user names), with
   an optional list file naming the images in it (MLPerf's calibration lists name 500
   training images, one relative path a line);
2. otherwise the **set-aside photos**: real photographs the same pinned packages ship
   that the embedded sample set does *not* use (``sample_labels.json`` lists why each was
   left out), with fixed crops and mirrors. They share no photo with the scored sample
   set, so calibrating on them never sees a scored image.

Either way, a calibration image whose content (sha256) or file name equals one of the
scored set's is refused with one line: calibration on the scored set flatters INT8.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ckvision.data.cache import PreprocessedDataset
from ckvision.data.calibration_set import check_paths_disjoint, read_calibration_list, scored_files
from ckvision.data.images import to_rgb8
from ckvision.data.preprocess import load_image, normalize, preprocess_file, resize_and_crop
from ckvision.data.variation import Preprocessing
from ckvision.errors import ConfigError, DataError
from ckvision.fsutil import sha256_file
from ckvision.models.calibration import CalibrationSource
from ckvision.models.contract import ModelContract

__all__ = [
    "calibration_source",
    "set_aside_photos",
    "describe_source",
    "IMAGE_SUFFIXES",
    "SET_ASIDE",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# scikit-image photos the sample set leaves out (none of its four photos is here)
SET_ASIDE = (
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "horse.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
)
# (tag, mirror, crop side fraction, x, y): four views of each photo
_VIEWS = (
    ("", False, 1.0, 0.5, 0.5),
    ("flip", True, 1.0, 0.5, 0.5),
    ("crop0.75-tl", False, 0.75, 0.0, 0.0),
    ("crop0.75-br", True, 0.75, 1.0, 1.0),
)
SET_ASIDE_NAME = "ckvision-set-aside-photos"


def set_aside_photos() -> list[Path]:
    """The set-aside photos' paths (scikit-image's data folder)."""
    try:
        import skimage.data
    except ImportError as err:
        raise DataError(
            "scikit-image is needed for the default calibration photos; install with: "
            "pip install 'ckvision[sample]', or give a calibration folder"
        ) from err
    folder = Path(skimage.data.data_dir)
    paths = [folder / name for name in SET_ASIDE]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"calibration photos {', '.join(missing)} are missing in {folder}")
    return paths


def _scored_fingerprints(scored: PreprocessedDataset | None) -> tuple[set[str], set[str]]:
    """(file names, sha256s) of the scored set's source images, as far as it records them."""
    if scored is None:
        return set(), set()
    names = {Path(f.split("#", 1)[0]).name for f in scored.files}
    digests: set[str] = set()
    if scored.kind == "sample":
        from ckvision.data.sample_set import sample_photos

        digests = {p.sha256 for p in sample_photos()}
    return names, digests


def _check_disjoint(paths: Sequence[Path], scored: PreprocessedDataset | None) -> None:
    """Refuse calibration images the runs score: the same file name as a scored source
    (ImageNet names are unique), one of the sample set's photos, or (the one content
    check, :func:`ckvision.data.calibration_set.check_paths_disjoint`) the same file or
    a byte-identical copy of a scored source file."""
    if scored is None:
        return
    names, digests = _scored_fingerprints(scored)
    for path in paths:
        if path.name in names or (digests and sha256_file(path) in digests):
            raise DataError(
                f"calibration image {path} is also in the scored set {scored.name}; "
                "calibrate on images the run does not score (MLPerf's calibration list)"
            )
    check_paths_disjoint(paths, scored_files(scored.path), "the calibration images")


def _folder_files(folder: Path, list_file: Path | None) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"calibration folder {folder} does not exist")
    if list_file is None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"calibration folder {folder} has no images ({'/'.join(IMAGE_SUFFIXES)})"
            )
        return files
    return read_calibration_list(list_file, folder).paths  # MLPerf's list format, checked


def _view(path: Path, tag: str, contract: ModelContract) -> np.ndarray:
    view = {v[0]: v for v in _VIEWS}[tag]
    _tag, mirror, scale, x, y = view
    image: Image.Image = load_image(path)
    if scale != 1.0:
        width, height = image.size
        w, h = round(width * scale), round(height * scale)
        left, top = round((width - w) * x), round((height - h) * y)
        image = image.crop((left, top, left + w, top + h))
    if mirror:
        image = ImageOps.mirror(image)
    pixels = resize_and_crop(to_rgb8(image, path.name), Preprocessing.for_model(contract))
    return normalize(pixels, contract)


def _load_view(name: str, contract: ModelContract, paths: dict[str, Path]) -> np.ndarray:
    file, _, tag = name.partition("#")
    return _view(paths[file], tag, contract)


def calibration_source(
    contract: ModelContract,
    *,
    folder: Path | None = None,
    list_file: Path | None = None,
    count: int = 0,
    scored: PreprocessedDataset | None = None,
    batch_size: int = 8,
) -> CalibrationSource:
    """The calibration images for ``contract``'s model; ``count`` > 0 takes the first
    ``count``. ``scored``: the set the runs score, refused as calibration."""
    if count < 0:
        raise ConfigError(f"calibration count {count} must not be negative")
    if folder is not None:
        paths = _folder_files(Path(folder), list_file)
        paths = paths[:count] if count else paths
        _check_disjoint(paths, scored)
        return CalibrationSource(
            files=[str(p) for p in paths],
            load=functools.partial(preprocess_file, contract=contract),
            batch_size=min(batch_size, len(paths)),
        )
    if list_file is not None:
        raise ConfigError("a calibration list needs its calibration folder")
    photos = set_aside_photos()
    _check_disjoint(photos, scored)
    by_name = {p.name: p for p in photos}
    names = [f"{p.name}#{tag}" if tag else p.name for tag, *_ in _VIEWS for p in photos]
    names = names[:count] if count else names
    return CalibrationSource(
        files=names,
        load=functools.partial(_load_view, contract=contract, paths=by_name),
        batch_size=min(batch_size, len(names)),
    )


def describe_source(source: CalibrationSource, folder: Path | None) -> dict[str, object]:
    """What the sidecar records about the calibration images."""
    usable = len(source.files) - len(source.files) % source.batch_size
    return {
        "set": str(folder) if folder is not None else SET_ASIDE_NAME,
        "images": usable,
        "names_sha256": hashlib.sha256("\n".join(_names(source.files)).encode()).hexdigest(),
    }


def _names(files: Iterable[str]) -> list[str]:
    return [Path(f).name if "/" in f else f for f in files]
