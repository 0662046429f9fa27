"""The model and dataset a point needs, packed on the driver and unpacked on a node.

The driver packs the model file (with its ``model.json`` sidecar) and the preprocessed
dataset directory into two tar archives, each named by the SHA-256 of its bytes, and puts
them in Ray's object store. A node unpacks an archive into its cache
(``$CKVISION_CLUSTER_CACHE``, default ``~/.cache/ckvision/cluster``) only when the cache
lacks that digest, so the bytes travel once per node and never when nothing changed.
Unpacking is atomic (:func:`ckvision.fsutil.atomic_dir`) and serialised per digest with
an ``flock``, so two points starting at once on nodes that share a file system never
see half a directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ckvision.errors import DataError
from ckvision.fsutil import atomic_dir

__all__ = ["Bundle", "pack_dir", "pack_files", "cache_root", "unpack", "CACHE_ENV"]

CACHE_ENV = "CKVISION_CLUSTER_CACHE"


@dataclass(frozen=True)
class Bundle:
    """One archive: its digest, the path inside it the run wants, and its size."""

    digest: str
    inner: str  # relative path of the model file or the dataset dir inside the archive
    size: int


def cache_root(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get(CACHE_ENV) or str(Path.home() / ".cache" / "ckvision" / "cluster")
    return Path(base)


def _pack(add: Callable[[tarfile.TarFile], None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        add(tar)
    return buffer.getvalue()


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Same files, same bytes: no owner or time in the archive, so its digest is stable."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def pack_files(files: list[Path], inner: str) -> tuple[Bundle, bytes]:
    """Archive ``files`` flat (the model file and its sidecar)."""

    def add(tar: tarfile.TarFile) -> None:
        for path in files:
            tar.add(path, arcname=path.name, filter=_reset)

    data = _pack(add)
    return Bundle(hashlib.sha256(data).hexdigest(), inner, len(data)), data


def pack_dir(directory: Path) -> tuple[Bundle, bytes]:
    """Archive a directory under its own name (the preprocessed dataset)."""
    directory = Path(directory)
    data = _pack(lambda tar: tar.add(directory, arcname=directory.name, filter=_reset))
    return Bundle(hashlib.sha256(data).hexdigest(), directory.name, len(data)), data


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def unpack(bundle: Bundle, fetch: Callable[[], bytes], root: Path) -> tuple[Path, bool]:
    """The bundle's ``inner`` path in the node cache; ``fetch()`` only when it is missing.

    Returns the path and whether it was shipped (fetched and unpacked) now.
    """
    final = root / bundle.digest
    with _flock(root / f".{bundle.digest}.lock"):
        if (final / bundle.inner).exists():
            return final / bundle.inner, False
        data = fetch()
        if hashlib.sha256(data).hexdigest() != bundle.digest:
            raise DataError(f"the shipped archive {bundle.digest[:12]} arrived corrupt")
        with atomic_dir(final) as tmp, tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")  # no links out, no absolute paths
        return final / bundle.inner, True
