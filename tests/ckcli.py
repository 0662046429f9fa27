"""The real ``ck`` of this venv, run the way every ck test runs it: argument list, own env,
stdin closed (a CK question fails the test instead of hanging it), time-bounded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["CK", "ck"]

CK = str(Path(sys.executable).with_name("ck"))


def ck(
    env: dict[str, str], *args: str, timeout: int = 300, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CK, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
