"""Our default runs vs raw ONNX Runtime at ITS best layout, side by side, in one run.

(a) raw ORT: every layout searched (1 session x N threads .. N parallel runs on one
    session x 1 thread, batch 1..32), best kept; measured before and after ours, averaged;
(b) ours, DEFAULT Offline (auto-tuned from a fresh probe, no flags)      target >= 0.97x (a);
(c) ours, Offline with (a)'s layout forced                               (for information);
(d) raw batch-1 latency p90 vs our default SingleStream p90, in 3 alternating rounds,
    median of the rounds' ratios                                       target <= 1.03x;
(d') our SingleStream p90 / p90 of the backend calls inside that same run (immune to
    the machine's drift between runs)                                  (for information);
(e) null backend through our Offline SUT (3x16x16 samples)               target >= 100k/s.

On a shared machine every figure is noise; run it on a quiet one:

    python benchmarks/side_by_side.py --model build/efficientnet-lite0.onnx --seconds 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import contract_of  # noqa: E402 - the sibling script's helpers

from ckvision.backends import BackendOptions, create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset, write_cache
from ckvision.errors import CkVisionError
from ckvision.harness import run_benchmark
from ckvision.models.contract import ModelContract
from ckvision.tuning import autotune
from ckvision.tuning.probe import (
    Layout,
    candidate_layouts,
    measure_layout,
    usable_cores,
)

TARGET_DEFAULT, TARGET_P90, TARGET_NULL = 0.97, 1.03, 100_000.0
P90_ROUNDS = 3  # raw and ours SingleStream measured in turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an ONNX classifier")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument(
        "--layout-seconds", type=float, default=1.0, help="length of each raw layout measurement"
    )
    parser.add_argument("--batches", default="1,2,4,8,16,32", help="raw batch sizes")
    parser.add_argument("--samples", type=int, default=256, help="random samples")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="ckvision-side-by-side-") as tmp:
            os.environ["CK_TUNING_CACHE"] = str(Path(tmp) / "tuning.json")  # a fresh probe
            return _measure(args, Path(tmp))
    except CkVisionError as err:
        print(f"side_by_side: error: {err}", file=sys.stderr)
        return 1


def _measure(args: argparse.Namespace, tmp: Path) -> int:
    contract = contract_of(args.model)
    data = _random_dataset(tmp / "data", contract, args.samples)
    batches = tuple(int(b) for b in args.batches.split(","))
    layouts = candidate_layouts(usable_cores(), 0, batches)
    raw = {lay: _raw(args.model, contract, data, lay, args.layout_seconds) for lay in layouts}
    best = max(raw, key=lambda lay: raw[lay])
    raw_before = _raw(args.model, contract, data, best, args.seconds)
    default = _ours(args.model, contract, data, tmp, args.seconds, Scenario.OFFLINE, None)
    forced = _ours(
        args.model, contract, data, tmp, args.seconds, Scenario.OFFLINE, (best, raw_before)
    )
    raw_best = (raw_before + _raw(args.model, contract, data, best, args.seconds)) / 2
    # p90s drift with the machine (a shared VM's raw p90 moved 25% within a minute), so the
    # two are measured in turns, and the ratio is the median of each round's ratio
    rounds = []
    for _round in range(P90_ROUNDS):
        raw_p90 = _raw_p90(args.model, contract, data, args.seconds / P90_ROUNDS)
        ours_p90 = _ours(
            args.model, contract, data, tmp, args.seconds / P90_ROUNDS, Scenario.SINGLE_STREAM, None
        )
        rounds.append((raw_p90, ours_p90[0], ours_p90[2]))
    p90_ratio = float(np.median([ours / raw for raw, ours, _inner in rounds]))
    # drift-free: LoadGen's p90 against the p90 of the same run's own backend calls
    inner_ratio = float(np.median([ours / inner for _raw, ours, inner in rounds]))
    null = _null(tmp, contract.num_classes)
    print(f"model {args.model}, {usable_cores()} cores, {args.seconds:g} s per run")
    for lay, rate in sorted(raw.items(), key=lambda kv: -kv[1]):
        print(f"  raw ORT {lay.describe():<40} {rate:10.1f} samples/s")
    print(f"  raw ORT best ({best.describe()}), before/after mean {raw_best:10.1f} samples/s")
    print(f"  ours default Offline ({default[1]})  {default[0]:10.1f} samples/s")
    print(f"  ours Offline, raw best layout forced     {forced[0]:10.1f} samples/s")
    for n, (raw_p90, ours_p90_ns, inner) in enumerate(rounds, 1):
        print(
            f"  round {n}: raw batch-1 latency p90 {raw_p90 / 1e6:.3f} ms, "
            f"ours default SingleStream p90 {ours_p90_ns / 1e6:.3f} ms "
            f"(its backend calls: p90 {inner / 1e6:.3f} ms)"
        )
    print(f"  null backend Offline                     {null:10.0f} samples/s\n")
    checks = [
        ("(b) ours default Offline / raw best", default[0] / raw_best, TARGET_DEFAULT, True),
        ("(c) ours forced layout / raw best", forced[0] / raw_best, 0.0, True),
        ("(d) ours SingleStream p90 / raw p90 (median)", p90_ratio, TARGET_P90, False),
        ("(d') same, against its own backend calls", inner_ratio, 0.0, True),  # info
        ("(e) null backend samples/s", null, TARGET_NULL, True),
    ]
    misses = 0
    for name, value, target, higher in checks:
        ok = value >= target if higher else value <= target
        misses += not ok
        shown = f"{value:.3f}" if target < 10 else f"{value:,.0f}"
        goal = "(info)" if target == 0 else f"target {'>=' if higher else '<='} {target:g}"
        print(f"  {name:<40} {shown:>10}  {goal}  {'PASS' if ok else 'MISS'}")
    return 0 if misses == 0 else 2


def _random_dataset(path: Path, contract: ModelContract, count: int) -> PreprocessedDataset:
    rng = np.random.default_rng(0)
    shape = contract.input_shape(1)[1:]
    return write_cache(
        path,
        name="random",
        kind="random",
        source="generated",
        contract=contract,
        items=[(f"r{i:05d}", 0) for i in range(count)],
        load=lambda _f: rng.standard_normal(shape, dtype=np.float32),
    )


def _raw(
    model: Path, contract: ModelContract, data: PreprocessedDataset, layout: Layout, seconds: float
) -> float:
    backend = create_backend("onnxruntime", model, contract, BackendOptions(threads=layout.threads))
    with backend:
        backend.load()
        sample = np.ascontiguousarray(data.images[:1])
        return measure_layout(backend, sample, layout, seconds).samples_per_s


def _raw_p90(
    model: Path, contract: ModelContract, data: PreprocessedDataset, seconds: float
) -> float:
    backend = create_backend("onnxruntime", model, contract, BackendOptions())
    with backend:
        backend.load()
        x = np.ascontiguousarray(data.images[:1])
        backend.warmup(x, 3)
        times: list[int] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            backend.predict(x)
            times.append(time.perf_counter_ns() - t0)
    return float(np.percentile(times, 90))


def _ours(
    model: Path,
    contract: ModelContract,
    data: PreprocessedDataset,
    tmp: Path,
    seconds: float,
    scenario: Scenario,
    forced: tuple[Layout, float] | None,
) -> tuple[float, str, float]:
    """(our figure, how the layout was chosen, p90 of the backend calls inside the run)."""
    config = RunConfig(
        scenario=scenario, mode=Mode.PERFORMANCE, min_duration_s=seconds, progress="off"
    )
    explicit = {"scenario", "mode", "min_duration_s"}
    if forced is not None:
        layout, rate = forced
        config = config.with_(
            workers=layout.workers,
            threads=layout.threads,
            batch_size=layout.batch,
            target_qps=rate * 1.1,
        )
        explicit |= {"workers", "threads", "batch_size", "target_qps"}
    config, record = autotune(config, model, contract, data.path, explicit, log=lambda _: None)
    backend = create_backend("onnxruntime", model, contract, BackendOptions(threads=config.threads))
    calls: list[int] = []  # each backend call inside the run, timed the way raw is timed
    predict = backend.predict

    def timed(batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter_ns()
        out = predict(batch)
        calls.append(time.perf_counter_ns() - t0)
        return out

    backend.predict = timed  # type: ignore[method-assign]
    with backend:
        result = run_benchmark(
            config,
            backend,
            data,
            tmp / f"ours-{time.time_ns()}",
            model_name="side-by-side",
            log=lambda _: None,
        )
    summary = (record or {}).get("summary", "flags")
    if scenario is Scenario.SINGLE_STREAM:
        inner = float(np.percentile(calls, 90)) if calls else float("nan")
        return float(result.summary["latency_p90_ns"]), summary, inner
    return float(result.summary["samples_per_second"]), summary, float("nan")


def _null(tmp: Path, classes: int) -> float:
    contract = ModelContract(name="null", image_size=16, resize_size=16, num_classes=classes)
    rng = np.random.default_rng(1)
    data = write_cache(
        tmp / "null-data",
        name="null",
        kind="random",
        source="generated",
        contract=contract,
        items=[(f"n{i:04d}", 0) for i in range(1024)],
        load=lambda _f: rng.standard_normal((3, 16, 16), dtype=np.float32),
    )
    config = RunConfig(
        backend="null",
        scenario=Scenario.OFFLINE,
        mode=Mode.PERFORMANCE,
        batch_size=64,
        min_duration_s=0.5,
        count_override=300_000,
        target_qps=1.0,
        progress="off",
    )
    result = run_benchmark(
        config,
        create_backend("null", Path("none"), contract),
        data,
        tmp / "null-out",
        model_name="null",
        log=lambda _: None,
    )
    return float(result.summary["samples_per_second"])


if __name__ == "__main__":
    sys.exit(main())
