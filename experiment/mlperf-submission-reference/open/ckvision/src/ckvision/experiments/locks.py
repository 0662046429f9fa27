"""Stale CK entry locks: what a killed ``ck benchmark --record`` leaves behind.

CK 2.6.4 locks an experiment entry while it adds a point (``.cm/ck_lock.txt``: the lock's
uid, then its lifetime, 120 s for experiments). A record holds it for well under a
second; a record killed in that window leaves the lock, and the next record into the
entry then waits up to two minutes, or fails for good if the file was cut short
("problem reading lock file"). :func:`clear_stale_locks` removes locks older than
:data:`STALE_AFTER_S` and malformed ones. The program's post-processing runs it in the
``ck`` process just before CK records and then every second while CK may be waiting
(:func:`keep_clearing_stale_locks`), so a record waits at most about
:data:`STALE_AFTER_S` for a lock whose holder was killed, however recently.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["LOCK_FILE", "STALE_AFTER_S", "clear_stale_locks", "keep_clearing_stale_locks"]

LOCK_FILE = Path(".cm") / "ck_lock.txt"
STALE_AFTER_S = 20.0  # a live record holds the lock for well under a second
_BEING_WRITTEN_S = 2.0  # a lock file this young may still be being written


def _malformed(path: Path) -> bool:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        float(lines[1])
    except (OSError, ValueError, IndexError):
        return True
    return not lines[0].strip()


def clear_stale_locks(
    experiment_root: Path, *, now: float | None = None, log: Callable[[str], None] = print
) -> list[Path]:
    """Remove stale or malformed locks of the entries under ``experiment_root``."""
    now = time.time() if now is None else now
    removed = []
    for lock in sorted(Path(experiment_root).glob(f"*/{LOCK_FILE}")):
        try:
            age = now - lock.stat().st_mtime
        except FileNotFoundError:
            continue  # released meanwhile
        if age > STALE_AFTER_S or (age > _BEING_WRITTEN_S and _malformed(lock)):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            removed.append(lock)
            log(f"ckvision: removed a stale lock left by an interrupted record: {lock}")
    return removed


def keep_clearing_stale_locks(
    experiment_root: Path,
    *,
    every_s: float = 1.0,
    for_s: float = 180.0,
    log: Callable[[str], None] = print,
) -> threading.Thread:
    """Clear stale locks now, then every ``every_s`` for ``for_s`` (a daemon thread)."""
    clear_stale_locks(experiment_root, log=log)

    def loop() -> None:
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            time.sleep(every_s)
            clear_stale_locks(experiment_root, log=log)

    thread = threading.Thread(target=loop, name="ckvision-stale-locks", daemon=True)
    thread.start()
    return thread
