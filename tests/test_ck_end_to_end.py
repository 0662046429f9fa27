"""End to end through the real ``ck`` CLI (ck==2.6.4) in a temporary CK_REPOS/CK_TOOLS.

Registers this checkout, detects software, installs the real EfficientNet-Lite0 ONNX export
and the sample dataset through ``ck install package``, runs the program with ``ck run``,
records with ``ck benchmark --record`` and loads the entry into pandas.
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
from ckvision.backends.registry import BACKENDS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PROGRAM = f"program:{BACKENDS['onnxruntime'].program}"  # the registry's, not a copy


@pytest.fixture(scope="module")
def ck_env(ck_world: dict[str, str]) -> dict[str, str]:
    """The session's prepared CK_REPOS (conftest.ck_world: ck-setup next to upstream stand-ins)."""
    return ck_world


def test_setup_is_idempotent_and_installs_real_packages(ck_env: dict[str, str]) -> None:
    again = subprocess.run(
        [sys.executable, "-m", "ckvision", "ck-setup"],
        env=ck_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "already installed" in again.stdout and "installing" not in again.stdout
    envs = ck(ck_env, "show", "env", "--tags=model,onnx,efficientnet-lite0").stdout
    assert "efficientnet-lite0" in envs
    sidecars = list(Path(ck_env["CK_TOOLS"]).glob("*/model.json"))
    contract = json.loads(sidecars[0].read_text())["env"]
    assert contract["ML_MODEL_GIVEN_CHANNEL_MEANS"] == "0.5 0.5 0.5"


def test_ck_run_accuracy_prints_top1_and_top5(ck_env: dict[str, str]) -> None:
    run = ck(
        ck_env,
        "run",
        PROGRAM,
        "--env.CK_LOADGEN_DATASET_SIZE=32",
        "--env.CK_LOADGEN_SCENARIO=Offline",
        "--env.CK_BATCH_SIZE=4",
        "--skip_print_timers",
        "--return_error_if_external_fail=yes",
        "--quiet",
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert "accuracy=" in run.stdout and ", total=32" in run.stdout
    assert "top5=" in run.stdout


def test_ck_run_bad_env_fails_with_one_line(ck_env: dict[str, str]) -> None:
    run = ck(
        ck_env,
        "run",
        PROGRAM,
        "--env.CK_BATCH_SIZE=zero",
        "--return_error_if_external_fail=yes",
        "--quiet",
    )
    assert run.returncode != 0
    assert "CK_BATCH_SIZE='zero' is not an integer" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_tensorrt_program_without_tensorrt_ends_in_our_one_line(
    ck_env: dict[str, str], tmp_path: Path
) -> None:
    """The card's TensorRT program after `make demo` (this repo alone in CK_REPOS) on a
    machine without TensorRT, stdin closed and no --quiet: no package-choice prompt (the
    Triton repository package also has a `tensorrt` variation; the program's engine dep
    excludes it), no traceback, our line names what is missing, non-zero exit. (With
    ck-tensorrt also registered, CK asks which engine package: README, `ckvision ck-deps`.)"""
    import shutil

    from ckvision.backends.tensorrt_backend import check_tensorrt_available
    from ckvision.errors import CkVisionError

    try:
        check_tensorrt_available()
    except CkVisionError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    repos = tmp_path / "repos"
    shutil.copytree(ck_env["CK_REPOS"], repos, symlinks=True)
    env = dict(ck_env, CK_REPOS=str(repos))
    for other in ("ck-tensorrt", "ck-mlperf", "ck-env", "ck-ml", "ck-crowdtuning", "ck-docker"):
        ck(env, "rm", f"repo:{other}", "--force")
    assert "model-tensorrt-convert-from-onnx" not in ck(env, "list", "package").stdout
    run = ck(env, "run", "program:image-classification-tensorrt-loadgen-py")
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Traceback" not in out and "EOFError" not in out
    assert "Please select" not in out
    said = [ln for ln in out.splitlines() if ln.startswith("ckvision: error: ")]
    assert len(said) == 1 and "TensorRT is not installed here" in said[0], out[-3000:]


def test_ck_benchmark_record_loads_into_pandas(ck_env: dict[str, str]) -> None:
    name = "test.offline.performance"
    bench = ck(
        ck_env,
        "benchmark",
        PROGRAM,
        "--repetitions=1",
        "--env.CK_LOADGEN_SCENARIO=Offline",
        "--env.CK_LOADGEN_MODE=PerformanceOnly",
        "--env.CK_BATCH_SIZE=4",
        "--env.CK_LOADGEN_TARGET_QPS=20",
        "--env.CK_LOADGEN_MIN_DURATION_S=1",
        "--env.CK_LOADGEN_DATASET_SIZE=64",
        "--record",
        "--record_repo=local",
        f"--record_uoa={name}",
        "--tags=ckvision,test,offline,performance",
        "--skip_print_timers",
        "--skip_stat_analysis",
        "--process_multi_keys",
        "--quiet",
        "--return_error_if_external_fail=yes",
    )
    assert bench.returncode == 0, bench.stdout[-3000:]
    entry = Path(ck_env["CK_REPOS"]) / "local" / "experiment" / name
    frame = load_experiments([entry], ["ckvision", "offline"])
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["loadgen.scenario"] == "Offline"
    assert row["loadgen.mode"] == "PerformanceOnly"
    assert row["config.batch_size"] == 4
    assert row["loadgen.samples_per_second"] > 0
    assert row["loadgen.result_validity"] in ("VALID", "INVALID")
    assert row["provenance.versions.ck"] == "2.6.4"
    assert row["provenance.host.cpu_count"] >= 1
    assert row["dataset.name"].startswith("ckvision-sample")
    point = json.loads(next(entry.glob("ckp-*.0001.json")).read_text())
    logs = point["characteristics_list"][0]["run"]["logs"]
    assert "MLPerf Results Summary" in logs["mlperf_log_summary.txt"]
    table = summary_table(frame)
    assert table.loc[0, "samples/s"] == pytest.approx(row["loadgen.samples_per_second"])


def test_ck_pull_repo_from_a_git_url(tmp_path: Path) -> None:
    clone = tmp_path / "origin"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = dict(os.environ, CK_REPOS=str(tmp_path / "repos"))
    pulled = ck(env, "pull", "repo", f"--url={clone}", "--quiet")
    assert pulled.returncode == 0, pulled.stdout[-2000:]
    listed = ck(env, "list", "program").stdout.split()
    assert "image-classification-onnxruntime-loadgen-py" in listed
    assert "image-classification-tensorrt-loadgen-py" in listed
