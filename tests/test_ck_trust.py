"""Trust through the real ``ck`` 2.6.4: hostile values are never executed, failures exit
non-zero and record nothing, concurrent records do not collide, and kills lose nothing.

One temporary CK_REPOS/CK_TOOLS for the module (``ckvision ck-setup`` installs the real
EfficientNet-Lite0 export and the sample set). Every hostile value tries to run
``touch $MARKER``; ``MARKER`` is in the environment of every ck command, so whichever
shell script CK writes would create it.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from ckcli import CK
from ckcli import ck as run_ck
from local_http import serve

from ckvision.analysis import load_experiments
from ckvision.backends.registry import BACKENDS
from ckvision.ck.setup import PYTHON_SOFT_UID
from ckvision.models.registry import RESNET50_ONNX_MD5

pytestmark = pytest.mark.slow
PROGRAM = f"program:{BACKENDS['onnxruntime'].program}"  # the registry's, not a copy
REFUSED = "which CK would write unescaped into a shell script"
FAST_RUN = ("--env.CK_LOADGEN_DATASET_SIZE=8",)  # SingleStream accuracy on 8 images
LONG_RUN = (
    "--env.CK_LOADGEN_MODE=PerformanceOnly",
    "--env.CK_LOADGEN_COUNT_OVERRIDE=300",
    "--env.CK_LOADGEN_MIN_DURATION_S=1",
)  # 300 SingleStream queries: a few seconds

# Command substitution, backticks, ';' after a closing quote, a newline.
HOSTILE = {
    "dollar-paren": "$(touch $MARKER)",
    "backticks": "`touch $MARKER`",
    "quote-semicolon": 'a";touch $MARKER;"',
    "newline": "a\ntouch $MARKER",
}


@pytest.fixture()
def ck_env(ck_session_env: dict[str, str]) -> dict[str, str]:
    return ck_session_env


def ck(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """ck run from inside CK_REPOS: nothing a hostile value writes lands in the checkout."""
    return run_ck(env, *args, timeout=timeout, cwd=env["CK_REPOS"])


def benchmark_args(record_uoa: str, *extra: str) -> list[str]:
    return [
        "benchmark",
        PROGRAM,
        "--repetitions=1",
        *FAST_RUN,
        "--record",
        "--record_repo=local",
        f"--record_uoa={record_uoa}",
        "--tags=ckvision,trust",
        "--skip_print_timers",
        "--skip_stat_analysis",
        "--process_multi_keys",
        "--quiet",
        *extra,
    ]


def experiments(env: dict[str, str]) -> Path:
    return Path(env["CK_REPOS"]) / "local" / "experiment"


def env_entries(env: dict[str, str]) -> set[str]:
    return {p.name for p in (Path(env["CK_REPOS"]) / "local" / "env").iterdir()}


def error_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    text = out.stdout + out.stderr
    return [ln for ln in text.splitlines() if ln.startswith(("ckvision: error:", "CK error:"))]


@pytest.fixture()
def served_resnet(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server with a file named like the real model (not its bytes)."""
    root = tmp_path / "mirror"
    root.mkdir()
    (root / "resnet50_v1.onnx").write_bytes(b"not the MLPerf model" * 1000)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    with serve(handler) as url:
        yield url


# ---------------------------------------------------------------------------------------
# 2. Nothing a user gives us is executed


def _hostile_dir(tmp: Path, value: str) -> Path:
    folder = tmp / f"in{value}folder"
    folder.mkdir()
    return folder


def _soft_detection(env: dict[str, str], tmp: Path, value: str) -> list[str]:
    """A Python found on disk in a folder with a hostile name."""
    folder = _hostile_dir(tmp, value)
    (folder / "python3").symlink_to(sys.executable)
    return [
        "detect",
        f"soft:{PYTHON_SOFT_UID}",  # ours by UID: upstream's compiler.python shares its tags
        f"--full_path={folder}/python3",
        "--extra_tags=hostile",
        "--quiet",
    ]


def _user_conf(env: dict[str, str], tmp: Path, value: str) -> list[str]:
    """The user.conf the script entry's pre-processing applies, in a hostile folder."""
    conf = _hostile_dir(tmp, value) / "user.conf"
    conf.write_text("# empty\n")
    return ["run", PROGRAM, *FAST_RUN, f"--env.CK_LOADGEN_USER_CONF={conf}", "--quiet"]


