"""How much does the harness cost? One run, same model, same threads, three answers.

(a) raw ONNX Runtime throughput at its best batch size vs our Offline QPS at that batch
    size (target: ratio >= 0.95);
(b) raw single-image latency p90 vs our SingleStream p90 (target: ratio <= 1.10);
(c) the null backend through our Offline SUT, samples/s (target: >= 50,000). It runs on
    3x16x16 samples so it measures the per-sample work of the harness and LoadGen; the
    same with samples of the model's shape is printed for information (the gather copy).

"Raw" is ``OnnxRuntimeBackend.predict`` (one ``session.run``) in a tight loop on one
ready, contiguous batch: no LoadGen, no queue, no gather. It is measured before and after
ours and averaged, since a shared machine drifts.

    python benchmarks/harness_overhead.py --model build/efficientnet-lite0.onnx
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import Check, contract_of, print_checks, random_dataset, raw_throughput  # noqa: E402 (sibling script)

from ckvision.backends import Backend, BackendOptions, create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import CkVisionError
from ckvision.harness import run_benchmark
from ckvision.models.contract import ModelContract

TARGET_OFFLINE, TARGET_LATENCY, TARGET_NULL = 0.95, 1.10, 50_000.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="ckvision-overhead-") as tmp:
            return _measure(args, Path(tmp))
    except CkVisionError as err:
        print(f"harness_overhead: error: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an ONNX classifier")
    parser.add_argument(
        "--dataset",
        type=Path,
        help="a preprocessed dataset cache directory "
        "(default: random samples of the model's input shape)",
    )
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = default)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--batches", default="1,2,4,8,16,32", help="raw batch sizes to try")
    parser.add_argument("--samples", type=int, default=256, help="random samples to make")
    return parser


def _measure(args: argparse.Namespace, tmp: Path) -> int:
    contract = contract_of(args.model)
    dataset = (
        PreprocessedDataset.open(args.dataset)
        if args.dataset
        else random_dataset(tmp / "data", contract.input_shape(args.samples))
    )
    options = BackendOptions(threads=args.threads)
    backend = create_backend("onnxruntime", args.model, contract, options)
    backend.load()
    rows: list[tuple[str, str]] = []
    batches = [int(b) for b in args.batches.split(",")]
    sweep = {b: raw_throughput(backend, dataset, b, args.seconds / 4) for b in batches}
    rows += [(f"raw ORT throughput, batch {b}", f"{q:10.1f} samples/s") for b, q in sweep.items()]
    best = max(sweep, key=lambda b: sweep[b])
    # Raw before and after ours, averaged: the machine's drift hits both sides alike.
    raw_before = raw_throughput(backend, dataset, best, args.seconds)
    ours_qps = _offline(backend, dataset, best, raw_before, args.seconds, tmp / "offline")
    raw_qps = (raw_before + raw_throughput(backend, dataset, best, args.seconds)) / 2
    rows += [
        (f"raw ORT throughput, batch {best} (mean of before/after)", f"{raw_qps:10.1f} samples/s"),
        (f"ours, Offline, batch {best}", f"{ours_qps:10.1f} samples/s"),
    ]
    raw_p90_before = _raw_latency_p90(backend, dataset, args.seconds)
    ours_p90 = _single_stream_p90(backend, dataset, raw_p90_before, args.seconds, tmp / "single")
    raw_p90 = (raw_p90_before + _raw_latency_p90(backend, dataset, args.seconds)) / 2
    rows += [
        ("raw ORT latency p90, batch 1 (mean of before/after)", f"{raw_p90 / 1e6:10.3f} ms"),
        ("ours, SingleStream p90", f"{ours_p90 / 1e6:10.3f} ms"),
    ]
    backend.close()
    null_tiny = _null_offline(tmp, (3, 16, 16), contract.num_classes, 300_000)
    null_model = _null_offline(tmp, contract.input_shape(1)[1:], contract.num_classes, 20_000)
    rows += [
        ("null backend, Offline, 3x16x16 samples", f"{null_tiny:10.0f} samples/s"),
        (
            f"null backend, Offline, {contract.input_shape(1)[1:]} samples (info)",
            f"{null_model:10.0f} samples/s",
        ),
    ]
    _print_table(args, contract, rows)
    results: list[Check] = [
        ("(a) ours Offline / raw best throughput", ours_qps / raw_qps, TARGET_OFFLINE, True),
        ("(b) ours SingleStream p90 / raw p90", ours_p90 / raw_p90, TARGET_LATENCY, False),
        ("(c) null backend Offline samples/s", null_tiny, TARGET_NULL, True),
    ]
    print()
    return print_checks(results)


def _raw_latency_p90(backend: Backend, data: PreprocessedDataset, seconds: float) -> float:
    samples = [np.ascontiguousarray(data.images[i : i + 1]) for i in range(min(64, data.size))]
    backend.warmup(samples[0], 3)
    latencies: list[int] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        x = samples[len(latencies) % len(samples)]
        t0 = time.perf_counter_ns()
        backend.predict(x)
        latencies.append(time.perf_counter_ns() - t0)
    return float(np.percentile(latencies, 90))


def _offline(
    backend: Backend, data: PreprocessedDataset, batch: int, qps: float, seconds: float, out: Path
) -> float:
    config = RunConfig(
        scenario=Scenario.OFFLINE,
        mode=Mode.PERFORMANCE,
        batch_size=batch,
        min_duration_s=seconds,
        target_qps=qps,
        count_override=1,
        buffer_size=data.size,
    )
    result = run_benchmark(config, backend, data, out, model_name="overhead", log=_quiet)
    return float(result.summary["samples_per_second"])


def _single_stream_p90(
    backend: Backend, data: PreprocessedDataset, raw_p90_ns: float, seconds: float, out: Path
) -> float:
    config = RunConfig(
        scenario=Scenario.SINGLE_STREAM,
        mode=Mode.PERFORMANCE,
        min_duration_s=seconds,
        target_latency_ms=raw_p90_ns / 1e6,
        buffer_size=data.size,
    )
    result = run_benchmark(config, backend, data, out, model_name="overhead", log=_quiet)
    return float(result.summary["latency_p90_ns"])


def _null_offline(tmp: Path, sample: tuple[int, ...], classes: int, count: int) -> float:
    data = random_dataset(tmp / f"null-{'x'.join(map(str, sample))}", (1024, *sample))
    contract = ModelContract(
        name="null", image_size=sample[-1], resize_size=sample[-1], num_classes=classes
    )
    config = RunConfig(
        scenario=Scenario.OFFLINE,
        mode=Mode.PERFORMANCE,
        batch_size=64,
        min_duration_s=0.5,
        count_override=count,
        target_qps=1.0,
    )
    backend = create_backend("null", Path("none"), contract)
    result = run_benchmark(config, backend, data, tmp / "null-out", model_name="null", log=_quiet)
    return float(result.summary["samples_per_second"])


def _print_table(
    args: argparse.Namespace, contract: ModelContract, rows: list[tuple[str, str]]
) -> None:
    print(
        f"model {args.model} ({contract.input_shape(1)[1:]} -> {contract.num_classes}), "
        f"threads={args.threads or 'default'}, {args.seconds:g} s per measurement"
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def _quiet(line: str) -> None:
    if line.startswith(("warning", "interrupted")):
        print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
