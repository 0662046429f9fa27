"""What keeps recorded entries loadable when a record is killed: stale-lock removal and
atomic CK writes (unit level; test_ck_trust.py kills real ck processes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from ckvision.ck.hooks.atomic import _atomic, make_ck_writes_atomic
from ckvision.experiments.locks import LOCK_FILE, STALE_AFTER_S, clear_stale_locks


def _lock(root: Path, entry: str, text: str, age_s: float) -> Path:
    path = root / entry / LOCK_FILE
    path.parent.mkdir(parents=True)
    path.write_text(text)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_stale_and_malformed_locks_go_live_ones_stay(tmp_path: Path) -> None:
    good = "0123456789abcdef\n120.0\n"
    live = _lock(tmp_path, "live", good, 1)
    stale = _lock(tmp_path, "stale", good, STALE_AFTER_S + 5)
    cut = _lock(tmp_path, "cut-short", "0123", 5)
    empty_young = _lock(tmp_path, "being-written", "", 0)
    messages: list[str] = []
    removed = clear_stale_locks(tmp_path, log=messages.append)
    assert removed == [cut, stale]
    assert live.exists() and empty_young.exists()
    assert not stale.exists() and not cut.exists()
    assert len(messages) == 2 and str(stale) in messages[1]


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    target.write_text('{"old": true}\n')

    def killed_midway(i: dict[str, Any]) -> dict[str, Any]:
        Path(i["text_file"]).write_text('{"new": tr')  # half written, then the kill
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic(killed_midway)({"text_file": str(target), "string": "x"})
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_real_ck_writes_go_through_a_rename(tmp_path: Path) -> None:
    import ck.kernel as ck

    assert make_ck_writes_atomic() and make_ck_writes_atomic()  # idempotent
    target = tmp_path / "point.json"
    inode_before = None
    for value in (1, 2):
        assert ck.save_json_to_file({"json_file": str(target), "dict": {"v": value}})["return"] == 0
        assert json.loads(target.read_text()) == {"v": value}
        inode = target.stat().st_ino
        assert inode != inode_before  # replaced, never rewritten in place
        inode_before = inode
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["point.json"]
    appended = tmp_path / "log.txt"
    for _ in range(2):
        ck.save_text_file({"text_file": str(appended), "string": "a\n", "append": "yes"})
    assert appended.read_text() == "a\na\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