ENTRY_KINDS = {
    "program-run": lambda env, tmp, v: ["run", PROGRAM, *FAST_RUN, f"--env.CKX={v}", "--quiet"],
    "program-run-name": lambda env, tmp, v: ["run", PROGRAM, *FAST_RUN, f"--env.X{v}=1", "--quiet"],
    "ck-benchmark": lambda env, tmp, v: benchmark_args("hostile", f"--env.CKX={v}"),
    "package-install": lambda env, tmp, v: [
        "install",
        "package",
        "--tags=model,onnx,resnet50",
        f"--env.IMAGENET_VAL_DIR={v}",
        "--quiet",
    ],
    "package-install-tags": lambda env, tmp, v: [
        "install",
        "package",
        "--tags=model,onnx,resnet50",
        f"--extra_tags=x{v}",
        "--quiet",
    ],
    "soft-detection": _soft_detection,
    "script-user-conf": _user_conf,
}


def _hostile_case(ck_env: dict[str, str], tmp: Path, kind: str, name: str) -> str | None:
    """Run one table cell with its own MARKER; None when it was refused as it should be."""
    case = tmp / f"{kind}-{name}"
    case.mkdir()
    env = dict(ck_env, MARKER=str(case / "EXECUTED"))
    out = ck(env, *ENTRY_KINDS[kind](env, case, HOSTILE[name]), timeout=240)
    lines = error_lines(out)
    problems = []
    if (case / "EXECUTED").exists():
        problems.append("EXECUTED")
    if out.returncode == 0:
        problems.append("exit 0")
    if len(lines) != 1 or REFUSED not in lines[0]:
        problems.append(f"error lines {lines}")
    if "Traceback" in out.stdout + out.stderr:
        problems.append("traceback")
    tail = (out.stdout + out.stderr)[-1500:]
    return f"{kind}/{name}: {', '.join(problems)}\n{tail}" if problems else None


@pytest.mark.timeout(600)
def test_hostile_values_are_refused_with_one_line_and_never_run(
    ck_env: dict[str, str], tmp_path: Path
) -> None:
    """The table: every entry kind we ship x every hostile value (3 cells at a time)."""
    envs_before = env_entries(ck_env)
    cells = [(kind, name) for kind in ENTRY_KINDS for name in HOSTILE]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda c: _hostile_case(ck_env, tmp_path, *c), cells))
    assert [r for r in results if r] == []
    assert len(results) == len(ENTRY_KINDS) * len(HOSTILE)
    assert not (experiments(ck_env) / "hostile").exists()
    assert env_entries(ck_env) == envs_before
    assert not list(Path(ck_env["CK_TOOLS"]).glob("*resnet50*"))


def test_benchmark_tags_are_stored_never_run(ck_env: dict[str, str]) -> None:
    """``ck benchmark --tags`` never reaches a shell: a hostile tag is recorded as text."""
    tag = HOSTILE["dollar-paren"]
    args = benchmark_args("hostile-tags")
    args[args.index("--tags=ckvision,trust")] = f"--tags=ckvision,{tag}"
    out = ck(ck_env, *args)
    assert out.returncode == 0, out.stdout[-2000:]
    assert not Path(ck_env["MARKER"]).exists()
    meta = json.loads((experiments(ck_env) / "hostile-tags" / ".cm" / "meta.json").read_text())
    assert tag in meta["tags"]


def test_spaces_and_non_ascii_paths_still_work(
    ck_env: dict[str, str], tmp_path: Path, served_resnet: str
) -> None:
    folder = tmp_path / "my dïr ünïcode"
    folder.mkdir()
    # program run: a user.conf in that folder is accepted and applied
    conf = folder / "user.conf"
    conf.write_text("# nothing to override\n")
    run = ck(ck_env, "run", PROGRAM, *FAST_RUN, f"--env.CK_LOADGEN_USER_CONF={conf}", "--quiet")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "accuracy=" in run.stdout
    # package install: the value passes our guard (the download then fails its md5 check)
    install = ck(
        ck_env,
        "install",
        "package",
        "--tags=model,onnx,resnet50",
        f"--env.IMAGENET_VAL_DIR={folder}",
        f"--env.CKVISION_MODEL_MIRROR={served_resnet}",
        "--quiet",
    )
    assert install.returncode != 0
    assert f"resnet50_v1.onnx: expected md5 {RESNET50_ONNX_MD5}" in install.stderr
    assert REFUSED not in install.stdout + install.stderr
    # soft detection: its env.sh, sourced by bash, gives the path back intact. The entry
    # is removed again: a second Python env would be a candidate for every later run.
    (folder / "python3").symlink_to(sys.executable)
    detect = ck(
        ck_env,
        "detect",
        f"soft:{PYTHON_SOFT_UID}",  # ours by UID: upstream's compiler.python shares its tags
        f"--full_path={folder}/python3",
        "--extra_tags=spaced",
        "--quiet",
    )
    assert detect.returncode == 0, detect.stdout[-2000:]
    found = ck(ck_env, "search", "env", "--tags=compiler,lang-python,spaced").stdout.split()
    uid = found[-1].split(":")[-1]
    env_sh = Path(ck_env["CK_REPOS"]) / "local" / "env" / uid / "env.sh"
    script = f'. "{env_sh}" && printf %s "$CK_ENV_COMPILER_PYTHON_FILE"'
    sourced = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30, env=ck_env
    )
    assert ck(ck_env, "rm", f"env:{uid}", "--force").returncode == 0
    assert sourced.stdout == f"{folder}/python3"
    assert not Path(ck_env["MARKER"]).exists()


