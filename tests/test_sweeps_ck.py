"""Sweeps, peak search and the HTML report through the real ``ck`` CLI and real Chromium.

Null backend (the backend doesn't matter here), short runs. One module-scoped CK setup
in a temporary CK_REPOS/CK_TOOLS; the tests run in order and build on each other's
recorded points, as a user's session does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ckvision.experiments.entries import find_entries, iter_runs

pytestmark = pytest.mark.slow
CK = str(Path(sys.executable).with_name("ck"))
SHORT = ["--backend", "null", "--env", "CK_LOADGEN_MIN_DURATION_S=0.3", "--tags", "t9"]


@pytest.fixture(scope="module")
def ck_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("ck")
    env = dict(
        os.environ,
        CK_REPOS=str(base / "repos"),
        CK_TOOLS=str(base / "tools"),
        CK_TUNING_CACHE=str(base / "tuning.json"),
    )
    setup = subprocess.run(
        [sys.executable, "-m", "ckvision", "ck-setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    return env


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: int = 400
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ckvision", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _entries(env: dict[str, str], *tags: str) -> list[Path]:
    os.environ["CK_REPOS"], saved = env["CK_REPOS"], os.environ.get("CK_REPOS")
    try:
        return find_entries((), tags)
    finally:
        if saved is None:
            os.environ.pop("CK_REPOS")
        else:
            os.environ["CK_REPOS"] = saved


def test_batch_sweep_records_each_point_and_resumes(ck_env: dict[str, str], tmp_path: Path) -> None:
    run = cli(
        ck_env, "sweep", "batch", "--batches", "1,2", *SHORT, "--csv", str(tmp_path / "b.csv")
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "ckvision: auto-tuned " in run.stdout  # the probe's one line
    entries = _entries(ck_env, "t9", "sweep_batch")
    assert len(entries) == 2
    records = [r.record for r in iter_runs(entries)]
    assert sorted(r["config"]["batch_size"] for r in records) == [1, 2]
    for record in records:
        assert record["loadgen"]["result_validity"] == "VALID"
        assert record["latency_histogram"]["count"] > 0  # HDR percentiles in the entry
        assert "latency.hgrm" in record["logs"] and record["tuning"]["layout"]
    header = (tmp_path / "b.csv").read_text().splitlines()[0]
    assert header.startswith("batch,samples/s,avg ms,p50 ms,p90 ms,p95 ms,p99 ms,validity")
    again = cli(ck_env, "sweep", "batch", "--batches", "1,2", *SHORT)
    assert again.returncode == 0 and again.stdout.count("already recorded") == 2
    assert "running" not in again.stdout


def test_ctrl_c_keeps_finished_points(ck_env: dict[str, str]) -> None:
    """Points 1 and 2 are recorded (previous test); Ctrl-C while 4 runs keeps them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckvision", "sweep", "batch", "--batches", "1,2,4", *SHORT],
        env={**ck_env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "batch=4: running" in line:
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen)[-2000:] + err
    assert "the 2 finished points stay recorded" in out
    runs = list(iter_runs(_entries(ck_env, "t9", "sweep_batch")))
    assert sorted(r.record["config"]["batch_size"] for r in runs) == [1, 2]  # not 4
    # a ck killed while recording leaves an entry without a run: the sweep replaces it
    name = re.search(r"\((ckvision\.sweep\.batch\.[0-9a-f]+)\)", seen[-1])
    assert name is not None
    added = subprocess.run(
        [
            CK,
            "add",
            f"experiment:{name.group(1)}",
            "--common_func",
            "--tags=ckvision,sweep,t9",
            "--quiet",
        ],
        env=ck_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stdout
    again = cli(ck_env, "sweep", "batch", "--batches", "1,2,4", *SHORT)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    assert f"removing the unfinished entry {name.group(1)}" in again.stdout
    runs = list(iter_runs(_entries(ck_env, "t9", "sweep_batch")))
    assert sorted(r.record["config"]["batch_size"] for r in runs) == [1, 2, 4]


def test_concurrency_sweep_through_the_ck_script_entry(
    ck_env: dict[str, str], tmp_path: Path
) -> None:
    spec = tmp_path / "sweep.json"
    spec.write_text(
        json.dumps(
            {
                "dict": {
                    "kind": "concurrency",
                    "backend": "null",
                    "levels": "4",
                    "tags": "t9",
                    "env": "CK_LOADGEN_MIN_DURATION_S=0.3",
                }
            }
        )
    )
    run = subprocess.run(
        [CK, "run", "script:ckvision-sweep", f"@{spec}"],
        env=ck_env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"queue wait ms", run.stdout)
    [record] = [r.record for r in iter_runs(_entries(ck_env, "t9", "sweep_concurrency"))]
    assert record["config"]["multistreamness"] == 4
    assert set(record["latency_histogram"]["breakdown"]) >= {"inference_ms", "queue_wait_ms"}
    bad = subprocess.run(
        [CK, "run", "script:ckvision-sweep", "@" + str(spec)],
        env={**ck_env},
        capture_output=True,
        text=True,
        timeout=60,
        input=None,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert bad.returncode == 0  # resumed: nothing to do


def test_peak_search_writes_reference_results(ck_env: dict[str, str], tmp_path: Path) -> None:
    run = cli(
        ck_env,
        "sweep",
        "peak",
        "--bounds",
        "1000",
        "--max-trials",
        "2",
        "--duration-s",
        "0.4",
        "--start-qps",
        "2000",  # 800 queries a trial: LoadGen's early stopping needs about 460 at p99
        "--out-dir",
        str(tmp_path),
        *SHORT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "check_accuracy accuracy=" in run.stdout
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("===RESULT: ")]
    assert [ln.split()[1] for ln in lines] == ["linear", "exponential"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["check_accuracy"]["total_items"] == 256  # sample set < 500: whole set
    for arrival in ("linear", "exponential"):
        assert results["results"][arrival]["1"]["qps"] > 0
        assert len(results["scan"][f"{arrival}/1"]) == 2
    trials = _entries(ck_env, "t9", "peak_poisson")
    assert len(trials) == 2  # every Poisson trial is a recorded entry
    (tmp_path.parent / "peak-results.json").write_text(json.dumps(results))


def test_bad_input_is_one_line(ck_env: dict[str, str]) -> None:
    for args, message in [
        (("sweep", "batch", "--batches", "8,4"), "is not increasing"),
        (("sweep", "peak", "--bounds", "0"), "must be > 0"),
        (("report", "--tags", "no-such-tag"), "no recorded runs match tags no-such-tag"),
    ]:
        run = cli(ck_env, *args)
        assert run.returncode != 0 and run.stdout == ""
        assert run.stderr.strip().count("\n") == 0 and message in run.stderr, run.stderr


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install -y chromium)"
)
def test_report_renders_in_headless_chromium(ck_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path.parent / "peak-results.json"
    out = tmp_path / "report.html"
    args = [
        "report",
        "--tags",
        "t9",
        "--compare",
        "sweep_batch",
        "--out",
        str(out),
        "--png-dir",
        str(tmp_path / "png"),
        "--csv",
        str(tmp_path / "runs.csv"),
    ]
    if results.is_file():
        args += ["--results", str(results)]
    run = cli(ck_env, *args)
    assert run.returncode == 0, run.stderr
    page = out.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    chrome = [
        "chromium",
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*chrome, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr
    tables = re.findall(r'<table class="data" data-caption="([^"]+)"', dom.stdout)
    assert {"runs", "batch sweep", "concurrency sweep", "a/b", "provenance"} <= set(tables)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom.stdout)
    assert {"throughput vs batch", "latency vs batch", "latency vs throughput", "A/B ratio"} <= set(
        images
    )
    if results.is_file():
        assert {"peak results", "peak trials"} <= set(tables) and "peak scan" in images
    assert len(list((tmp_path / "png").glob("*.png"))) == len(images)
    shot = tmp_path / "report.png"
    subprocess.run(
        [*chrome, "--window-size=1400,2400", f"--screenshot={shot}", out.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 50_000  # a blank page is a few KB
