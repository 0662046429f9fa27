"""Atomic file and directory writes (a reader never sees half of anything we write), and
the one sha256 of a file. Every atomic write in ckvision comes through here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_output",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_dir",
    "replace_dir",
    "sha256_file",
    "full_disk_note",
    "check_free_space",
    "LOW_SPACE_BYTES",
]


LOW_SPACE_BYTES = 1 << 20  # under 1 MiB free, a write of a log or a record can fail


def full_disk_note(path: Path, error: BaseException | None = None) -> str:
    """The one disk-full wording: ``"; the file system of PATH is full (N bytes free)"``
    when ``error`` is ENOSPC / EDQUOT or the file system holding ``path`` has almost no
    space left, else ``""``. Callers append it to their own one-line error."""
    import errno

    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        free = None
    if full or (free is not None and free < LOW_SPACE_BYTES):
        shown = "unknown" if free is None else str(free)
        return f"; the file system of {probe} is full ({shown} bytes free)"
    return ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file beside ``path`` to write (by any means); when the block ends
    without an exception it is synced and renamed over ``path``. On any exception (Ctrl-C
    included) it is removed and ``path`` is left exactly as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result is a normal file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename over it."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; on success it replaces ``final``.

    On any exception (Ctrl-C included) the temporary directory is removed and
    ``final`` is left exactly as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the complete directory ``tmp`` (beside ``final``) in place of ``final``."""
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is a normal dir
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def check_free_space(where: Path, needed: int, what: str, free: int | None = None) -> None:
    """Refuse (one line, :class:`DataError`) when the file system of ``where`` (or of its
    nearest existing parent) has less than ``needed`` bytes free; ``free`` replaces the
    reading (tests inject a small disk this way)."""
    from ckvision.errors import DataError

    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    available = shutil.disk_usage(probe).free if free is None else free
    if available < needed:
        raise DataError(
            f"not enough disk space for {what} in {probe}: needs {needed / 1e9:.2f} GB, "
            f"{available / 1e9:.2f} GB free; free some space or choose another folder"
        )
