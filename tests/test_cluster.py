"""Sweeps on a real local Ray cluster (issue 21): real raylets, real LoadGen, tiny model.

One cluster per module: a head node without the exclusive slot (it can never be
killed mid-test) and two worker nodes with ``ckvision_slot=1`` and 1 CPU each, every
node with its own input cache (``CKVISION_CLUSTER_CACHE``), so the model and dataset
really travel through the object store. Every address is 127.0.0.1
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` before Ray starts, see shared/ray.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only, before Ray starts
ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ckvision[cluster]'")

from cluster_common import QUICK, tiny_inputs  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from ckvision.cluster import SLOT, ClusterPointRunner  # noqa: E402
from ckvision.cluster.node import RUNS_DIR  # noqa: E402
from ckvision.errors import ConfigError  # noqa: E402
from ckvision.experiments.entries import experiment_root, find_entries, iter_runs  # noqa: E402
from ckvision.models.contract import ModelContract  # noqa: E402
from ckvision.sweeps import batch_sweep, sweep_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _cmdlines() -> dict[int, str]:
    """Every process's command line, from /proc (what ps shows)."""
    out: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                raw = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            out[int(proc.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return out


def _points_running() -> list[int]:
    return [pid for pid, cmd in _cmdlines().items() if "ckvision.cluster.child" in cmd]


def _wait_for(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    caches = tmp_path_factory.mktemp("node-caches")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    session = c.head_node.get_session_dir_path()
    nodes = [
        c.add_node(
            num_cpus=1,
            resources={SLOT: 1},
            env_vars={"CKVISION_CLUSTER_CACHE": str(caches / f"node{i}")},
        )
        for i in range(2)
    ]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
    try:
        yield {"cluster": c, "nodes": nodes, "caches": caches}
    finally:
        ray.shutdown()
        c.shutdown()
    left = _wait_for(
        lambda: not [cmd for cmd in _cmdlines().values() if session in cmd] or None,
        20,
        f"processes of {session} outlived the cluster",
    )
    assert left


@pytest.fixture()
def inputs(
    tmp_path: Path, tiny_onnx_model: Path, tiny_contract: ModelContract, tiny_dataset: Any
) -> Any:
    """The tiny model with its sidecar (the contract travels with it) and the tiny data."""
    return tiny_inputs(tmp_path, tiny_onnx_model, tiny_contract, tiny_dataset)


@pytest.fixture()
def ck_repos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CK_REPOS", str(tmp_path / "repos"))
    return experiment_root()


def _runner(inputs: Any, log: list[str], env: dict[str, str] | None = None, **kw: Any) -> Any:
    runner = ClusterPointRunner(
        "onnxruntime", ["test"], {**QUICK, **(env or {})}, {"v": 1}, inputs, log=log.append, **kw
    )
    runner.attach(ray)
    return runner


@pytest.mark.timeout(90)
def test_sweep_spreads_over_nodes_one_point_per_node_at_a_time_and_resumes(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path
) -> None:
    log: list[str] = []
    results = batch_sweep(_runner(inputs, log), [1, 2, 4, 8])
    assert [r.record["config"]["batch_size"] for r in results] == [1, 2, 4, 8]
    by_node: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        node = r.record["cluster"]
        by_node.setdefault(node["node_id"], []).append((node["started"], node["finished"]))
    assert len(by_node) == 2, f"all points on one node: {log}"
    for spans in by_node.values():  # the exclusive slot: no two points overlap on a node
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
    # every node got the inputs through the object store into its own cache
    assert all((cluster["caches"] / f"node{i}" / "inputs").is_dir() for i in range(2))
    assert all(not any((cluster["caches"] / f"node{i}" / RUNS_DIR).iterdir()) for i in range(2))
    # recorded on the driver as CK entries, read back like a local sweep's
    runs = list(iter_runs(find_entries(tags=["sweep", "cluster", "batch"])))
    assert sorted(run.record["config"]["batch_size"] for run in runs) == [1, 2, 4, 8]
    assert all(run.record["provenance"]["versions"]["onnxruntime"] for run in runs)
    assert all(run.record["loadgen"]["result_validity"] for run in runs)
    table = sweep_table(results, "batch")
    assert table["node"].nunique() == 2 and list(table["samples/s"].notna()) == [True] * 4
    # the driver killed while writing one entry: its half entry is removed, the rest skipped
    half = ck_repos / results[0].entry
    for point_file in half.glob("ckp-*"):
        point_file.unlink()
    log.clear()
    again = batch_sweep(_runner(inputs, log), [1, 2, 4, 8])
    assert [r.skipped for r in again] == [False, True, True, True], log
    assert any("removing the unfinished entry" in line for line in log)
    assert len(list(iter_runs(find_entries(tags=["sweep", "cluster"])))) == 4


@pytest.mark.timeout(60)
def test_each_node_runs_the_point_on_every_node_and_rows_group_by_node(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path
) -> None:
    log: list[str] = []
    runner = _runner(inputs, log, each_node=True)
    results = batch_sweep(runner, [1, 2])
    nodes = [r.record["cluster"]["node_id"] for r in results]
    assert len(set(nodes)) == 2 and sorted(nodes) == nodes, nodes  # grouped by node
    assert [r.point.node_id for r in results] == nodes  # each ran where it was pinned
    assert len({r.entry for r in results}) == 4  # one entry per node and point
    table = sweep_table(results, "batch")
    assert list(table["node"]) == sorted(table["node"]) and table["node"].nunique() == 2
    runs = list(iter_runs(find_entries(tags=["cluster"])))
    assert len({t for run in runs for t in run.tags if t.startswith("node.")}) == 2


@pytest.mark.timeout(90)
def test_a_node_that_cannot_prepare_says_so_once_and_gets_no_point(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the node's cache should be")
    c = cluster["cluster"]
    node = c.add_node(
        num_cpus=1, resources={SLOT: 1}, env_vars={"CKVISION_CLUSTER_CACHE": str(blocked)}
    )
    try:
        c.wait_for_nodes()
        log: list[str] = []
        fleet = _runner(inputs, log, each_node=True)
        said = [line for line in log if "cannot prepare the model and dataset" in line]
        assert len(said) == 1 and node.node_id[:8] in said[0] and "not-a-dir" in said[0]
        assert fleet.bad_nodes.keys() == {node.node_id} and len(fleet.ready) == 2
        results = batch_sweep(fleet, [1])  # once per node: the bad node's is not run
        assert len(results) == 2 and node.node_id not in {r.point.node_id for r in results}
        assert len(fleet.not_run) == 1 and "cannot prepare" in fleet.not_run[0]
        assert "\n" not in fleet.not_run[0]
        spread = batch_sweep(_runner(inputs, log), [2, 4, 8])  # only the ready nodes run
        assert len(spread) == 3
        assert {r.record["cluster"]["node_id"] for r in spread} <= set(fleet.ready)
        assert len(list(iter_runs(find_entries()))) == 5
    finally:
        c.remove_node(node)


def _driver(cluster: dict[str, Any], inputs: Any, ck_repos: Path, batches: str, min_s: str) -> Any:
    """``ckvision sweep batch --cluster`` as the user types it, in its own process."""
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        CK_REPOS=str(ck_repos.parent.parent),
    )
    command = [sys.executable, "-m", "ckvision", "sweep", "batch", "--batches", batches]
    command += ["--cluster", cluster["cluster"].address, "--model", str(inputs.model_path)]
    command += ["--dataset", str(inputs.dataset_dir)]
    for key, value in {**QUICK, "CK_LOADGEN_MIN_DURATION_S": min_s}.items():
        command += ["--env", f"{key}={value}"]
    return subprocess.Popen(  # noqa: S603 - argument list, no shell
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _no_point_left() -> None:
    _wait_for(lambda: not _points_running(), 20, "a point's process outlived its driver")
    leftover = _wait_for(
        lambda: not [c for c in _cmdlines().values() if "ray::run_point" in c] or None,
        20,
        "a Ray worker kept running a point",
    )
    assert leftover


@pytest.mark.timeout(60)
def test_driver_ctrl_c_cancels_the_points_and_leaves_no_process(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path
) -> None:
    driver = _driver(cluster, inputs, ck_repos, "1,2", "60")
    try:
        _wait_for(lambda: len(_points_running()) == 2, 40, "the two points never started")
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=40)
    finally:
        driver.kill()
    assert driver.returncode == 130, out
    assert "cancelling 2 point(s)" in out and "interrupted" in out
    _no_point_left()
    assert not list(find_entries())  # nothing half recorded


@pytest.mark.timeout(90)
def test_driver_killed_keeps_recorded_points_and_the_rerun_skips_them(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path
) -> None:
    driver = _driver(cluster, inputs, ck_repos, "1,2,4", "2")
    try:
        _wait_for(
            lambda: len(list(iter_runs(find_entries()))) >= 2 and _points_running(),
            60,
            "two points were never recorded with the third running",
        )
        driver.kill()  # SIGKILL: no clean-up of its own
        driver.communicate(timeout=20)
    finally:
        driver.kill()
    _no_point_left()  # Ray ends a dead driver's tasks; their children die with them
    recorded = list(iter_runs(find_entries()))  # loadable, every one whole
    assert len(recorded) == 2
    again = _driver(cluster, inputs, ck_repos, "1,2,4", "2")
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0, out
    assert out.count("already recorded") == 2 and out.count(": recorded (") == 1, out
    assert len(list(iter_runs(find_entries()))) == 3


@pytest.mark.timeout(90)
def test_a_node_killed_mid_point_is_retried_once_elsewhere(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path
) -> None:
    c, caches = cluster["cluster"], cluster["caches"]
    log: list[str] = []
    runner = _runner(inputs, log, env={"CK_LOADGEN_MIN_DURATION_S": "3"})
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.extend(batch_sweep(runner, [1])))
    thread.start()
    run_dir = _wait_for(
        lambda: [d for i in range(2) for d in (caches / f"node{i}" / RUNS_DIR).glob("run-*")],
        40,
        "the point never started",
    )[0]
    victim_cache = run_dir.parent.parent.name  # node0 / node1
    victim = cluster["nodes"][int(victim_cache[-1])]
    c.remove_node(victim, allow_graceful=False)
    thread.join(timeout=70)
    assert not thread.is_alive()
    assert len(done) == 1, log
    assert done[0].record["cluster"]["node_id"] != victim.node_id
    assert len(list(iter_runs(find_entries()))) == 1  # recorded once, never half
    assert not _points_running()


def test_bad_addresses_and_no_usable_node_are_one_line(
    cluster: dict[str, Any], inputs: Any
) -> None:
    from ckvision.cluster import check_address, connect

    for address in ("localhost", "ray://", "a b:1", "http://x:1", "auto;rm"):
        with pytest.raises(ConfigError, match="use auto, HOST:PORT"):
            check_address(address)
    with pytest.raises(ConfigError, match="nothing answers there"):  # not minutes of retries
        connect("127.0.0.1:1")
    with pytest.raises(ConfigError, match="1 or more whole GPUs"):
        ClusterPointRunner("tensorrt", [], {}, {}, inputs, gpus_per_point=0)
    runner = ClusterPointRunner("tensorrt", [], {}, {}, inputs)  # asks for a whole GPU
    assert runner._options("")["num_gpus"] == 1 and runner._options("")["max_retries"] == 1
    with pytest.raises(ConfigError, match="offers ckvision_slot=1 and 1 GPU"):
        runner.attach(ray)


@pytest.mark.slow
@pytest.mark.timeout(600)  # the session's CK world (ck-setup) may be built here first
def test_cli_sweep_finds_the_ck_packages_and_records_entries_ck_and_results_read(
    cluster: dict[str, Any], ck_world: dict[str, str]
) -> None:
    """The user's path: installed CK packages (no --model/--dataset), EfficientNet-Lite0,
    the entry read back by the real ck and by ``ckvision results``."""
    env = dict(ck_world, PYTHONPATH=str(ROOT), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    command = [sys.executable, "-m", "ckvision", "sweep", "batch", "--batches", "2"]
    command += ["--cluster", cluster["cluster"].address, "--tags", "t21"]
    for key, value in QUICK.items():
        command += ["--env", f"{key}={value}"]
    done = subprocess.run(  # noqa: S603 - argument list, no shell
        command, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ready" in done.stdout and "recorded (ckvision.sweep.batch." in done.stdout
    experiments = Path(ck_world["CK_REPOS"]) / "local" / "experiment"
    runs = list(iter_runs(find_entries([experiments], tags=["t21"])))
    assert len(runs) == 1, done.stdout[-3000:]
    run = runs[0]
    assert run.record["model"]["contract"]["name"] == "efficientnet-lite0"
    assert run.record["cluster"]["node_id"] and run.record["provenance"]["host"]["cpu_model"]
    ck = str(Path(sys.executable).with_name("ck"))
    loaded = subprocess.run(  # noqa: S603 - argument list, no shell
        [ck, "load", f"experiment:{run.entry}"], env=env, capture_output=True, text=True
    )
    assert loaded.returncode == 0 and "t21" in loaded.stdout, loaded.stdout + loaded.stderr
    table = subprocess.run(  # noqa: S603 - argument list, no shell
        [sys.executable, "-m", "ckvision", "results", "--tags", "t21,cluster"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stdout + table.stderr
    assert run.record["cluster"]["node"] in table.stdout, table.stdout
