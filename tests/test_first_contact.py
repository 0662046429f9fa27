"""First contact: a machine with nothing but ``ck`` installed.

``ck pull repo`` of this repository, then ``ck run`` and ``ck benchmark --record`` of the
ONNX Runtime program with ``--quiet`` and stdin closed: CK detects Python 3.11 (the one
running ck), installs ``package:lib-python-ckvision`` (ckvision and its exact pins into
CK_TOOLS, never into that Python), the embedded model and the sample set, and runs. The
Python here is a fresh venv with ``ck`` alone (pip's cache makes the install quick).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckvision.ck.bootstrap import requirements

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "program:image-classification-onnxruntime-loadgen-py"


def _run(env: dict[str, str], *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.mark.timeout(1500)
def test_ck_pull_then_quiet_run_and_record_on_a_machine_with_only_ck(tmp_path: Path) -> None:
    venv = tmp_path / "only-ck"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    ck_pin = next(p for p in requirements(ROOT / "pyproject.toml") if p.startswith("ck=="))
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", ck_pin]
    subprocess.run(pip, check=True, timeout=300, stdin=subprocess.DEVNULL)
    clone = tmp_path / "origin"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CK_PYTHON")
    }
    env.update(
        CK_REPOS=str(tmp_path / "repos"),
        CK_TOOLS=str(tmp_path / "tools"),
        PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    ck = str(venv / "bin/ck")
    done = _run(env, str(venv / "bin/python"), "-c", "import numpy", timeout=60)
    assert done.returncode != 0  # the interpreter really has nothing but ck
    pulled = _run(env, ck, "pull", "repo", f"--url={clone}", timeout=300)
    assert pulled.returncode == 0, pulled.stdout[-2000:] + pulled.stderr[-2000:]

    run = _run(env, ck, "run", PROGRAM, "--quiet", timeout=1200)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "accuracy=57.031%, good=146, total=256" in run.stdout, out[-4000:]
    site = tmp_path / "tools" / "lib-python-ckvision" / "python"
    assert (site / "numpy").is_dir() and (site / "ckvision" / "__init__.py").is_file()

    name = "first.contact.offline.performance"
    bench = _run(
        env,
        ck,
        "benchmark",
        PROGRAM,
        "--repetitions=1",
        "--env.CK_LOADGEN_SCENARIO=Offline",
        "--env.CK_LOADGEN_MODE=PerformanceOnly",
        "--env.CK_LOADGEN_MIN_DURATION_S=1",
        "--env.CK_AUTOTUNE=off",
        "--env.CK_BATCH_SIZE=4",
        "--env.CK_LOADGEN_TARGET_QPS=30",
        "--record",
        "--record_repo=local",
        f"--record_uoa={name}",
        "--tags=ckvision,first-contact",
        "--skip_print_timers",
        "--skip_stat_analysis",
        "--process_multi_keys",
        "--quiet",
        timeout=600,
    )
    assert bench.returncode == 0, (bench.stdout + bench.stderr)[-4000:]
    point = next((tmp_path / "repos" / "local" / "experiment" / name).glob("ckp-*.0001.json"))
    record = json.loads(point.read_text())["characteristics_list"][0]["run"]
    assert record["loadgen"]["scenario"] == "Offline"
    assert record["loadgen"]["samples_per_second"] > 0
