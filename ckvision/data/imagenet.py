"""A user's ImageNet 2012 validation folder -> the preprocessed cache.

ImageNet has no public download, so users bring the folder the MLPerf tools expect:
the 50,000 ``ILSVRC2012_val_*.JPEG`` files plus ``val_map.txt`` with one
``<file> <label>`` line per image (label = ImageNet class 0..999).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ckvision.data.cache import PreprocessedDataset
from ckvision.data.variation import Preprocessing, as_spec
from ckvision.errors import DataError
from ckvision.models.contract import ModelContract

__all__ = ["read_val_map", "build_imagenet_cache", "throttled_progress", "NUM_CLASSES"]

NUM_CLASSES = 1000
_LAYOUT_HINT = "expects the ImageNet val folder layout: JPEGs + val_map.txt (file label per line)"


def read_val_map(path: Path, images: Path | None = None) -> list[tuple[str, int]]:
    """Parse ``val_map.txt`` (a file, or the folder holding it) into (file, label) pairs.

    Every listed image must exist beside the map (or in ``images``, for a labels file
    kept elsewhere, such as ck-env's aux ``val.txt``); labels must be 0..999.
    """
    path = Path(path)
    map_file = path / "val_map.txt" if path.is_dir() else path
    folder = Path(images) if images is not None else map_file.parent
    if not map_file.is_file():
        raise DataError(f"no val_map.txt in {folder}: the dataset {_LAYOUT_HINT}")
    try:
        text = map_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {map_file}: {err}") from err
    items = [
        _parse_line(map_file, number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not items:
        raise DataError(f"{map_file} lists no images; the dataset {_LAYOUT_HINT}")
    missing = [file for file, _label in items if not (folder / file).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(items)} images listed in {map_file} are missing "
            f"(first: {missing[0]})"
        )
    return items


def _parse_line(map_file: Path, number: int, line: str) -> tuple[str, int]:
    parts = line.split()
    if len(parts) != 2:
        raise DataError(
            f"{map_file} line {number}: expected '<file> <label>', got {line.strip()!r}"
        )
    file, label_text = parts
    try:
        label = int(label_text)
    except ValueError:
        raise DataError(
            f"{map_file} line {number}: label {label_text!r} is not an integer"
        ) from None
    if not 0 <= label < NUM_CLASSES:
        raise DataError(f"{map_file} line {number}: label {label} is outside 0..{NUM_CLASSES - 1}")
    if Path(file).is_absolute() or ".." in Path(file).parts:
        raise DataError(f"{map_file} line {number}: {file!r} must be a file inside the folder")
    return file, label


def throttled_progress(
    progress: Callable[[str], None] | None,
    what: str,
    every_s: float = 2.0,
    *,
    with_rate: bool = False,
) -> Callable[[int, int], None] | None:
    """Turn ``progress(msg)`` into a ``(done, total)`` callback that reports the first
    item, then at most every ``every_s`` seconds, then the last item; ``with_rate`` adds
    the rate since this callback was made and the time left at that rate (ETA)."""
    if progress is None:
        return None
    last = [float("-inf")]
    start = [time.monotonic() if with_rate else 0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done in (1, total) or now - last[0] >= every_s:
            last[0] = now
            line = f"{what} {done}/{total} images"
            elapsed = now - start[0]
            if with_rate and elapsed > 0:
                rate = done / elapsed
                line += f", {rate:.0f} images/s, ETA {(total - done) / rate:.0f} s"
            progress(line)

    return report


def build_imagenet_cache(
    src_dir: Path,
    dest_dir: Path,
    choice: Preprocessing | ModelContract,
    *,
    count: int = 0,
    first: int = 0,
    progress: Callable[[str], None] | None = None,
    workers: int = 0,
    free_bytes: int | None = None,
    labels: Path | None = None,
) -> PreprocessedDataset:
    """Preprocess ``count`` images (0 = all) from ``first`` on into the rgb8 cache of
    ``choice`` (a preprocessing choice, or the one a model contract asks for) at ``dest_dir``,
    with ``workers`` processes (0 = every core; see :mod:`ckvision.data.build`).

    The cache appears only when complete: an unreadable image or Ctrl-C leaves
    ``dest_dir`` as it was; a build killed with SIGKILL resumes where it stopped.
    A SYNTHETIC folder (:mod:`ckvision.data.synth`) gives a ``synthetic`` cache.
    ``labels``: a labels file outside the folder (ck-env's aux ``val.txt``).
    """
    from ckvision.data.build import build_rgb8_parallel
    from ckvision.data.synth import SYNTH_KIND, is_synthetic

    src_dir = Path(src_dir)
    spec = as_spec(choice)
    if count < 0 or first < 0:
        raise DataError(f"image count {count} and first index {first} must not be negative")
    items = read_val_map(labels, images=src_dir) if labels else read_val_map(src_dir)
    if first >= len(items):
        raise DataError(f"first image {first} is past the end of {src_dir} ({len(items)} images)")
    chosen = items[first : first + count] if count else items[first:]
    subset = count and len(chosen) < len(items)
    synthetic = is_synthetic(src_dir)
    base, kind = (
        ("synthetic-imagenet-layout", SYNTH_KIND)
        if synthetic
        else (
            "imagenet2012-val",
            "imagenet-val",
        )
    )
    name = f"{base}-{len(chosen)}" if subset or synthetic else base
    extra: dict[str, Any] = {
        "first": first,
        "subset_tag": f"first.{len(chosen)}" if subset else "full",
    }
    if synthetic:
        extra["synthetic"] = True
        extra["accuracy_note"] = (
            f"SYNTHETIC set of {len(chosen)} images cut from a few real photos; "
            "not ImageNet accuracy"
        )
    return build_rgb8_parallel(
        Path(dest_dir),
        name=name,
        kind=kind,
        source=src_dir.resolve(),
        spec=spec,
        items=chosen,
        progress=progress,
        extra=extra,
        workers=workers,
        free_bytes=free_bytes,
    )
