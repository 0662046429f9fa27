"""The embedded default dataset ``ckvision-sample``: real photos and augmentations of them.

Design
------
ImageNet cannot be shipped, so the default dataset is built from a few *real*
photographs that pinned pip packages already ship (scikit-image's ``chelsea``,
``coffee`` and ``camera``, matplotlib's ``grace_hopper``). Each photo was checked by
eye and with the real EfficientNet-Lite0 to show one ImageNet class; the photos, their
classes, their sha256 and the candidates we rejected (and why) are in
``sample_labels.json`` beside this module.

A set of ``size`` samples is, in order:

1. the real photos themselves (``real_count``),
2. fixed variants of each photo, round-robin: mirror, four corner crops at 80 %,
   a centre crop at 60 %, darker and brighter copies,
3. seeded random variants (crop box, mirror, brightness, contrast) to reach ``size``.

Every sample is a real photo or an augmentation of one, so every label is true; there
are no synthetic images (``synthetic_count`` is 0). ``files.txt`` names each variant,
e.g. ``chelsea.png#flip`` or ``coffee.png#r0042-crop0.83-x0.21-y0.70-b1.07-c0.94``.
Accuracy on this set is *sample-set accuracy over N images derived from K photos*,
useful to check that a model and its preprocessing fit together, **not** ImageNet
accuracy. Building is deterministic: the same ``size`` gives byte-identical
``images.npy``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ckvision.data.cache import PreprocessedDataset, write_rgb8_cache
from ckvision.data.imagenet import throttled_progress
from ckvision.data.images import to_rgb8
from ckvision.data.preprocess import load_image, resize_and_crop
from ckvision.data.variation import SAMPLE_TAG, Preprocessing, as_spec
from ckvision.errors import DataError
from ckvision.models.contract import ModelContract

__all__ = [
    "SamplePhoto",
    "Variant",
    "sample_photos",
    "sample_items",
    "photo_path",
    "build_sample_cache",
]

DEFAULT_SIZE = 256
_SEED = 20240601
_FIXED = (
    ("flip", True, 1.0, 0.5, 0.5, 1.0),
    ("crop0.80-tl", False, 0.8, 0.0, 0.0, 1.0),
    ("crop0.80-tr", False, 0.8, 1.0, 0.0, 1.0),
    ("crop0.80-bl", False, 0.8, 0.0, 1.0, 1.0),
    ("crop0.80-br", False, 0.8, 1.0, 1.0, 1.0),
    ("crop0.60-c", False, 0.6, 0.5, 0.5, 1.0),
    ("bright0.85", False, 1.0, 0.5, 0.5, 0.85),
    ("bright1.15", False, 1.0, 0.5, 0.5, 1.15),
)


@dataclass(frozen=True)
class SamplePhoto:
    photo: str
    package: str
    file: str
    sha256: str
    imagenet_class: int
    class_name: str


@dataclass(frozen=True)
class Variant:
    """One sample: a photo, and how to augment it (identity for the real photo)."""

    photo: SamplePhoto
    tag: str = ""
    flip: bool = False
    scale: float = 1.0  # side of the crop box, fraction of the photo
    x: float = 0.5  # crop box position, 0 = left/top .. 1 = right/bottom
    y: float = 0.5
    brightness: float = 1.0
    contrast: float = 1.0

    @property
    def name(self) -> str:
        return self.photo.file + (f"#{self.tag}" if self.tag else "")

    def apply(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        w, h = round(width * self.scale), round(height * self.scale)
        left, top = round((width - w) * self.x), round((height - h) * self.y)
        if (w, h) != (width, height):
            image = image.crop((left, top, left + w, top + h))
        if self.flip:
            image = ImageOps.mirror(image)
        if self.brightness != 1.0:
            image = ImageEnhance.Brightness(image).enhance(self.brightness)
        if self.contrast != 1.0:
            image = ImageEnhance.Contrast(image).enhance(self.contrast)
        return image


def sample_photos() -> list[SamplePhoto]:
    """The verified real photos, from ``sample_labels.json``."""
    text = resources.files("ckvision.data").joinpath("sample_labels.json").read_text("utf-8")
    fields = SamplePhoto.__dataclass_fields__
    return [
        SamplePhoto(**{k: v for k, v in entry.items() if k in fields})
        for entry in json.loads(text)["photos"]
    ]


def sample_items(size: int = DEFAULT_SIZE) -> list[Variant]:
    """The first ``size`` samples of the set, in their fixed order."""
    if size <= 0:
        raise DataError(f"sample set size {size} must be a positive integer")
    photos = sample_photos()
    items = [Variant(p) for p in photos]
    items += [
        Variant(p, tag, flip, scale, x, y, bright)
        for tag, flip, scale, x, y, bright in _FIXED
        for p in photos
    ]
    rng = np.random.default_rng(_SEED)
    while len(items) < size:
        k = len(items)
        scale, x, y, bright, contrast = (
            round(float(v), 2) for v in rng.uniform([0.7, 0, 0, 0.85, 0.85], [1, 1, 1, 1.15, 1.15])
        )
        flip = bool(rng.integers(2))
        tag = f"r{k:04d}-crop{scale:.2f}-x{x:.2f}-y{y:.2f}-b{bright:.2f}-c{contrast:.2f}"
        photo = photos[k % len(photos)]
        items.append(
            Variant(photo, tag + ("-flip" if flip else ""), flip, scale, x, y, bright, contrast)
        )
    return items[:size]


def photo_path(photo: SamplePhoto) -> Path:
    """Where the pinned package keeps ``photo``; DataError naming the pip extra if absent."""
    try:
        if photo.package == "scikit-image":
            import skimage.data

            folder = Path(skimage.data.data_dir)
        elif photo.package == "matplotlib":
            import matplotlib

            folder = Path(matplotlib.get_data_path()) / "sample_data"
        else:
            raise DataError(f"sample photo {photo.photo}: unknown package {photo.package!r}")
    except ImportError as err:
        raise DataError(
            f"{photo.package} is needed for the sample dataset ({photo.file}); "
            "install with: pip install 'ckvision[sample]'"
        ) from err
    return folder / photo.file


def _load_photos(photos: list[SamplePhoto]) -> dict[str, Image.Image]:
    images = {}
    for photo in photos:
        path = photo_path(photo)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise DataError(
                f"sample photo {path} is missing: {err}; reinstall {photo.package}"
            ) from err
        if digest != photo.sha256:
            raise DataError(
                f"sample photo {path} is not the one we labelled (sha256 {digest[:12]}..., "
                f"expected {photo.sha256[:12]}...); install the pinned {photo.package}"
            )
        images[photo.file] = load_image(path)
    return images


def build_sample_cache(
    dest_dir: Path,
    choice: Preprocessing | ModelContract,
    *,
    size: int = DEFAULT_SIZE,
    progress: Callable[[str], None] | None = None,
) -> PreprocessedDataset:
    """Build the ``size``-sample rgb8 set of ``choice`` (a preprocessing choice, or the
    one a model contract asks for) at ``dest_dir`` (atomic)."""
    spec = as_spec(choice)
    variants = sample_items(size)
    by_name = {v.name: v for v in variants}
    photos = _load_photos(sorted({v.photo for v in variants}, key=lambda p: p.file))

    def load(name: str) -> np.ndarray:
        variant = by_name[name]
        pixels = to_rgb8(variant.apply(photos[variant.photo.file]), name)
        return resize_and_crop(pixels, spec, name)

    return write_rgb8_cache(
        Path(dest_dir),
        name=f"ckvision-sample-{size}",
        kind="sample",
        source="real photos from scikit-image and matplotlib, see sample_labels.json",
        spec=spec,
        items=[(v.name, v.photo.imagenet_class) for v in variants],
        load=load,
        progress=throttled_progress(progress, "preprocessed"),
        extra=_metadata(variants),
    )


def _metadata(variants: list[Variant]) -> dict[str, Any]:
    real = sum(1 for v in variants if not v.tag)
    used = sorted({v.photo for v in variants}, key=lambda p: p.file)
    return {
        "real_count": real,
        "augmented_count": len(variants) - real,
        "synthetic_count": 0,
        "subset_tag": SAMPLE_TAG,
        "photos": {p.file: p.imagenet_class for p in used},
        "accuracy_note": (
            f"sample-set accuracy over {len(variants)} images derived from "
            f"{len(used)} real photos, not ImageNet accuracy"
        ),
    }
