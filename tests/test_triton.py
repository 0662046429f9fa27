"""Triton: generated repositories, a real tritonserver, LoadGen through HTTP / gRPC / shm.

One server per session (``triton_server`` in conftest) serves the tiny model from a
generated python-backend repository; runs are a few dozen samples. Where no triton env
exists (``make triton-venv``) the server tests skip with the reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TinyRun, tiny_logits

from ckvision.backends import BackendOptions, create_backend
from ckvision.config import Mode, Scenario
from ckvision.errors import BackendError, CkVisionError, ConfigError, DataError, ModelError
from ckvision.models.contract import ModelContract
from ckvision.triton.repository import RepoSpec, parse_pbtxt, write_repository

pytestmark = pytest.mark.timeout(120)


def _params(config: dict[str, Any]) -> dict[str, str]:
    items = config.get("parameters", [])
    items = items if isinstance(items, list) else [items]
    return {p["key"]: p["value"]["string_value"] for p in items}


@pytest.mark.parametrize("backend", ["python", "onnxruntime", "tensorrt"])
def test_config_pbtxt_parses_back_with_every_field(
    backend: str, tmp_path: Path, tiny_onnx_model: Path, tiny_contract: ModelContract
) -> None:
    model = tiny_onnx_model
    if backend == "tensorrt":
        model = tmp_path / "tiny.plan"
        model.write_bytes(b"engine")
    spec = RepoSpec(
        backend=backend,
        model_name="tiny_m",
        max_batch=16,
        preferred_batch=(4, 16),
        max_queue_delay_us=750,
        instances=3,
        kind="KIND_GPU" if backend == "tensorrt" else "KIND_CPU",
    )
    model_dir = write_repository(tmp_path / "repo", model, tiny_contract, spec)
    config = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    key = "platform" if backend == "tensorrt" else "backend"
    assert config[key] == {"tensorrt": "tensorrt_plan"}.get(backend, backend)
    assert config["name"] == "tiny_m" and config["max_batch_size"] == 16
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, 16, 16]}]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [4, 16],
        "max_queue_delay_microseconds": 750,
    }
    assert config["instance_group"] == [{"count": 3, "kind": spec.kind}]
    assert _params(config) == ({"ORT_THREADS": "1"} if backend == "python" else {})
    version = sorted(p.name for p in (model_dir / "1").iterdir())
    assert (
        version
        == {
            "python": ["model.onnx", "model.py"],
            "onnxruntime": ["model.onnx"],
            "tensorrt": ["model.plan"],
        }[backend]
    )


def test_repository_without_dynamic_batching_and_with_an_execution_env(
    tmp_path: Path, tiny_onnx_model: Path, tiny_contract: ModelContract
) -> None:
    spec = RepoSpec(dynamic_batching=False, execution_env=tmp_path / "env")
    config = parse_pbtxt(
        (
            write_repository(tmp_path / "r", tiny_onnx_model, tiny_contract, spec) / "config.pbtxt"
        ).read_text()
    )
    assert "dynamic_batching" not in config
    assert _params(config)["EXECUTION_ENV_PATH"] == str(tmp_path / "env")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "tf"}, "Triton backend 'tf' unknown"),
        ({"model_name": "a/b"}, "Triton model name 'a/b' must be"),
        ({"max_batch": 0}, "max batch must be >= 1"),
        ({"instances": 0}, "instances must be >= 1"),
        ({"preferred_batch": (9,)}, r"preferred batch sizes \[9\] must lie in 1..8"),
        ({"kind": "KIND_TPU"}, "instance kind 'KIND_TPU' unknown"),
    ],
)
def test_bad_repository_settings_are_one_line(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RepoSpec(**changes)


def test_a_model_that_does_not_fit_its_backend_or_contract_is_refused(
    tmp_path: Path, tiny_onnx_model: Path, tiny_contract: ModelContract
) -> None:
    with pytest.raises(ModelError, match="serves .plan files"):
        write_repository(
            tmp_path / "r", tiny_onnx_model, tiny_contract, RepoSpec(backend="tensorrt")
        )
    wide = ModelContract(name="tiny", image_size=16, resize_size=16, num_classes=1000)
    with pytest.raises(ModelError, match="outputs 10 classes but the contract says 1000"):
        write_repository(tmp_path / "r", tiny_onnx_model, wide, RepoSpec())
    assert not (tmp_path / "r" / "classifier").exists()


@pytest.fixture(scope="module")
def in_process_accuracy(
    tmp_path_factory: pytest.TempPathFactory,
    quick_config_m: Any,
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
) -> dict[str, Any]:

    backend = create_backend("onnxruntime", tiny_onnx_model, tiny_contract)
    with backend:
        result = tiny_run(
            quick_config_m(scenario=Scenario.OFFLINE),
            backend,
            tmp_path_factory.mktemp("ort"),
            log=lambda _: None,
        )
    assert result.accuracy is not None
    return result.accuracy


@pytest.fixture(scope="module")
def quick_config_m() -> Any:
    from ckvision.config import RunConfig

    def make(**changes: Any) -> RunConfig:
        values: dict[str, Any] = {
            "backend": "triton",
            "min_duration_s": 0.05,
            "max_duration_s": 10.0,
            "count_override": 32,
            "threads": 1,
            "target_qps": 500.0,
            "mode": Mode.ACCURACY,
        }
        values.update(changes)
        return RunConfig(**values)

    return make


@pytest.mark.parametrize(
    ("scenario", "protocol", "shm", "batch", "workers"),
    [
        (Scenario.SINGLE_STREAM, "http", "none", 1, 1),
        (Scenario.SINGLE_STREAM, "grpc", "none", 1, 1),
        (Scenario.OFFLINE, "grpc", "none", 8, 2),
        (Scenario.OFFLINE, "http", "system", 4, 2),
        (Scenario.SERVER, "grpc", "system", 2, 2),
        (Scenario.MULTI_STREAM, "http", "system", 4, 1),
    ],
)
def test_loadgen_through_triton_scores_as_in_process(
    scenario: Scenario,
    protocol: str,
    shm: str,
    batch: int,
    workers: int,
    tmp_path: Path,
    triton_server: Any,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config_m: Any,
    in_process_accuracy: dict[str, Any],
) -> None:

    config = quick_config_m(scenario=scenario, batch_size=batch, workers=workers)
    backend = create_backend(
        "triton", triton_server.repo, tiny_contract, triton_server.options(protocol, shm)
    )
    with backend:
        result = tiny_run(config, backend, tmp_path, log=lambda _: None)
        stats = backend.run_statistics()
    assert result.failures == 0 and result.accuracy is not None
    assert result.accuracy["top1"] == pytest.approx(75.0)
    assert result.accuracy == in_process_accuracy
    # every LoadGen sample went through the server, once; the breakdown adds up
    assert stats["inferences"] == result.accuracy["total"] == 40
    assert stats["requests"] == stats["client_requests"] > 0
    parts = sum(
        stats[f"server_{p}_us"]
        for p in ("queue", "compute_input", "compute_infer", "compute_output")
    )
    assert 0 < parts <= stats["server_total_us"] * 1.01
    assert stats["client_us"] == pytest.approx(
        stats["server_total_us"] + stats["client_remainder_us"]
    )
    assert stats["protocol"] == protocol and stats["shared_memory"] == shm


def test_program_with_a_managed_server_records_the_breakdown(
    tmp_path: Path,
    triton_server: Any,
    tiny_dataset: Any,
    quick_config_m: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ckvision.analysis.frame import _flatten
    from ckvision.program import resolve_inputs, run_program

    inputs = resolve_inputs(
        {}, "triton", triton_server.repo / "ckvision-triton.json", tiny_dataset.path
    )
    record = run_program(
        quick_config_m(scenario=Scenario.SINGLE_STREAM, count_override=8, mode=Mode.PERFORMANCE),
        inputs,
        tmp_path / "out",
        log=lambda _: None,
    )
    stats = record["backend"]["statistics"]
    assert stats["managed_server"] is True and stats["requests"] >= 8
    assert Path(stats["server_log"]) == tmp_path / "out" / "tritonserver.log"
    assert "Started GRPCInferenceService" in Path(stats["server_log"]).read_text()
    assert record["backend"]["versions"]["tritonserver"] == "2.51.0"
    row: dict[str, Any] = {}
    _flatten("", record, row)
    assert row["backend.statistics.server_queue_us"] >= 0
    from ckvision.analysis.console import print_run

    capsys.readouterr()
    print_run(record)
    assert f"({stats['requests']} requests, mean server batch 1.00)" in capsys.readouterr().out


def test_perf_analyzer_short_run_is_parsed(tmp_path: Path, triton_server: Any) -> None:
    from ckvision.triton.perf import PerfSpec, run_perf_analyzer
    from ckvision.triton.server import find_triton

    spec = PerfSpec(
        url=triton_server.grpc,
        batch=2,
        request_count=40,
        max_trials=10,
        stability_percent=500,  # a shared 2-core machine: numbers are noisy
        shared_memory="system",
        output_shm_bytes=2 * 10 * 4,
    )
    records = run_perf_analyzer(find_triton(), spec, tmp_path, timeout_s=90)
    assert len(records) == 1 and records[0]["tool"] == "perf_analyzer"
    row = records[0]["perf_analyzer"]
    assert row["concurrency"] == 1 and row["throughput"] > 0
    assert row["server_compute_infer_us"] > 0 and row["p99_latency_us"] >= row["p50_latency_us"]
    assert records[0]["config"]["batch_size"] == 2


def test_a_csv_that_is_not_perf_analyzers_is_one_line(tmp_path: Path) -> None:
    from ckvision.triton.perf import parse_perf_csv

    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="is not a perf_analyzer CSV"):
        parse_perf_csv(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("Concurrency,Inferences/Second\n1,fast\n")
    with pytest.raises(DataError, match="non-numeric"):
        parse_perf_csv(tmp_path / "y.csv")


# --- bad input: one line each, the server we started always stopped ---------------------


def _free_port() -> int:
    from ckvision.triton.server import free_port

    return free_port()


def _servers_on(repo: Path, copies_only: bool = False) -> list[int]:
    """Processes running a tritonserver on ``repo`` or on a copy of it (the retuned copies
    of a run and of the auto-tuner's probe link to its models): orphans, after a run."""
    pids = []
    flag = b"--model-repository="
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        served = [Path(a[len(flag) :].decode()) for a in args if a.startswith(flag)]
        if served and ((served[0] == repo and not copies_only) or _links_into(served[0], repo)):
            pids.append(int(cmdline.parent.name))
    return pids


def _links_into(copy: Path, repo: Path) -> bool:
    try:
        return copy != repo and any(
            p.is_symlink() and p.resolve().is_relative_to(repo.resolve()) for p in copy.glob("*/*")
        )
    except OSError:
        return False


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"triton_urls": ("127.0.0.1:{free}",), "triton_timeout_s": 1.0},
            BackendError,
            r"Triton server 127.0.0.1:\d+ not reachable within 1 s",
        ),
        (
            {"triton_urls": ("{http}",), "triton_model": "nope", "triton_timeout_s": 1.0},
            BackendError,
            r"Triton model 'nope' is not loaded on 127.0.0.1:\d+ \(not ready",
        ),
        ({"triton_urls": ("no such:1",)}, ConfigError, "'no such:1' is not host:port"),
        (
            {"triton_python": "/nonexistent/python"},
            BackendError,
            "Triton server not installed: cannot run /nonexistent/python",
        ),
    ],
)
def test_unusable_servers_are_one_line(
    options: dict[str, Any],
    error: type[CkVisionError],
    message: str,
    triton_server: Any,
    tiny_contract: ModelContract,
) -> None:
    if "triton_urls" in options:
        options = {
            **options,
            "triton_urls": tuple(
                u.format(free=_free_port(), http=triton_server.http) for u in options["triton_urls"]
            ),
        }
    backend = create_backend("triton", triton_server.repo, tiny_contract, BackendOptions(**options))
    with pytest.raises(error, match=message) as caught:
        backend.load()
    assert "\n" not in str(caught.value)
    backend.close()


