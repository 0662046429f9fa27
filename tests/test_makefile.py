"""`make help` names every target a user can type."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_lists_every_target() -> None:
    text = (ROOT / "Makefile").read_text()
    targets = {
        m.group(1)
        for m in re.finditer(r"^([a-z][a-z0-9-]*):(?!=)", text, re.M)
        if m.group(1) not in ("help",)
    }
    assert {"demo", "test", "system-deps", "gpu", "docker", "test-extras"} <= targets
    shown = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    listed = {line.split()[1] for line in shown.splitlines() if line.startswith("make ")}
    assert sorted(targets - listed) == []
