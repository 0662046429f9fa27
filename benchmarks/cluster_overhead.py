"""What does Ray add? One point on a cluster vs the same point run locally, and a sweep's
wall time on a 2-node local cluster vs 1 node.

(a) one point: ``python -m ckvision run`` in a subprocess here (what a node runs, without
    Ray) vs the same point as a task on a warm 1-node cluster, driver to recorded entry,
    interleaved; besides the walls, the time outside the LoadGen test itself (wall minus
    the run's own ``duration_s``), whose difference is what Ray adds per point; also the
    one-off costs: starting the cluster and preparing the node (shipping the model and
    dataset through the object store);
(b) a sweep of N points: a local Ray cluster of 1 node vs 2 nodes, each node 1 CPU and
    one exclusive slot, every point 1 ORT thread and 1 worker, so two nodes can run two
    points at once. Ratio = 1-node wall / 2-node wall (ideal 2.0 on >= 2 free cores).

Everything stays on 127.0.0.1. Without ``--model``/``--dataset`` a small generated conv
model (3x64x64) and 64 random images are used.

    python benchmarks/cluster_overhead.py [--model M.onnx --dataset DIR] [--points 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only, before Ray starts

import numpy as np  # noqa: E402
from bench_common import contract_of  # noqa: E402 (sibling script)

from ckvision.program import MODEL_SIDECAR, resolve_inputs  # noqa: E402

POINT_ENV = {
    "CK_AUTOTUNE": "off",
    "CK_ORT_THREADS": "1",
    "CK_LOADGEN_WORKERS": "1",
    "CK_LOADGEN_SCENARIO": "Offline",
    "CK_LOADGEN_MODE": "PerformanceOnly",
    "CK_BATCH_SIZE": "4",
    "CK_LOADGEN_TARGET_QPS": "10",  # low: the sample count (--count) sizes each point
    "CK_PROGRESS": "off",
}


def _conv_model(path: Path, size: int = 64, classes: int = 10) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    conv = rng.normal(size=(32, 3, 3, 3)).astype(np.float32)
    dense = rng.normal(size=(32, classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "conv"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "dense"], ["logits"]),
        ],
        "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(conv, "conv"),
            numpy_helper.from_array(dense, "dense"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _inputs(args: argparse.Namespace, tmp: Path) -> Any:
    from ckvision.data.cache import write_cache

    model = args.model
    if model is None:
        (tmp / "model").mkdir()
        model = _conv_model(tmp / "model" / "conv.onnx")
    contract = contract_of(model)
    sidecar = model.parent / MODEL_SIDECAR
    if not sidecar.is_file():
        sidecar.write_text(json.dumps({"env": contract.to_env()}), encoding="utf-8")
    dataset = args.dataset
    if dataset is None:
        images = np.random.default_rng(5).normal(size=(64, 3, 64, 64)).astype(np.float32)
        dataset = tmp / "data" / "random"
        write_cache(
            dataset,
            name="random",
            kind="sample",
            source="generated",
            contract=contract,
            items=[(f"img{i:03d}.png", 0) for i in range(64)],
            load=lambda file: images[int(file[3:6])],
        )
    return resolve_inputs({}, "onnxruntime", model, dataset)


def _local_point(inputs: Any, env: dict[str, str], out: Path) -> tuple[float, float]:
    """(wall s, the LoadGen test's own duration s) of ``ckvision run`` in a subprocess."""
    command = [sys.executable, "-m", "ckvision", "run", "--model", str(inputs.model_path)]
    command += ["--dataset", str(inputs.dataset_dir), "--output-dir", str(out), "--quiet"]
    start = time.perf_counter()
    subprocess.run(  # noqa: S603 - argument list, no shell
        command, env={**os.environ, **env}, check=True, capture_output=True, timeout=600
    )
    wall = time.perf_counter() - start
    return wall, float(json.loads((out / "ckvision-run.json").read_text())["duration_s"])


def _cluster(nodes: int, cache: Path) -> Any:
    from ray.cluster_utils import Cluster

    from ckvision.cluster import SLOT

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for i in range(nodes):
        cluster.add_node(
            num_cpus=1,
            resources={SLOT: 1},
            env_vars={"CKVISION_CLUSTER_CACHE": str(cache / str(i))},
        )
    cluster.wait_for_nodes()
    return cluster, time.perf_counter() - start


def _runner(inputs: Any, env: dict[str, str], repos: Path, tag: str) -> tuple[Any, float]:
    import ray

    from ckvision.cluster import ClusterPointRunner

    os.environ["CK_REPOS"] = str(repos)
    runner = ClusterPointRunner("onnxruntime", [tag], env, {}, inputs, log=lambda _m: None)
    start = time.perf_counter()
    runner.attach(ray)
    return runner, time.perf_counter() - start


def _points(n: int, count: int) -> list[Any]:
    """n distinct points of about the same work (the sample counts differ by one)."""
    from ckvision.sweeps import Point

    return [
        Point("batch", f"p{i}", {"CK_LOADGEN_COUNT_OVERRIDE": str(count + i)}) for i in range(n)
    ]


def _sweep_wall(
    nodes: int, inputs: Any, env: dict[str, str], tmp: Path, n: int, count: int
) -> float:
    import ray

    cluster, _ = _cluster(nodes, tmp / f"cache{nodes}")
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        runner, _ = _runner(inputs, env, tmp / f"repos-sweep{nodes}", f"sweep{nodes}")
        start = time.perf_counter()
        results = runner.run_all(_points(n, count))
        wall = time.perf_counter() - start
        if len(results) != n:
            raise SystemExit(f"{n - len(results)} points not run: {runner.not_run}")
        return wall
    finally:
        ray.shutdown()
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an ONNX model (default: generated)")
    parser.add_argument("--dataset", type=Path, help="a preprocessed dataset dir")
    parser.add_argument("--points", type=int, default=6, help="points in the sweep (b)")
    parser.add_argument("--repeat", type=int, default=3, help="single-point repetitions (a)")
    parser.add_argument("--count", type=int, default=256, help="samples per point (Offline)")
    parser.add_argument("--duration-s", type=float, default=0.5, help="LoadGen min duration")
    args = parser.parse_args(argv)
    import ray

    env = {
        **POINT_ENV,
        "CK_LOADGEN_MIN_DURATION_S": f"{args.duration_s:g}",
        "CK_LOADGEN_COUNT_OVERRIDE": str(args.count),
    }
    with tempfile.TemporaryDirectory(prefix="cluster-overhead-") as name:
        tmp = Path(name)
        inputs = _inputs(args, tmp)
        cluster, started_s = _cluster(1, tmp / "cache-one")
        local, remote = [], []
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            runner, prepare_s = _runner(inputs, env, tmp / "repos-one", "one")
            for i, point in enumerate(_points(args.repeat, args.count)):  # interleaved: a
                local.append(  # shared machine drifts
                    _local_point(inputs, {**env, **point.env}, tmp / f"local{i}")
                )
                start = time.perf_counter()
                record = runner.run(point).record
                remote.append((time.perf_counter() - start, float(record["duration_s"])))
        finally:
            ray.shutdown()
            cluster.shutdown()
        one = _sweep_wall(1, inputs, env, tmp, args.points, args.count)
        two = _sweep_wall(2, inputs, env, tmp, args.points, args.count)
    lo, re_ = (statistics.median(w for w, _ in runs) for runs in (local, remote))
    lo_out, re_out = (statistics.median(w - d for w, d in runs) for runs in (local, remote))
    print(f"(a) one point, local subprocess:      {lo:6.2f} s wall (median of {args.repeat})")
    print(f"    one point, Ray task -> recorded:  {re_:6.2f} s wall, ratio {re_ / lo:.2f}")
    print(
        f"    outside the LoadGen test itself: local {lo_out:.2f} s, Ray {re_out:.2f} s, "
        f"Ray adds {re_out - lo_out:+.2f} s per point"
    )
    print(f"    one-off: cluster start {started_s:.2f} s, node prepare/ship {prepare_s:.2f} s")
    print(
        f"(b) {args.points}-point sweep: 1 node {one:6.2f} s, 2 nodes {two:6.2f} s, "
        f"ratio {one / two:.2f} (ideal 2.00; {os.cpu_count()} CPUs here)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
