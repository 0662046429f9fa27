"""Calling the real ``ck`` command line: argument lists only, never a shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ckvision.errors import CkVisionError

__all__ = ["ck_executable", "run_ck", "ck_lines", "CkCommandError", "local_experiment_entry"]


class CkCommandError(CkVisionError):
    """A ck command failed; the message names the command and ck's last words."""


def ck_executable() -> str:
    beside = Path(sys.executable).with_name("ck")
    if beside.is_file():
        return str(beside)
    found = shutil.which("ck")
    if not found:
        raise CkVisionError("the ck command is not installed; run make demo (installs ck==2.6.4)")
    return found


def run_ck(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``ck ARGS``; stdin is closed so ck can never wait for an answer."""
    cmd = [ck_executable(), *args]
    full_env = dict(os.environ if env is None else env)
    result = subprocess.run(  # noqa: S603 - argument list, no shell
        cmd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        text=True,
        capture_output=capture,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout or "") + (result.stderr or "")
        last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "see output above")
        raise CkCommandError(f"'ck {' '.join(args[:2])}' failed (exit {result.returncode}): {last}")
    return result


def ck_lines(args: Sequence[str], *, env: Mapping[str, str] | None = None) -> list[str]:
    out = run_ck(args, env=env, capture=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _find_local_experiment(name: str) -> Path | None:
    try:
        lines = ck_lines(["find", f"local:experiment:{name}"])
    except CkCommandError:  # "not found" is a ck error exit
        return None
    path = Path(lines[-1]) if lines else None
    return path if path is not None and path.is_dir() else None


def local_experiment_entry(name: str, tags: Sequence[str]) -> Path:
    """``local:experiment:<name>``, created by ``ck add`` itself (with ``tags``) if new, so
    the repo knows its experiment module; points are then added by the one writer
    (:func:`ckvision.experiments.offline_writer.record_point`). ``name`` and ``tags``
    must have passed its checks."""
    entry = _find_local_experiment(name)
    if entry is None:
        with tempfile.TemporaryDirectory() as tmp:  # ck reads the entry's meta from @file
            request = Path(tmp) / "add.json"
            request.write_text(json.dumps({"dict": {"tags": list(tags)}, "common_func": "yes"}))
            run_ck(["add", f"local:experiment:{name}", f"@{request}", "--quiet"], capture=True)
        entry = _find_local_experiment(name)
        if entry is None:
            raise CkVisionError(f"ck add experiment:{name} did not create the entry")
    return entry
