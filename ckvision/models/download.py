"""Checksum-verified, atomic, idempotent download of a model file.

The file is streamed into a temporary file beside ``dest`` while it is hashed, checked,
and only then renamed to ``dest``: a reader never sees a partial or unverified model,
and a failed or interrupted download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ckvision.errors import CkVisionError, ModelError
from ckvision.fsutil import atomic_output

__all__ = ["download", "file_digests", "mirrored_url"]

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of ``path`` in hex."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    sha256: str,
    md5: str = "",
    size: int = 0,
    progress: Callable[[str], None] | None = None,
    every_s: float = 1.0,
    resume: bool = False,
    error: type[CkVisionError] = ModelError,
) -> Path:
    """Download ``url`` to ``dest`` and verify it; do nothing if ``dest`` already matches.

    ``sha256`` is checked when given; ``md5`` too. At least one must be given: we never
    install a file we could not verify. Raises :class:`ModelError` on a network error or
    a checksum mismatch, leaving ``dest`` untouched. ``size`` (bytes), when given, and the
    server's Content-Length are checked too, so a truncated transfer names itself.

    ``resume`` (for large archives): the bytes received so far are kept in
    ``.<name>.partial`` beside ``dest`` when the transfer breaks (network error, truncated
    body, Ctrl-C, kill), and the next call asks the server for the rest (HTTP Range) and
    checks the checksum over the whole file; a server that ignores Range sends it all
    again. A checksum or size mismatch removes the partial file. ``error`` is the
    exception type raised (a dataset download raises :class:`DataError`).
    """
    if error is not ModelError:
        try:
            return download(
                url, dest, sha256=sha256, md5=md5, size=size, progress=progress,
                every_s=every_s, resume=resume,
            )  # fmt: skip
        except ModelError as err:
            raise error(str(err)) from err
    dest = Path(dest)
    sha256, md5 = sha256.strip().lower(), md5.strip().lower()
    if not sha256 and not md5:
        raise ModelError(f"no checksum given for {url}; refusing to install an unverified file")
    log = progress or (lambda _msg: None)
    if dest.is_file() and _mismatch(file_digests(dest), sha256, md5) is None:
        log(f"{dest} is already downloaded and verified")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if resume:
        return _download_resumable(url, dest, sha256, md5, size, log, every_s)
    for stale in dest.parent.glob(f".{dest.name}.*.part"):  # left by a killed download
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    with atomic_output(dest, suffix=".part") as tmp, open(tmp, "wb") as out:
        digests, received = _stream(url, out, log, every_s)
        out.flush()
        _verify(url, digests, received, sha256, md5, size)
    log(f"downloaded {url} -> {dest} (checksum verified)")
    return dest


def _verify(
    url: str, digests: tuple[str, str], received: int, sha256: str, md5: str, size: int
) -> None:
    """The one check of a finished transfer: its size (when known), then its checksums."""
    if size and received != size:
        raise ModelError(
            f"size mismatch for {url}: expected {size} bytes, got {received}; "
            "the file was not installed"
        )
    problem = _mismatch(digests, sha256, md5)
    if problem:
        raise ModelError(f"checksum mismatch for {url}: {problem}; the file was not installed")


def _download_resumable(
    url: str,
    dest: Path,
    sha256: str,
    md5: str,
    size: int,
    log: Callable[[str], None],
    every_s: float,
) -> Path:
    """The bytes received so far stay in ``.<name>.partial``; the next call asks for the
    rest. The checksum covers the whole file (the kept bytes are hashed first)."""
    partial = dest.with_name(f".{dest.name}.partial")
    hashes = (hashlib.sha256(), hashlib.md5(usedforsecurity=False))
    offset = 0
    if partial.is_file():
        with open(partial, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                for digest in hashes:
                    digest.update(chunk)
                offset += len(chunk)
        log(f"resuming {url} after {offset / 1e6:.1f} MB already received")
    try:
        with open(partial, "ab") as out:
            digests, received = _stream(url, out, log, every_s, offset=offset, hashes=hashes)
    except ModelError as err:
        kept = partial.stat().st_size if partial.is_file() else 0
        raise ModelError(f"{err}; run again to resume ({kept} bytes kept)") from err
    try:
        _verify(url, digests, received, sha256, md5, size)
    except ModelError:
        partial.unlink()  # wrong bytes: never resumed from
        raise
    partial.chmod(0o644)
    os.replace(partial, dest)
    log(f"downloaded {url} -> {dest} (checksum verified)")
    return dest


def mirrored_url(url: str, mirror: str) -> str:
    """``url`` fetched from ``mirror`` (a base URL) instead, keeping the file's name.

    For hosts that reach a local copy rather than the original server; the checksums
    are the original file's either way.
    """
    if not mirror:
        return url
    if not mirror.startswith(("http://", "https://", "file:")):
        raise ModelError(f"mirror {mirror!r} must be an http://, https:// or file: URL")
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}"


def _stream(
    url: str,
    out: BinaryIO,
    log: Callable[[str], None],
    every_s: float,
    *,
    offset: int = 0,
    hashes: tuple[Any, Any] | None = None,
) -> tuple[tuple[str, str], int]:
    """The one transfer loop: ``url``'s body into ``out`` while hashing it, with progress;
    ``offset`` > 0 asks for the rest (HTTP Range) after bytes already in ``out`` and
    ``hashes``. A server that ignores Range sends it all: ``out`` is emptied first.
    Returns ((sha256, md5), bytes in ``out``); a truncated body is an error."""
    sha, md5 = hashes or (hashlib.sha256(), hashlib.md5(usedforsecurity=False))
    request = urllib.request.Request(url)  # noqa: S310 - the caller checks the scheme
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
            if offset and response.status != 206:  # Range ignored: the whole file again
                out.truncate(0)
                sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
                offset = 0
            length = int(response.headers.get("Content-Length") or 0)
            total = offset + length if length else 0
            done, last = offset, time.monotonic()
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                done += len(chunk)
                if time.monotonic() - last >= every_s:
                    last = time.monotonic()
                    log(_progress_line(url, done, total))
    except urllib.error.HTTPError as err:
        raise ModelError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or str(err) or type(err).__name__
        raise ModelError(f"cannot download {url}: {reason}") from err
    if total and done != total:
        raise ModelError(f"cannot download {url}: got {done} of {total} bytes (truncated)")
    log(_progress_line(url, done, total))
    return (sha.hexdigest(), md5.hexdigest()), done


def _progress_line(url: str, done: int, total: int) -> str:
    if total:
        return f"{url}: {done / 1e6:.1f}/{total / 1e6:.1f} MB ({100 * done / total:.0f}%)"
    return f"{url}: {done / 1e6:.1f} MB"


def _mismatch(digests: tuple[str, str], sha256: str, md5: str) -> str | None:
    """None when every given checksum matches, else 'expected ... got ...'."""
    got_sha, got_md5 = digests
    if sha256 and got_sha != sha256:
        return f"expected sha256 {sha256}, got {got_sha}"
    if md5 and got_md5 != md5:
        return f"expected md5 {md5}, got {got_md5}"
    return None
