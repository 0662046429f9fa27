"""GPU overhead benchmark: our LoadGen harness vs the raw backend, in one run.

For each backend (pytorch on CUDA when available, else CPU with a note; tensorrt where
TensorRT and a GPU exist) it measures

* raw loop throughput at batch N      vs  our Offline samples/s
* raw single-image p90 latency        vs  our SingleStream p90

on a random in-memory dataset, and prints the ratios (1.00 = no harness overhead).

    python benchmarks/gpu_overhead.py --backend pytorch --device cuda \\
        --model efficientnet-lite0 --batch 32

Needs only numpy, the backend's runtime and ckvision's own dependencies (no pip).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing ckvision
    sys.path.insert(0, str(ROOT))

from ckvision.backends.base import Backend, BackendOptions  # noqa: E402
from ckvision.backends.registry import create_backend  # noqa: E402
from ckvision.config import Mode, RunConfig, Scenario  # noqa: E402
from ckvision.data.cache import PreprocessedDataset, write_cache  # noqa: E402
from ckvision.errors import CkVisionError  # noqa: E402
from ckvision.models.contract import ModelContract  # noqa: E402


@dataclass(frozen=True)
class Row:
    backend: str
    device: str
    raw_qps: float
    harness_qps: float
    raw_p90_ms: float
    harness_p90_ms: float


def random_dataset(root: Path, contract: ModelContract, size: int) -> PreprocessedDataset:
    rng = np.random.default_rng(0)
    shape = contract.input_shape(1)[1:]

    def load(_name: str) -> np.ndarray:
        return rng.standard_normal(shape).astype(contract.input_dtype)

    items = [(f"random-{i}", i % contract.num_classes) for i in range(size)]
    return write_cache(root / "dataset", name="random", kind="random", source="random",
                       contract=contract, items=items, load=load)


def raw_throughput(backend: Backend, images: np.ndarray, batch: int, seconds: float) -> float:
    data = np.ascontiguousarray(images[:batch])
    backend.warmup(data)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend.predict(data)
        done += len(data)
    return done / (time.perf_counter() - start)


def raw_p90_ms(backend: Backend, images: np.ndarray, seconds: float) -> float:
    backend.warmup(images[:1])
    latencies: list[int] = []
    start, i = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or len(latencies) < 64:
        sample = images[i % len(images)][None]
        t0 = time.perf_counter_ns()
        backend.predict(sample)
        latencies.append(time.perf_counter_ns() - t0)
        i += 1
    return float(np.percentile(latencies, 90)) / 1e6


def harness_run(backend: Backend, dataset: PreprocessedDataset, config: RunConfig,
                out: Path, model: str) -> dict[str, float]:
    from ckvision.harness.run import run_benchmark

    result = run_benchmark(config, backend, dataset, out, model_name=model, log=lambda _m: None)
    summary = result.summary
    return {
        "qps": float(summary.get("samples_per_second") or 0.0),
        "p90_ms": float(summary.get("latency_p90_ns") or 0.0) / 1e6,
    }


def measure(name: str, args: argparse.Namespace, contract: ModelContract,
            dataset: PreprocessedDataset, work: Path) -> Row:
    options = BackendOptions(device=args.device, precision=args.precision, threads=args.threads,
                             streams=args.streams, cuda_graphs=args.cuda_graphs)
    model_path = Path(args.model_path or work / f"{args.model}.onnx")
    images = np.asarray(dataset.images)
    base = dict(backend=name, mode=Mode.PERFORMANCE, dataset_size=dataset.size,
                buffer_size=dataset.size, min_duration_s=args.seconds, device=args.device,
                precision=args.precision, threads=args.threads)
    with create_backend(name, model_path, contract, options) as backend:
        device = backend.capabilities.device
        qps = raw_throughput(backend, images, args.batch, args.seconds)
        p90 = raw_p90_ms(backend, images, args.seconds)
        offline = RunConfig(scenario=Scenario.OFFLINE, batch_size=args.batch,
                            target_qps=qps, workers=args.workers, **base)
        single = RunConfig(scenario=Scenario.SINGLE_STREAM, batch_size=1,
                           target_latency_ms=max(p90, 0.01), **base)
        ours_off = harness_run(backend, dataset, offline, work / f"{name}-offline", args.model)
        ours_ss = harness_run(backend, dataset, single, work / f"{name}-single", args.model)
    return Row(name, device, qps, ours_off["qps"], p90, ours_ss["p90_ms"])


def print_rows(rows: list[Row]) -> None:
    print(f"{'backend':<10} {'device':<28} {'raw qps':>10} {'ours qps':>10} {'ratio':>6} "
          f"{'raw p90 ms':>11} {'ours p90 ms':>12} {'ratio':>6}")
    for r in rows:
        qps_ratio = r.harness_qps / r.raw_qps if r.raw_qps else float("nan")
        p90_ratio = r.harness_p90_ms / r.raw_p90_ms if r.raw_p90_ms else float("nan")
        print(f"{r.backend:<10} {r.device[:28]:<28} {r.raw_qps:>10.1f} {r.harness_qps:>10.1f} "
              f"{qps_ratio:>6.2f} {r.raw_p90_ms:>11.3f} {r.harness_p90_ms:>12.3f} "
              f"{p90_ratio:>6.2f}")
    print("qps ratio = ours / raw (1.00 = no throughput lost); "
          "p90 ratio = ours / raw (1.00 = no latency added)")


def _cuda_note(args: argparse.Namespace) -> None:
    if args.device != "cuda":
        return
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        print("note: CUDA is not available to PyTorch here; measuring the pytorch backend on "
              "CPU instead (the numbers are not GPU numbers)")
        args.device, args.precision = "cpu", "fp32"


def _backends(args: argparse.Namespace) -> list[str]:
    names = ["pytorch", "tensorrt"] if args.backend == "all" else [args.backend]
    if "tensorrt" in names and args.backend == "all":
        from ckvision.backends.tensorrt_backend import check_tensorrt_available

        try:
            check_tensorrt_available()
        except CkVisionError as err:
            print(f"note: skipping tensorrt: {err}")
            names.remove("tensorrt")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("pytorch", "tensorrt", "all"), default="all")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--model-path", help="engine dir/plan (tensorrt) or TorchScript (pytorch)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--samples", type=int, default=1024, help="random dataset size")
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement and test")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="harness worker threads (Offline)")
    p.add_argument("--streams", type=int, default=2, help="tensorrt execution contexts")
    p.add_argument("--cuda-graphs", action="store_true")
    p.add_argument("--out", type=Path, help="keep the LoadGen logs here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _cuda_note(args)
    contract = ModelContract(name=args.model)
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-overhead-") as tmp:
            work = args.out or Path(tmp)
            dataset = random_dataset(work, contract, max(args.samples, args.batch))
            rows = [measure(name, args, contract, dataset, work) for name in _backends(args)]
    except CkVisionError as err:
        print(f"gpu_overhead: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
