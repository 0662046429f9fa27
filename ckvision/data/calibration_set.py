"""Calibration image sets: one list + one folder, never overlapping the scored set.

A calibration list has MLPerf's format (``calibration/ImageNet/cal_image_list_option_*.txt``
in mlcommons/inference): one image per line, ``<file>`` or ``<file> <label>``, the file
relative to the folder that holds the images. This module is the one place that reads
such a list and checks it against the images a run scores; the INT8 quantizer and the
TensorRT INT8 path both use it::

    cal = read_calibration_list(list_file, folder)        # DataError: one line
    check_no_overlap(cal, scored_files(dataset_dir))          # DataError: one line
    for path in cal.paths: ...

Overlap is decided by content, not by name: a calibration image is the same as a scored
one when it is the same file (resolved path) or a byte-identical copy (same size, then
same sha256; only files whose size matches a calibration file are hashed).

Note: MLPerf's own ImageNet lists name files of the *validation* set
(``ILSVRC2012_val_*``); calibrating on them while scoring the full validation set is
an overlap and is refused here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ckvision.errors import DataError

__all__ = [
    "CalibrationSet",
    "read_calibration_list",
    "check_no_overlap",
    "check_paths_disjoint",
    "scored_files",
    "install_calibration_set",
    "open_calibration_set",
    "MAX_CALIBRATION_IMAGES",
]

MAX_CALIBRATION_IMAGES = 100_000


@dataclass(frozen=True)
class CalibrationSet:
    """The images of a calibration list, checked to exist in ``folder``."""

    list_file: Path
    folder: Path
    files: tuple[str, ...]  # relative to folder, in list order
    labels: tuple[int | None, ...]  # the list's labels where it gives them

    @property
    def paths(self) -> list[Path]:
        return [self.folder / file for file in self.files]

    def __len__(self) -> int:
        return len(self.files)


def _parse(list_file: Path, number: int, line: str) -> tuple[str, int | None]:
    parts = line.split()
    if len(parts) not in (1, 2):
        raise DataError(
            f"{list_file} line {number}: expected '<file>' or '<file> <label>', "
            f"got {line.strip()[:80]!r}"
        )
    file = parts[0]
    label: int | None = None
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise DataError(f"{list_file} line {number}: label {parts[1][:20]!r} is not a number")
        label = int(parts[1])
    if Path(file).is_absolute() or ".." in Path(file).parts or not file.isprintable():
        raise DataError(
            f"{list_file} line {number}: {file[:80]!r} must be a file inside the image folder"
        )
    return file, label


def read_calibration_list(list_file: Path, folder: Path) -> CalibrationSet:
    """Read ``list_file`` and check every image it names is a file in ``folder``."""
    list_file, folder = Path(list_file), Path(folder)
    if not folder.is_dir():
        raise DataError(f"calibration image folder {folder} does not exist")
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read calibration list {list_file}: {err}") from err
    entries = [
        _parse(list_file, number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not entries:
        raise DataError(f"calibration list {list_file} names no images")
    if len(entries) > MAX_CALIBRATION_IMAGES:
        raise DataError(
            f"calibration list {list_file} names {len(entries)} images; "
            f"at most {MAX_CALIBRATION_IMAGES}"
        )
    files = [file for file, _label in entries]
    seen: set[str] = set()
    for file in files:
        if file in seen:
            raise DataError(f"calibration list {list_file} names {file} twice")
        seen.add(file)
    missing = [file for file in files if not (folder / file).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(files)} images of calibration list {list_file} are "
            f"missing from {folder} (first: {missing[0]})"
        )
    return CalibrationSet(
        list_file=list_file,
        folder=folder,
        files=tuple(files),
        labels=tuple(label for _file, label in entries),
    )


def check_no_overlap(calibration: CalibrationSet, scored: Iterable[Path]) -> None:
    """Refuse (one line) a calibration set sharing an image with ``scored`` (the source
    files of the samples a run scores): same file, or a byte-identical copy."""
    check_paths_disjoint(calibration.paths, scored, f"calibration set {calibration.list_file}")


def check_paths_disjoint(calibration: Iterable[Path], scored: Iterable[Path], what: str) -> None:
    """The one overlap check: refuse (one line naming ``what``) calibration images that are
    scored files too, by resolved path or byte-identical content (only files whose size
    matches a calibration image are hashed)."""
    from ckvision.fsutil import sha256_file

    cal_paths = [Path(p) for p in calibration]
    by_real = {p.resolve(): p for p in cal_paths}
    by_size: dict[int, list[Path]] = {}
    for path in cal_paths:
        by_size.setdefault(path.stat().st_size, []).append(path)
    cal_digests: dict[Path, str] = {}
    overlaps: list[tuple[Path, Path]] = []
    for path in scored:
        path = Path(path)
        real = path.resolve()
        if real in by_real:
            overlaps.append((by_real[real], path))
            continue
        try:
            size = path.stat().st_size
        except OSError:
            continue  # not a file on disk (e.g. a sample-set variant name)
        same_size = by_size.get(size)
        if not same_size:
            continue
        digest = sha256_file(path)
        for cal in same_size:
            if cal not in cal_digests:
                cal_digests[cal] = sha256_file(cal)
            if cal_digests[cal] == digest:
                overlaps.append((cal, path))
                break
    if overlaps:
        cal, hit = overlaps[0]
        raise DataError(
            f"{what} overlaps the scored set: {len(overlaps)} image(s) in both "
            f"(first: {cal} = {hit}); calibrate on images that are not scored"
        )


def scored_files(where: Path) -> list[Path]:
    """The image files a run scores, for :func:`check_no_overlap`: a preprocessed
    dataset's sources (its ``source`` folder + ``files.txt``; none for the embedded
    sample set, whose samples are not files), an ImageNet-layout folder's
    ``val_map.txt`` files, or every file of a plain folder."""
    where = Path(where)
    if (where / "dataset.json").is_file():
        from ckvision.data.cache import PreprocessedDataset

        dataset = PreprocessedDataset.open(where)
        source = Path(str(dataset.meta.get("source", "")))
        if not source.is_absolute() or not source.is_dir():
            return []
        return [source / file for file in dataset.files]
    if (where / "val_map.txt").is_file():
        from ckvision.data.imagenet import read_val_map

        return [where / file for file, _label in read_val_map(where)]
    if where.is_dir():
        return sorted(p for p in where.rglob("*") if p.is_file())
    raise DataError(f"scored set {where} is neither a dataset nor a folder")


CALIBRATION_META = "calibration.json"
CALIBRATION_LIST = "calibration.txt"
IMAGES_DIR = "images"


def install_calibration_set(
    calibration: CalibrationSet,
    install_dir: Path,
    *,
    free_bytes: int | None = None,
) -> Path:
    """Copy the list and its images into ``install_dir/data`` (atomic: all or nothing),
    after checking each image decodes; returns its ``calibration.json``."""
    from ckvision.data.images import decode_rgb8
    from ckvision.fsutil import atomic_dir, check_free_space

    for path in calibration.paths:
        decode_rgb8(path)  # an unreadable image: one line naming it, nothing installed
    needed = sum(p.stat().st_size for p in calibration.paths) + (1 << 20)
    dest = Path(install_dir) / "data"
    check_free_space(dest.parent, needed, "the calibration set", free_bytes)
    with atomic_dir(dest) as tmp:
        for file in calibration.files:
            target = tmp / IMAGES_DIR / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(calibration.folder / file, target)
        lines = [
            file if label is None else f"{file} {label}"
            for file, label in zip(calibration.files, calibration.labels, strict=True)
        ]
        (tmp / CALIBRATION_LIST).write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
        meta = {
            "name": f"calibration-{calibration.list_file.stem}",
            "kind": "calibration",
            "size": len(calibration),
            "list": str(calibration.list_file),
            "source": str(calibration.folder),
        }
        (tmp / CALIBRATION_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return dest / CALIBRATION_META


def open_calibration_set(install_dir: Path) -> CalibrationSet:
    """An installed calibration set (its ``data`` folder, or the folder holding
    ``calibration.txt``), checked again."""
    folder = Path(install_dir)
    if not (folder / CALIBRATION_LIST).is_file() and (folder / "data").is_dir():
        folder = folder / "data"
    return read_calibration_list(folder / CALIBRATION_LIST, folder / IMAGES_DIR)
