"""Calling the real ``ck`` command line: argument lists only, never a shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ckvision.errors import CkVisionError

__all__ = ["ck_executable", "run_ck", "ck_lines", "CkCommandError"]


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
