"""What does serving through Triton cost? Same model, same machine, one run, ratios.

Raw ONNX Runtime (``predict`` in a tight loop) finds its best batch size; then LoadGen
Offline (at that batch) and SingleStream run in-process (the onnxruntime backend) and
through one tritonserver (python backend running the same ONNX Runtime) over HTTP, gRPC
and gRPC + system shared memory. Printed: samples/s and p90 for each, the ratio of each to
raw ORT at its best setting, and Triton's own per-request breakdown (queue, compute
input/infer/output, client-side remainder).

    python benchmarks/triton_overhead.py --model build/efficientnet-lite0.onnx --seconds 10

Needs the triton env (``make triton-venv``). On a shared 2-core machine the server, the
client and ONNX Runtime compete for the same cores: read the ratios as upper bounds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_common import contract_of, random_dataset, raw_throughput  # noqa: E402 (sibling script)

from ckvision.backends import Backend, BackendOptions, create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import CkVisionError
from ckvision.harness import run_benchmark
from ckvision.models.contract import ModelContract
from ckvision.triton.repository import RepoSpec, write_repository
from ckvision.triton.server import TritonServer, find_triton

TRANSPORTS = (("http", "none"), ("grpc", "none"), ("grpc", "system"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="ckvision-triton-overhead-") as tmp:
            _measure(args, Path(tmp))
    except CkVisionError as err:
        print(f"triton_overhead: error: {err}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an ONNX classifier")
    parser.add_argument(
        "--threads", type=int, default=1, help="ORT intra-op threads, in-process and inside Triton"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="requests in flight to Triton in Offline"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--batches", default="1,2,4,8,16", help="raw batch sizes to try")
    parser.add_argument("--samples", type=int, default=256, help="random samples to make")
    return parser


def _run(backend: Backend, data: PreprocessedDataset, out: Path, **settings: Any) -> float:
    config = RunConfig(mode=Mode.PERFORMANCE, buffer_size=data.size, **settings)
    result = run_benchmark(config, backend, data, out, model_name="overhead", log=lambda _: None)
    key = "samples_per_second" if config.scenario is Scenario.OFFLINE else "latency_p90_ns"
    return float(result.summary[key])


def _both(
    backend: Backend,
    data: PreprocessedDataset,
    out: Path,
    batch: int,
    qps: float,
    p90_ns: float,
    seconds: float,
    workers: int,
) -> tuple[float, float]:
    offline = _run(
        backend,
        data,
        out / "offline",
        scenario=Scenario.OFFLINE,
        batch_size=batch,
        min_duration_s=seconds,
        target_qps=qps,
        count_override=1,
        workers=workers,
    )
    single = _run(
        backend,
        data,
        out / "single",
        scenario=Scenario.SINGLE_STREAM,
        min_duration_s=seconds,
        target_latency_ms=p90_ns / 1e6,
    )
    return offline, single


def _measure(args: argparse.Namespace, tmp: Path) -> None:
    contract = contract_of(args.model)
    data = random_dataset(tmp / "data", contract.input_shape(args.samples))
    ort = create_backend("onnxruntime", args.model, contract, BackendOptions(threads=args.threads))
    ort.load()
    sweep = {
        b: raw_throughput(ort, data, int(b), args.seconds / 4) for b in args.batches.split(",")
    }
    best = int(max(sweep, key=lambda b: sweep[b]))
    raw = raw_throughput(ort, data, best, args.seconds)
    rows: list[tuple[str, float, float, dict[str, Any]]] = []
    offline, single = _both(ort, data, tmp / "ort", best, raw, 10e6, args.seconds, 1)
    rows.append(("in-process onnxruntime", offline, single, {}))
    ort.close()
    spec = RepoSpec(backend="python", max_batch=max(best, 1), ort_threads=args.threads)
    write_repository(tmp / "repo", args.model, contract, spec)
    with TritonServer(find_triton(), tmp / "repo", tmp / "logs") as server:
        for protocol, shm in TRANSPORTS:
            options = BackendOptions(
                triton_urls=(server.url(protocol),), triton_protocol=protocol, triton_shm=shm
            )
            with create_backend("triton", tmp / "repo", contract, options) as backend:
                offline, single = _both(
                    backend,
                    data,
                    tmp / f"{protocol}-{shm}",
                    best,
                    raw,
                    single_p90(rows),
                    args.seconds,
                    args.workers,
                )
                stats = backend.run_statistics()  # the SingleStream run's breakdown
            name = f"Triton {protocol}" + (" + shm" if shm == "system" else "")
            rows.append((name, offline, single, stats))
    _print(args, contract, sweep, best, raw, rows)


def single_p90(rows: list[tuple[str, float, float, dict[str, Any]]]) -> float:
    return rows[0][2]


def _print(
    args: argparse.Namespace,
    contract: ModelContract,
    sweep: dict[str, float],
    best: int,
    raw: float,
    rows: list[tuple[str, float, float, dict[str, Any]]],
) -> None:
    print(
        f"model {args.model} {contract.input_shape(1)[1:]}, ORT threads {args.threads}, "
        f"Triton workers {args.workers}, {args.seconds:g} s per measurement"
    )
    print(
        "raw ORT samples/s by batch: "
        + ", ".join(f"{b}: {q:.1f}" for b, q in sweep.items())
        + f"; best batch {best}"
    )
    print(f"raw ORT at batch {best}: {raw:.1f} samples/s")
    base_single = rows[0][2]
    print(
        f"\n{'':<24}{'Offline/s':>10}{'/raw':>7}{'SS p90 ms':>11}{'/in-proc':>9}"
        f"{'queue':>8}{'c.in':>7}{'infer':>8}{'c.out':>7}{'client':>8}  (SS, us)"
    )
    for name, offline, single, stats in rows:
        parts = (
            "".join(
                f"{stats.get(k, float('nan')):>{w}.0f}"
                for k, w in (
                    ("server_queue_us", 8),
                    ("server_compute_input_us", 7),
                    ("server_compute_infer_us", 8),
                    ("server_compute_output_us", 7),
                    ("client_remainder_us", 8),
                )
            )
            if stats
            else ""
        )
        print(
            f"{name:<24}{offline:>10.1f}{offline / raw:>7.3f}{single / 1e6:>11.3f}"
            f"{single / base_single:>9.3f}{parts}"
        )


if __name__ == "__main__":
    sys.exit(main())