# ---------------------------------------------------------------------------------------
# 3. Failures are visible and record nothing; runs are isolated


def test_failed_run_exits_non_zero_and_records_nothing(ck_env: dict[str, str]) -> None:
    # the run itself fails (no TensorRT engine); CK alone would exit 0 without the flag
    for flags in ((), ("--return_error_if_external_fail=yes",)):
        run = ck(ck_env, "run", PROGRAM, *FAST_RUN, "--env.CK_BACKEND=tensorrt", "--quiet", *flags)
        assert run.returncode == 6, flags
        lines = error_lines(run)
        assert any("the run failed or was interrupted" in ln for ln in lines), lines
    bench = ck(ck_env, *benchmark_args("failed", "--env.CK_BACKEND=tensorrt"))
    assert bench.returncode == 6
    bad = ck(ck_env, *benchmark_args("failed", "--env.CK_BATCH_SIZE=zero"))
    assert bad.returncode == 2
    lines = error_lines(bad)
    assert len(lines) == 1 and "CK_BATCH_SIZE='zero' is not an integer" in lines[0]
    assert not (experiments(ck_env) / "failed").exists()


def _runs_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "program" / PROGRAM.split(":")[1] / "runs"


def _start_benchmark(env: dict[str, str], name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CK, *benchmark_args(name, *extra)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=env["CK_REPOS"],
    )


def _wait_for_new_run_dir(before: set[Path], timeout_s: float = 120) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(_runs_dir().glob("run-*")) - before
        if new:
            return new.pop()
        time.sleep(0.1)
    raise AssertionError("no run directory appeared")


@pytest.mark.timeout(300)
def test_concurrent_records_both_land_with_their_own_logs(ck_env: dict[str, str]) -> None:
    """A is running when B and C start (ck benchmark wipes CK's tmp/ when it starts)."""
    _runs_dir().mkdir(exist_ok=True)
    before = set(_runs_dir().glob("run-*"))
    first = _start_benchmark(ck_env, "conc-a", *LONG_RUN)
    _wait_for_new_run_dir(before)
    procs = [first, _start_benchmark(ck_env, "conc-a"), _start_benchmark(ck_env, "conc-b")]
    outputs = [p.communicate(timeout=280)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[-2000:] for o in outputs]
    run_dirs = {
        ln.split()[-1]
        for o in outputs
        for ln in o.splitlines()
        if ln.startswith("ckvision: run directory ")
    }
    assert len(run_dirs) == 3
    frame = load_experiments([experiments(ck_env) / "conc-a", experiments(ck_env) / "conc-b"])
    assert sorted(frame["entry"]) == ["conc-a", "conc-a", "conc-b"]
    assert sorted(frame["loadgen.mode"]) == ["AccuracyOnly", "AccuracyOnly", "PerformanceOnly"]
    assert sorted(frame["accuracy.total"].dropna()) == [8, 8]
    pids = set()
    for path in frame["path"]:
        record = json.loads(Path(path).read_text())["characteristics_list"][0]["run"]
        detail = record["logs"]["mlperf_log_detail.txt"]
        pids.add(detail.split('"pid": ')[1].split(",")[0])
    assert len(pids) == 3  # each point holds the logs of its own process


# ---------------------------------------------------------------------------------------
# 3. Kill at any moment


def _run_dirs_hold_no_false_result(before: set[Path]) -> list[str]:
    """Each new run dir is either a finished run or plainly marked as not one."""
    from ckvision.ck.hooks.program import INCOMPLETE

    bad = []
    for run in set(_runs_dir().glob("run-*")) - before:
        finished = (run / "tmp-ck-timer.json").is_file()
        if finished:
            json.loads((run / "tmp-ck-timer.json").read_text())  # whole, never cut short
            if (run / INCOMPLETE).exists():
                bad.append(f"{run}: finished but still marked incomplete")
        elif not (run / INCOMPLETE).exists():
            bad.append(f"{run}: unfinished but not marked")
    return bad


def _loadable(env: dict[str, str], name: str) -> int:
    """Points of entry ``name``; fails on any warning or if ck cannot load the entry."""
    warnings: list[str] = []
    frame = load_experiments([experiments(env) / name], warn=warnings.append)
    assert warnings == []
    assert ck(env, "load", f"experiment:{name}").returncode == 0
    return len(frame)


