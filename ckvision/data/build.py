"""Preprocessing at scale: every core, live rate and ETA, resumable after SIGKILL.

:func:`build_rgb8_parallel` makes the same cache as :func:`ckvision.data.cache.write_rgb8_cache`
(``images.npy``, ``labels.txt``, ``files.txt``, ``dataset.json``) from image files:

- The images are cut into chunks of ``CHUNK`` rows; worker *processes* decode, resize and
  crop a chunk each and write its rows straight into ``images.npy`` (no pixels travel
  between processes), past the page cache, from a thread of their own, while they decode
  the next rows (:class:`ckvision.data.npy_rows.RowWriter`). The parent records a chunk
  as done (an empty marker file) only after the worker returned *and* the parent's
  ``fdatasync`` of ``images.npy`` flushed the file and the device's cache, so a marker
  never names rows that a power cut could lose. The finished cache is on disk, not in
  memory: the first run that reads it reads the disk.
- The build happens in ``.<name>.resumable`` beside the destination, with a ``plan.json``
  naming what is built (preprocessing choice, shape, and a digest of every source file's
  name, label, size and mtime). A build killed with SIGKILL leaves that folder; the next
  build of the *same plan* keeps the finished chunks and redoes the rest; any other plan
  starts again. It never looks like a cache: it is hidden and has no ``dataset.json``
  until it is complete and renamed into place.
- A Python-level failure (an unreadable image, Ctrl-C) removes it and leaves the
  destination as it was, as every other install does.
- Free disk space for the missing chunks is checked before the first image is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.data.cache import (
    OWNER_FILE,
    PreprocessedDataset,
    _owner_alive,
    _write_lines,
    clean_stale_partials,
)
from ckvision.data.imagenet import throttled_progress
from ckvision.data.npy_rows import RowWriter, create_npy
from ckvision.data.variation import Preprocessing
from ckvision.errors import DataError
from ckvision.fsutil import atomic_write_json, check_free_space, replace_dir

__all__ = ["build_rgb8_parallel", "resumable_dir", "CHUNK", "PLAN_FILE"]

CHUNK = 128  # rows per chunk: about 19 MB of 224x224 rgb8
PLAN_FILE = "plan.json"
DONE_DIR = "done"


def resumable_dir(final: Path) -> Path:
    final = Path(final)
    return final.with_name(f".{final.name}.resumable")


_WRITER: RowWriter | None = None  # this process's writer of images.npy (one build at a time)


def _open_writer(images: str, side: int) -> None:
    """Give this process its :class:`RowWriter` (a worker's pool initializer)."""
    global _WRITER  # noqa: PLW0603 - one writer per worker process, for every chunk it does
    _WRITER = RowWriter(Path(images), (side, side, 3), np.dtype(np.uint8))


def _close_writer() -> None:
    global _WRITER  # noqa: PLW0603
    if _WRITER is not None:
        _WRITER.close()
    _WRITER = None


def _chunk_worker(args: tuple[str, str, dict[str, Any], int, list[str]]) -> int:
    """Preprocess ``files`` into rows ``start..`` of ``images.npy`` in ``work``."""
    from ckvision.data.preprocess import rgb8_file

    _work, source, spec_dict, start, files = args
    spec = Preprocessing.from_dict(spec_dict)
    if _WRITER is None:
        raise RuntimeError("_chunk_worker runs in a process given a writer by _open_writer")
    todo = iter(files)

    def fill(rows: np.ndarray) -> None:
        for row, file in zip(rows, todo, strict=False):
            row[...] = rgb8_file(Path(source) / file, spec)

    _WRITER.write(start, len(files), fill)  # no fsync: the parent syncs, then marks it done
    return start


def _plan(source: Path, items: Sequence[tuple[str, int]], spec: Preprocessing) -> dict[str, Any]:
    digest = hashlib.sha256()
    for file, label in items:
        try:
            stat = (source / file).stat()
        except OSError as err:
            raise DataError(f"cannot read image {source / file}: {err}") from err
        digest.update(f"{file}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {
        "version": 1,
        "source": str(source),
        "count": len(items),
        "chunk": CHUNK,
        "preprocessing": spec.as_dict(),
        "items_sha256": digest.hexdigest(),
    }


def _prepare(work: Path, plan: dict[str, Any], log: Callable[[str], None]) -> set[int]:
    """Reuse ``work`` when it holds the same plan (returns the finished chunk starts),
    else start it afresh."""
    if work.is_dir():
        if _owner_alive(work) and (work / OWNER_FILE).is_file():
            owner = (work / OWNER_FILE).read_text(encoding="ascii").strip()
            if owner != str(os.getpid()):
                raise DataError(
                    f"another process (pid {owner}) is building this cache in {work}; "
                    "wait for it to finish"
                )
        try:
            same = json.loads((work / PLAN_FILE).read_text(encoding="utf-8")) == plan
        except (OSError, ValueError):
            same = False
        if same and (work / "images.npy").is_file():
            done = {int(p.name) for p in (work / DONE_DIR).glob("*") if p.name.isdigit()}
            if done:
                log(f"resuming an interrupted build: {len(done)} chunk(s) already done")
            return done
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / DONE_DIR).mkdir()
    return set()


