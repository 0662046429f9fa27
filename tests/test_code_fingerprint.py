"""The run-code fingerprint is the code a process loaded, not the checkout at record time.

A submission refuses runs of one result made by different code; a long ``submission run``
whose checkout changed under it (a ``git pull`` in another shell) must still record one
fingerprint, and a new process must see the new code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ckvision

pytestmark = pytest.mark.timeout(120)

PROBE = """
import sys
from pathlib import Path
import ckvision.program  # takes the fingerprint, as a run does when it starts
from ckvision.provenance import code_fingerprint, collect_provenance
before = code_fingerprint()
target = Path(ckvision.program.__file__).parent / "harness" / "sut.py"
target.write_text(target.read_text() + "\\n# changed while the process ran\\n")
after = collect_provenance()["code_sha256"]
print(before, after)
"""


def _fingerprints(root: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout.split()


def test_a_checkout_changed_during_a_process_keeps_its_fingerprint(tmp_path: Path) -> None:
    copy = tmp_path / "ckvision"
    shutil.copytree(
        Path(ckvision.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    before, after = _fingerprints(tmp_path)
    assert before == after  # the same process: the code it loaded
    again, _ = _fingerprints(tmp_path)
    assert again != before  # a new process runs the changed file: a new fingerprint