@pytest.mark.timeout(420)
def test_sigkill_at_any_moment_of_a_record_loses_nothing(ck_env: dict[str, str]) -> None:
    assert ck(ck_env, *benchmark_args("killed")).returncode == 0
    points = _loadable(ck_env, "killed")
    before = set(_runs_dir().glob("run-*"))
    for delay in (1.0, 2.5, 4.0, 5.5, 7.0):  # deps, pre-processing, run, post, record
        proc = subprocess.Popen(
            [CK, *benchmark_args("killed")],
            env=ck_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=ck_env["CK_REPOS"],
            start_new_session=True,
        )
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # ck and the run it started
        proc.wait(timeout=30)
        now = _loadable(ck_env, "killed")
        assert now in (points, points + 1)  # the kill came before or after the record
        points = now
    assert _run_dirs_hold_no_false_result(before) == []
    started = time.monotonic()
    again = ck(ck_env, *benchmark_args("killed"))
    assert again.returncode == 0, again.stdout[-2000:]
    assert time.monotonic() - started < 90
    assert _loadable(ck_env, "killed") == points + 1


@pytest.mark.timeout(300)
def test_a_dead_records_lock_does_not_stall_the_next_record(ck_env: dict[str, str]) -> None:
    """CK alone fails for good on a lock cut short, and waits 120 s for a fresh one."""
    assert ck(ck_env, *benchmark_args("locked")).returncode == 0
    lock = experiments(ck_env) / "locked" / ".cm" / "ck_lock.txt"
    for points, lock_text in enumerate(["", "0123456789abcdef\n120.0\n"], start=2):
        lock.write_text(lock_text)
        started = time.monotonic()
        out = ck(ck_env, *benchmark_args("locked"))
        elapsed = time.monotonic() - started
        assert out.returncode == 0, out.stdout[-2000:]
        assert elapsed < 75, elapsed
        assert not lock.exists()
        assert _loadable(ck_env, "locked") == points


@pytest.mark.timeout(120)
def test_one_ctrl_c_stops_a_run_within_seconds(ck_env: dict[str, str]) -> None:
    before = set(_runs_dir().glob("run-*")) if _runs_dir().is_dir() else set()
    proc = subprocess.Popen(
        [
            CK,
            "run",
            PROGRAM,
            "--env.CK_LOADGEN_MODE=PerformanceOnly",
            "--env.CK_LOADGEN_MIN_DURATION_S=120",
            "--quiet",
        ],
        env=ck_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=ck_env["CK_REPOS"],
        start_new_session=True,
    )
    run_dir = _wait_for_new_run_dir(before)
    time.sleep(4)  # LoadGen is running
    os.killpg(proc.pid, signal.SIGINT)  # what one Ctrl-C in the terminal sends
    started = time.monotonic()
    output = proc.communicate(timeout=60)[0]
    assert time.monotonic() - started < 10
    assert proc.returncode != 0
    assert "Traceback" not in output
    assert output.count("ckvision: error:") == 1
    assert "the run was interrupted (Ctrl-C)" in output
    assert not (run_dir / "tmp-ck-timer.json").exists()
    assert not list(run_dir.glob("mlperf_log_*"))  # renamed INCOMPLETE-mlperf_log_*


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves 8 MiB named like the real model, slowly enough to be killed mid-download."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        size, chunk = 8 << 20, 64 << 10
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(size // chunk):
                self.wfile.write(b"x" * chunk)
                time.sleep(0.05)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.mark.timeout(180)
def test_sigkill_during_a_package_install_leaves_nothing_behind(
    ck_env: dict[str, str], served_resnet: str
) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    install_dir = Path(ck_env["CK_TOOLS"]) / "model-onnx-resnet50-mlperf-download"
    args = ["install", "package", "--tags=model,onnx,resnet50", "--quiet"]
    try:
        slow = f"--env.CKVISION_MODEL_MIRROR=http://127.0.0.1:{httpd.server_address[1]}"
        proc = subprocess.Popen(
            [CK, *args, slow],
            env=ck_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=ck_env["CK_REPOS"],
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while not list(install_dir.glob(".model.onnx.*.part")) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert list(install_dir.glob(".model.onnx.*.part"))  # killed mid-download
    assert not (install_dir / "model.onnx").exists()
    listed = ck(ck_env, "search", "env", "--tags=model,onnx,resnet50").stdout
    assert ":env:" not in listed  # nothing registered
    again = ck(ck_env, *args, f"--env.CKVISION_MODEL_MIRROR={served_resnet}")
    assert again.returncode != 0 and "expected md5" in again.stderr
    assert [p.name for p in install_dir.iterdir() if p.name.startswith(".")] == []
    # what was installed before is untouched and still usable
    run = ck(ck_env, "run", PROGRAM, *FAST_RUN, "--quiet")
    assert run.returncode == 0 and "accuracy=" in run.stdout
