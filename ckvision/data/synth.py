"""A SYNTHETIC ImageNet-size folder for tests and benchmarks (``ckvision dataset synth``).

ImageNet cannot be downloaded here, so benchmarks at scale use a folder in the ImageNet
validation layout (``ILSVRC2012_val_NNNNNNNN.JPEG`` + ``val_map.txt``) made from the
embedded real photos (:mod:`ckvision.data.sample_set`): random crops, scales, flips,
sensor-like noise and JPEG qualities, with the val set's statistics: mostly 500x375 /
375x500 (about 500x375 on average), a spread of other sizes and aspect ratios, about
110 KB a file on average, 2 % greyscale and 0.1 % CMYK JPEGs. Each label is the class of
the photo the image was cut from.

The folder is labelled SYNTHETIC: its ``synthetic.json`` marker makes every cache built
from it ``kind: synthetic`` with a ``synthetic-*`` name, so it is never reported as
ImageNet. Image ``i`` depends only on (seed, i): the same command gives the same files.
Written with every core (processes), into a temporary folder renamed into place when
complete.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ckvision.data.imagenet import throttled_progress
from ckvision.errors import DataError
from ckvision.fsutil import atomic_dir, check_free_space

__all__ = [
    "synth_dataset",
    "synth_image",
    "is_synthetic",
    "SYNTH_MARKER",
    "SYNTH_KIND",
    "BYTES_PER_IMAGE_BOUND",
    "MAX_IMAGES",
]

SYNTH_MARKER = "synthetic.json"
SYNTH_KIND = "synthetic"
SEED = 20261203
MAX_IMAGES = 1_000_000
BYTES_PER_IMAGE_BOUND = 200_000  # disk check: well above the ~110 KB average
# (width, height, weight): ImageNet val is mostly 500x375 / 375x500
_SHAPES = ((500, 375, 0.55), (375, 500, 0.18), (500, 333, 0.10), (500, 500, 0.05))
_GREY_EVERY = 50  # 2 % greyscale
_CMYK_EVERY = 1000  # 0.1 % CMYK

_photos: list[tuple[Image.Image, int]] = []  # per worker process: (photo, class)
_noise: list[np.ndarray] = []  # per worker process: one tile of N(0, 1) noise, float32
_TILE = 1024


def _load_photos() -> list[tuple[Image.Image, int]]:
    if not _photos:
        from ckvision.data.sample_set import _load_photos as load
        from ckvision.data.sample_set import sample_photos

        photos = sample_photos()
        images = load(photos)
        _photos.extend((images[p.file].convert("RGB"), p.imagenet_class) for p in photos)
    return _photos


def _noise_tile() -> np.ndarray:
    if not _noise:
        _noise.append(
            np.random.default_rng(SEED).standard_normal((_TILE, _TILE, 3), dtype=np.float32)
        )
    return _noise[0]


def _size(rng: np.random.Generator) -> tuple[int, int]:
    pick = float(rng.uniform())
    for width, height, weight in _SHAPES:
        if pick < weight:
            return width, height
        pick -= weight
    long_side = int(rng.integers(200, 801))
    aspect = float(rng.uniform(0.5, 2.0))
    if aspect >= 1:
        return long_side, max(32, round(long_side / aspect))
    return max(32, round(long_side * aspect)), long_side


def synth_image(index: int, seed: int = SEED) -> tuple[bytes, int, str]:
    """Image ``index`` of the set: (JPEG bytes, ImageNet class, mode)."""
    photos = _load_photos()
    rng = np.random.default_rng((seed, index))
    photo, label = photos[int(rng.integers(len(photos)))]
    width, height = _size(rng)
    pw, ph = photo.size
    # crop a box of the output's aspect ratio, 55..100 % of what fits
    fit = min(pw / width, ph / height)
    scale = float(rng.uniform(0.55, 1.0))
    cw, ch = max(8, round(width * fit * scale)), max(8, round(height * fit * scale))
    left = int(rng.integers(0, pw - cw + 1))
    top = int(rng.integers(0, ph - ch + 1))
    image = photo.crop((left, top, left + cw, top + ch))
    if rng.integers(2):
        image = ImageOps.mirror(image)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    sigma = float(rng.uniform(7.0, 15.0))  # sensor-like grain: JPEG sizes like ImageNet's
    nx, ny = int(rng.integers(0, _TILE - width + 1)), int(rng.integers(0, _TILE - height + 1))
    noise = _noise_tile()[ny : ny + height, nx : nx + width] * np.float32(sigma)
    noise += np.asarray(image, dtype=np.float32)
    pixels = np.clip(noise, 0, 255, out=noise).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if index % _CMYK_EVERY == 2:
        image = image.convert("CMYK")
    elif index % _GREY_EVERY == 1:
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(rng.integers(90, 98)))
    return out.getvalue(), label, image.mode


def _file_name(index: int) -> str:
    return f"ILSVRC2012_val_{index + 1:08d}.JPEG"


def _write_range(args: tuple[str, int, int, int]) -> list[tuple[int, int, str, int]]:
    folder, start, stop, seed = args
    done = []
    for index in range(start, stop):
        data, label, mode = synth_image(index, seed)
        (Path(folder) / _file_name(index)).write_bytes(data)
        done.append((index, label, mode, len(data)))
    return done


def is_synthetic(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder made by :func:`synth_dataset`, or None."""
    marker = Path(folder) / SYNTH_MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {marker}: {err}") from err
    return meta if isinstance(meta, dict) else None


