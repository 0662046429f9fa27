"""Triton through the real ``ck`` (2.6.4): the repository package, the program, the script.

The real EfficientNet-Lite0 (exported by ``ck-setup``) is served from a generated
python-backend repository by a real tritonserver the program starts; its accuracy on the
embedded sample equals the in-process onnxruntime program's, image for image count. The
perf_analyzer script records into a CK entry that ``ck list`` knows, and both kinds of
rows (with the server-side breakdown) land in one table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ckcli import ck

from ckvision.analysis import load_experiments, summary_table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
RUN = (
    "--env.CK_LOADGEN_DATASET_SIZE=32",
    "--env.CK_LOADGEN_SCENARIO=Offline",
    "--env.CK_BATCH_SIZE=4",
    "--skip_print_timers",
    "--return_error_if_external_fail=yes",
    "--quiet",
)


def _accuracy(stdout: str) -> list[str]:
    return [ln for ln in stdout.splitlines() if ln.startswith(("accuracy=", "top5="))]


def test_triton_program_package_and_perf_script_through_ck(
    tmp_path: Path, triton_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "ck"
    env = dict(os.environ, CK_REPOS=str(base / "repos"), CK_TOOLS=str(base / "tools"))
    setup = subprocess.run(
        [sys.executable, "-m", "ckvision", "ck-setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    assert "detected lib,python-package,tritonclient" in setup.stdout

    installed = ck(
        env,
        "install",
        "package",
        "--tags=model,triton,efficientnet-lite0,python,maxbatch.4",
        "--quiet",
    )
    assert installed.returncode == 0, installed.stdout[-2000:]
    repo = next(Path(env["CK_TOOLS"]).glob("model-triton-repository*"))
    assert "max_batch_size: 4" in (repo / "classifier" / "config.pbtxt").read_text()

    served = ck(
        env,
        "run",
        "program:image-classification-triton-loadgen-py",
        *RUN,
        "--env.CK_TRITON_PROTOCOL=grpc",
    )
    assert served.returncode == 0, served.stdout[-3000:]
    local = ck(env, "run", "program:image-classification-onnxruntime-loadgen-py", *RUN)
    assert local.returncode == 0, local.stdout[-3000:]
    assert _accuracy(served.stdout) == _accuracy(local.stdout) != []
    assert "total=32" in _accuracy(served.stdout)[0]

    perf = tmp_path / "perf.json"
    perf.write_text(
        json.dumps(
            {
                "dict": {
                    "repository": str(repo),
                    "batch": 2,
                    "request_count": 10,
                    "stability_percent": 900,
                    "record": "triton-pa",
                    "tags": "triton,perf_analyzer",
                    "output_dir": str(tmp_path),
                }
            }
        )
    )
    script = ck(env, "run", "script:triton-perf-analyzer", f"@{perf}")
    assert script.returncode == 0, script.stdout[-2000:] + script.stderr[-2000:]
    recorded = ck(
        env,
        "benchmark",
        "program:image-classification-triton-loadgen-py",
        "--env.CK_LOADGEN_DATASET_SIZE=16",
        "--env.CK_LOADGEN_MODE=PerformanceOnly",
        "--env.CK_LOADGEN_COUNT_OVERRIDE=8",
        "--env.CK_LOADGEN_MIN_DURATION_S=0.1",
        "--record",
        "--record_uoa=triton-ss",
        "--tags=triton",
        "--repetitions=1",
        "--skip_print_timers",
        "--quiet",
    )
    assert recorded.returncode == 0, recorded.stdout[-2000:]
    listed = set(ck(env, "list", "experiment").stdout.split())
    assert {"triton-pa", "triton-ss"} <= listed  # (next to this repo's experiment/ entries)

    monkeypatch.setenv("CK_REPOS", env["CK_REPOS"])
    table = summary_table(load_experiments(tags=["triton"])).set_index("entry")
    assert table.loc["triton-pa", "scenario"] == "perf_analyzer"
    assert table.loc["triton-ss", "scenario"] == "SingleStream"
    for entry in ("triton-pa", "triton-ss"):
        assert table.loc[entry, "infer ms"] > 0 and table.loc[entry, "p90 ms"] > 0