def test_a_served_model_that_breaks_the_contract_is_refused(triton_server: Any) -> None:
    other = ModelContract(name="tiny", image_size=32, resize_size=32, num_classes=10)
    backend = create_backend("triton", triton_server.repo, other, triton_server.options())
    with pytest.raises(
        ModelError,
        match=r"takes FP32 \[3, 16, 16\], but the contract gives "
        r"FP32 \[3, 32, 32\]",
    ):
        backend.load()


def test_port_in_use_and_not_ready_in_time_stop_the_server(
    tmp_path: Path, triton_server: Any
) -> None:
    from ckvision.triton.server import TritonServer, find_triton, free_ports

    install = find_triton()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is in use"):
            TritonServer(
                install, triton_server.repo, tmp_path, ports=(port, *free_ports(2))
            ).start()
    server = TritonServer(install, triton_server.repo, tmp_path, ready_timeout_s=0.01)
    with pytest.raises(BackendError, match=r"not ready within 0.01 s"):
        server.start()
    assert server.proc is None
    assert len(_servers_on(triton_server.repo)) == 1  # only the session's server
    with pytest.raises(ConfigError, match="is not a Triton model repository"):
        TritonServer(install, tmp_path, tmp_path).start()


def test_ports_we_choose_are_chosen_again_when_lost_and_a_refusal_is_named(
    tmp_path: Path, triton_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ports we picked are free when picked, not when the server binds them: one the same
    as another (three binds of port 0 may repeat one; seen in CI) or taken in between is
    picked again; ports the user gave are not, and the refusal says why, not the usage
    text's "--load-model ... will result in error" line that it said before."""
    import ckvision.triton.server as server_module

    install = server_module.find_triton()
    one, two = server_module.free_ports(2)
    with pytest.raises(BackendError) as refused:
        server_module.TritonServer(
            install, triton_server.repo, tmp_path, ports=(one, one, two)
        ).start()
    assert "cannot listen to HTTP requests and GRPC requests at the same address and port" in str(
        refused.value
    )
    assert "load-model" not in str(refused.value)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([(one, one, two), (taken, one, two)])
        real = server_module.free_ports
        monkeypatch.setattr(server_module, "free_ports", lambda n: next(picks, None) or real(n))
        with server_module.TritonServer(install, triton_server.repo, tmp_path / "again") as server:
            assert len(set(server.ports or ())) == 3 and taken not in (server.ports or ())
            assert server.proc is not None and server.proc.poll() is None
        assert next(picks, "spent") == "spent"  # both bad picks were tried, then a third
    log = (tmp_path / "again" / server_module.LOG_NAME).read_text()
    assert "at the same address and port" in log and "Started HTTPService" in log


def test_requests_failing_mid_run_fail_the_run_with_every_sample_completed(
    tmp_path: Path,
    triton_server: Any,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config_m: Any,
) -> None:
    from ckvision.errors import RunError
    from ckvision.triton.client import TritonBackend

    backend = create_backend(
        "triton",
        triton_server.repo,
        tiny_contract,
        BackendOptions(run_dir=tmp_path, triton_timeout_s=5.0),
    )
    assert isinstance(backend, TritonBackend)

    def warmup_then_lose_the_server(batch: Any, iterations: int = 3) -> None:
        TritonBackend.warmup(backend, batch, iterations)
        backend._server.stop()

    backend.warmup = warmup_then_lose_the_server  # type: ignore[method-assign]
    with backend, pytest.raises(RunError, match=r"40 of 40 samples failed: Triton request"):
        tiny_run(
            quick_config_m(scenario=Scenario.OFFLINE, batch_size=4),
            backend,
            tmp_path,
            log=lambda _: None,
        )
    assert backend._server is None


def _program(repo: Path, dataset: Path, out: Path, **env: str) -> subprocess.Popen[str]:
    environ = {
        **os.environ,
        "CK_LOADGEN_MIN_DURATION_S": "0.05",
        "CK_LOADGEN_MODE": "PerformanceOnly",
        **env,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ckvision",
            "run",
            "--backend",
            "triton",
            "--model",
            str(repo / "ckvision-triton.json"),
            "--dataset",
            str(dataset),
            "--output-dir",
            str(out),
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_server(repo: Path, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not (_servers_on(repo) and log.is_file() and "Started HTTPService" in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the program's server did not start"
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["failed", "interrupted", "killed", "interrupted in the probe"])
def test_no_orphan_server_after_a_failed_interrupted_or_killed_run(
    how: str,
    tmp_path: Path,
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_dataset: Any,
    triton_server: Any,
) -> None:
    repo = tmp_path / "repo"
    write_repository(repo, tiny_onnx_model, tiny_contract, RepoSpec())
    out = tmp_path / "out"
    temp = tmp_path / "tmp"  # the run's temporary folders: none of ours left but a kill's
    temp.mkdir()
    if how == "failed":
        proc = _program(
            repo,
            tiny_dataset.path,
            out,
            CK_TRITON_MODEL="absent",
            CK_TRITON_TIMEOUT_S="1",
            TMPDIR=str(temp),
        )
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 5
        assert err.strip().splitlines() == [
            "ckvision: error: Triton model 'absent' is not loaded on "
            f"{err.split(' on ')[1].split(' ')[0]} (not ready within 1 s)"
        ]
    elif how == "interrupted in the probe":  # the auto-tuner's servers, several at once
        proc = _program(
            repo, tiny_dataset.path, out, CK_LOADGEN_SCENARIO="Offline", TMPDIR=str(temp)
        )
        deadline = time.monotonic() + 90
        while not _servers_on(repo, copies_only=True):  # a server-knob candidate is up
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the probe's servers did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert not (out / "tritonserver.log").exists()  # the run's own never started
    else:
        proc = _program(  # long enough to be under way when the signal comes
            repo,
            tiny_dataset.path,
            out,
            CK_LOADGEN_SCENARIO="Offline",
            CK_LOADGEN_TARGET_QPS="100000",
            CK_LOADGEN_MIN_DURATION_S="60",
            CK_TRITON_INSTANCES="1",  # given: the run's server serves its retuned copy
            CK_TRITON_MAX_QUEUE_DELAY_US="0",
        )
        _wait_for_server(repo, proc, out / "tritonserver.log")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT if how == "interrupted" else signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == (130 if how == "interrupted" else -signal.SIGKILL), err
    deadline = time.monotonic() + 15  # SIGKILL: the kernel's parent-death signal, async
    while _servers_on(repo) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _servers_on(repo) == []
    if how != "killed":  # ours: the probe's copies and logs, the servers' backend folders
        assert [p.name for p in temp.iterdir() if p.name.startswith("ckvision")] == []


def test_two_servers_share_the_requests_and_triton_server_stops_on_sigterm(
    tmp_path: Path,
    triton_server: Any,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config_m: Any,
    in_process_accuracy: dict[str, Any],
) -> None:
    """The scale-out path: `ckvision triton-server` on a second "machine", two URLs."""
    import tritonclient.http as http

    from ckvision.triton.server import free_ports

    ports = list(free_ports(3))  # distinct: three binds of port 0 may repeat one
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ckvision",
            "triton-server",
            "--repository",
            str(triton_server.repo),
            "--log-dir",
            str(tmp_path),
            "--ports",
            ",".join(map(str, ports)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"tritonserver ready: http 127.0.0.1:{ports[0]}"), (
            line + proc.stderr.read() if proc.stderr else line
        )
        second = f"127.0.0.1:{ports[0]}"
        options = BackendOptions(triton_urls=(triton_server.http, second), triton_timeout_s=20.0)
        with create_backend("triton", triton_server.repo, tiny_contract, options) as backend:
            result = tiny_run(
                quick_config_m(scenario=Scenario.OFFLINE, batch_size=2, workers=2),
                backend,
                tmp_path / "run",
                log=lambda _: None,
            )
            stats = backend.run_statistics()
        assert result.accuracy == in_process_accuracy and stats["inferences"] == 40
        client = http.InferenceServerClient(second)
        served = client.get_inference_statistics("classifier")["model_stats"][0]
        client.close()
        assert 0 < served["inference_count"] < 40 + 3 * 2  # its share (+ its warm-up)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(_servers_on(triton_server.repo)) == 1  # only the session's server is left


@pytest.mark.parametrize(("protocol", "shm"), [("http", "system"), ("grpc", "none")])
def test_many_threads_at_once_give_the_serial_results(
    protocol: str, shm: str, triton_server: Any, tiny_contract: ModelContract
) -> None:
    """Per-thread clients and shared-memory regions: no request sees another's data."""
    rng = np.random.default_rng(5)
    batches = [rng.normal(size=(n, 3, 16, 16)).astype(np.float32) for n in (1, 3, 5, 8) * 4]
    errors: list[BaseException] = []
    with create_backend(
        "triton", triton_server.repo, tiny_contract, triton_server.options(protocol, shm)
    ) as backend:
        serial = [backend.predict(b) for b in batches]

        def work(worker: int) -> None:
            try:
                for _ in range(10):
                    for i in range(worker, len(batches), 6):
                        np.testing.assert_array_equal(backend.predict(batches[i]), serial[i])
            except BaseException as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with pytest.raises(BackendError, match=r"^backend triton: batch of float64; model tiny"):
            backend.predict(batches[0].astype(np.float64))
        with pytest.raises(
            BackendError,
            match=r"^backend triton: batch of 9 is above the "
            r"Triton model's max batch 8",
        ):
            backend.predict(np.zeros((9, 3, 16, 16), np.float32))
    assert not errors, errors[0]
    for batch, out in zip(batches, serial, strict=True):
        np.testing.assert_allclose(out, tiny_logits(batch), rtol=1e-5, atol=1e-5)


def test_statistics_snapshots_from_grpc_strings_diff_into_per_request_times() -> None:
    from ckvision.triton.stats import breakdown, snapshot

    def raw(n: int, scale: int, as_str: bool) -> dict[str, Any]:
        num = str if as_str else int
        phases = {
            p: {"count": num(n), "ns": num(n * scale * k)}
            for k, p in enumerate(
                ("success", "queue", "compute_input", "compute_infer", "compute_output"), start=1
            )
        }
        return {
            "model_stats": [
                {"name": "other"},
                {
                    "name": "m",
                    "inference_count": num(4 * n),
                    "execution_count": num(n),
                    "inference_stats": phases,
                },
            ]
        }

    before = [snapshot(raw(10, 1000, True), "m"), snapshot(raw(5, 1000, False), "m")]
    after = [snapshot(raw(30, 1000, True), "m"), snapshot(raw(5, 1000, False), "m")]
    out = breakdown(before, after, client_requests=20, client_ns=20 * 3000)
    assert out["requests"] == 20 and out["inferences"] == 80 and out["avg_server_batch"] == 4
    assert (out["server_total_us"], out["server_queue_us"], out["server_compute_infer_us"]) == (
        1.0,
        2.0,
        4.0,
    )
    assert out["client_us"] == 3.0 and out["client_remainder_us"] == 2.0
    assert snapshot(raw(1, 1, False), "absent") == {}
    assert breakdown([{}], [{}], 0, 0)["requests"] == 0


def test_perf_analyzer_command_line(tmp_path: Path) -> None:
    from ckvision.triton.perf import PerfSpec, perf_command

    spec = PerfSpec(
        model="m",
        url="h:1",
        protocol="http",
        batch=4,
        concurrency=(1, 8, 2),
        shared_memory="system",
        output_shm_bytes=160,
    )
    args = perf_command(Path("/pa"), spec, tmp_path / "o.csv")
    assert args[:9] == ["/pa", "-m", "m", "-i", "http", "-u", "h:1", "-b", "4"]
    assert "1:8:2" in args and args[-4:] == [
        "--shared-memory",
        "system",
        "--output-shared-memory-size",
        "160",
    ]
    with pytest.raises(ConfigError, match="start <= end"):
        PerfSpec(concurrency=(4, 2, 1))


def test_knobs_reach_every_served_config_and_the_ensemble_is_left_alone(
    tmp_path: Path, tiny_onnx_model: Path, tiny_contract: ModelContract
) -> None:
    """CK_TRITON_INSTANCES / CK_TRITON_MAX_QUEUE_DELAY_US: a retuned copy of a repository
    (links to the model files, configs rewritten), whatever the config held before."""
    from ckvision.triton.ensemble import EnsembleSpec, write_ensemble
    from ckvision.triton.knobs import Knobs, retuned_repository, served_knobs

    repo = tmp_path / "repo"
    spec = RepoSpec(backend="python", max_batch=8, dynamic_batching=False)
    write_repository(repo, tiny_onnx_model, tiny_contract, spec)
    write_ensemble(repo, tiny_contract, EnsembleSpec(engine="pillow", max_batch=8))
    copy = retuned_repository(repo, tmp_path / "copy", Knobs(3, 250, 2))
    for name in ("classifier", "preprocess"):
        config = parse_pbtxt((copy / name / "config.pbtxt").read_text())
        threads = {"preprocess_threads": 2} if name == "preprocess" else {}  # its step only
        assert served_knobs(config) == {"instances": 3, "max_queue_delay_us": 250, **threads}
        assert (copy / name / "1").resolve() == (repo / name / "1").resolve()
    ensemble = (copy / "classifier_jpeg" / "config.pbtxt").read_text()
    assert ensemble == (repo / "classifier_jpeg" / "config.pbtxt").read_text()
    assert (copy / "ckvision-triton.json").resolve() == (repo / "ckvision-triton.json").resolve()
    # the original is untouched, and an unset knob keeps the repository's value
    assert served_knobs(parse_pbtxt((repo / "classifier" / "config.pbtxt").read_text())) == {
        "instances": 1,
        "max_queue_delay_us": None,
    }
    half = retuned_repository(repo, tmp_path / "half", Knobs(instances=2))
    assert served_knobs(parse_pbtxt((half / "preprocess" / "config.pbtxt").read_text())) == {
        "instances": 2,
        "max_queue_delay_us": 0,
        "preprocess_threads": 1,
    }


def test_a_managed_server_serves_the_runs_knobs_and_records_them(
    tmp_path: Path,
    triton_server: Any,
    tiny_dataset: Any,
    quick_config_m: Any,
) -> None:
    from ckvision.program import resolve_inputs, run_program

    inputs = resolve_inputs(
        {}, "triton", triton_server.repo / "ckvision-triton.json", tiny_dataset.path
    )
    config = quick_config_m(
        scenario=Scenario.OFFLINE,
        batch_size=4,
        triton_instances=2,
        triton_max_queue_delay_us=100,
    )
    record = run_program(config, inputs, tmp_path / "out", log=lambda _: None)
    served = record["backend"]["statistics"]["served_models"]
    assert served == {"classifier": {"instances": 2, "max_queue_delay_us": 100}}
    assert record["config"]["triton_instances"] == 2
    assert record["accuracy"]["top1"] == pytest.approx(75.0)
    # the run's own copy of the repository: the session's repository is untouched
    assert (tmp_path / "out" / "triton-repository" / "classifier" / "config.pbtxt").is_file()
    assert "count: 1 " in (triton_server.repo / "classifier" / "config.pbtxt").read_text()


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"triton_instances": 3}, r"model 'classifier' runs 1 instances, CK_TRITON_INSTANCES=3"),
        (
            {"triton_max_queue_delay_us": 7},
            r"model 'classifier' waits up to 500 us, CK_TRITON_MAX_QUEUE_DELAY_US=7",
        ),
        (
            {"triton_preprocess_threads": 2},
            r"no served model preprocesses \(CK_TRITON_PREPROCESS_THREADS is for a JPEG-in",
        ),
    ],
)
def test_a_server_by_url_serving_other_knobs_is_refused(
    knobs: dict[str, int], message: str, triton_server: Any, tiny_contract: ModelContract
) -> None:
    options = BackendOptions(triton_urls=(triton_server.http,), **knobs)  # type: ignore[arg-type]
    backend = create_backend("triton", triton_server.repo, tiny_contract, options)
    with pytest.raises(ConfigError, match=message) as caught:
        backend.load()
    assert "\n" not in str(caught.value) and "its repository decides" in str(caught.value)
    backend.close()
    same = BackendOptions(
        triton_urls=(triton_server.http,), triton_instances=1, triton_max_queue_delay_us=500
    )
    with create_backend("triton", triton_server.repo, tiny_contract, same) as backend:
        assert backend.served == {"classifier": {"instances": 1, "max_queue_delay_us": 500}}