def synth_dataset(
    out: Path,
    images: int,
    *,
    workers: int = 0,
    seed: int = SEED,
    progress: Callable[[str], None] | None = print,
    free_bytes: int | None = None,
) -> dict[str, Any]:
    """Write ``images`` synthetic images + ``val_map.txt`` + the marker at ``out`` (which
    must not exist yet). Returns the marker's content (with the measured statistics)."""
    out = Path(out)
    if not 1 <= images <= MAX_IMAGES:
        raise DataError(f"--images {images}: choose 1..{MAX_IMAGES}")
    if out.exists():
        raise DataError(f"{out} already exists; remove it or choose another --out")
    check_free_space(out.parent, images * BYTES_PER_IMAGE_BOUND, f"{images} images", free_bytes)
    workers = workers or os.cpu_count() or 1
    chunk = max(1, min(256, images // (workers * 8) or 1))
    ranges = [(start, min(images, start + chunk)) for start in range(0, images, chunk)]
    report = throttled_progress(progress, "synthesised", with_rate=True)
    labels = [0] * images
    modes: dict[str, int] = {}
    total_bytes = 0
    started = time.monotonic()
    with atomic_dir(out) as tmp:
        ctx = get_context("spawn")
        with ctx.Pool(workers) as pool:
            done = 0
            jobs = [(str(tmp), a, b, seed) for a, b in ranges]
            for part in pool.imap_unordered(_write_range, jobs):
                for index, label, mode, size in part:
                    labels[index] = label
                    modes[mode] = modes.get(mode, 0) + 1
                    total_bytes += size
                done += len(part)
                if report is not None:
                    report(done, images)
        val_map = "".join(f"{_file_name(i)} {labels[i]}\n" for i in range(images))
        (tmp / "val_map.txt").write_text(val_map, encoding="utf-8")
        meta: dict[str, Any] = {
            "name": f"synthetic-imagenet-layout-{images}",
            "kind": SYNTH_KIND,
            "note": "SYNTHETIC images cut from a few real photos; not ImageNet, "
            "its accuracy is not ImageNet accuracy",
            "images": images,
            "seed": seed,
            "modes": modes,
            "mean_bytes": round(total_bytes / images),
            "seconds": round(time.monotonic() - started, 1),
        }
        (tmp / SYNTH_MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if progress is not None:
        progress(
            f"SYNTHETIC dataset of {images} images at {out}: {total_bytes / 1e9:.2f} GB, "
            f"{meta['mean_bytes'] / 1e3:.0f} KB a file on average, modes {modes}"
        )
    return meta