def build_rgb8_parallel(
    final: Path,
    *,
    name: str,
    kind: str,
    source: Path,
    spec: Preprocessing,
    items: Sequence[tuple[str, int]],
    progress: Callable[[str], None] | None = None,
    extra: dict[str, Any] | None = None,
    workers: int = 0,
    free_bytes: int | None = None,
) -> PreprocessedDataset:
    """Build the rgb8 cache of ``items`` (files in ``source``, labels) at ``final``
    (see the module doc). ``workers`` 0 = every core; ``free_bytes`` replaces the free
    disk space reading (tests)."""
    if not items:
        raise DataError(f"dataset {name}: no images to preprocess")
    final, source = Path(final), Path(source)
    log = progress or (lambda _msg: None)
    clean_stale_partials(final, log)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = resumable_dir(final)
    plan = _plan(source, items, spec)
    done = _prepare(work, plan, log)
    try:
        (work / OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")
        starts = range(0, len(items), CHUNK)
        pending = [s for s in starts if s not in done]
        row = spec.side * spec.side * 3
        missing_rows = sum(min(CHUNK, len(items) - s) for s in pending)
        check_free_space(work, missing_rows * row + (1 << 20), f"the {name} cache", free_bytes)
        images = work / "images.npy"
        if not images.is_file():
            shape = (len(items), spec.side, spec.side, 3)
            create_npy(images, shape, np.dtype(np.uint8))
            atomic_write_json(work / PLAN_FILE, plan)
        report = throttled_progress(progress, "preprocessed", with_rate=True)
        jobs = [
            (str(work), str(source), spec.as_dict(), s, [f for f, _ in items[s : s + CHUNK]])
            for s in pending
        ]
        finished = len(items) - missing_rows
        workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))

        def mark(start: int) -> None:
            nonlocal finished
            fd = os.open(images, os.O_RDWR)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            (work / DONE_DIR / str(start)).touch()
            finished += min(CHUNK, len(items) - start)
            if report is not None:
                report(finished, len(items))

        if workers == 1:
            _open_writer(str(images), spec.side)
            try:
                for job in jobs:
                    mark(_chunk_worker(job))
            finally:
                _close_writer()
        else:
            context = get_context("spawn")
            with context.Pool(workers, _open_writer, (str(images), spec.side)) as pool:
                for start in pool.imap_unordered(_chunk_worker, jobs):
                    mark(start)
        _write_lines(work / "labels.txt", (str(label) for _file, label in items))
        _write_lines(work / "files.txt", (file for file, _label in items))
        meta = {
            "name": name,
            "kind": kind,
            "size": len(items),
            "source": str(source),
            **(extra or {}),
            "storage": "rgb8",
            "preprocessing": spec.as_dict(),
            "tags": spec.tags(),
        }
        (work / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(work / DONE_DIR)
        for leftover in (PLAN_FILE, OWNER_FILE):
            (work / leftover).unlink()
        replace_dir(work, final)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
        raise
    return PreprocessedDataset.open(final)
