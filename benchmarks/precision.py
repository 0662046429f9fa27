"""INT8 vs FP32 on this CPU, raw ONNX Runtime and through our harness, in one run.

(a) raw ORT at each model's best layout (every workers x threads x batch searched, the
    3 fastest and the layout our auto-tuner picks timed again for --seconds, twice each);
    in every round each precision's raw run brackets ours (one before, one after), and
    (a) is the median of the rounds' raw INT8 / FP32                    (for information);
(b) ours, DEFAULT Offline (THE pipeline, as a user runs it: a fresh probe in round 1, the
    checked cached choice after), FP32 and INT8 in turns per round; INT8 / FP32 of ours
    target >= 2.0 in every round in which the machine held still (both precisions' two
    raw runs within 2 %; no such round: not judged, a miss); the worst of all rounds, the
    median, and ours' ratio over raw's ratio of the same round are for information;
(c) ours, default SingleStream p90 latency, FP32 / INT8                  (for information);
(d) top-1 of INT8 and FP32 on the same images (the sample set unless --dataset), their
    agreement; INT8 / FP32                                               target >= 0.99;
(e) ours default Offline / raw best (its bracket), per precision, median of the rounds
    (the auto-tuner's cost at each precision)                            (for information).

The INT8 model is the package's: ``--int8`` an installed one (``model.json`` beside it),
or, without it, quantized here from ``--fp32`` with ``--method`` on the set-aside photos
(never the scored images). The machine is shared and drifts: run it on a quiet one.

    python benchmarks/precision.py --fp32 $FP32_DIR/model.onnx --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (  # noqa: E402 - the sibling script's helpers
    STILL,
    Check,
    default_offline,
    print_checks,
    raw_finalist,
    raw_layout_rates,
    raw_rate,
    spread,
    tuned_layout,
)

from ckvision.backends import BackendOptions, create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import CkVisionError
from ckvision.harness import run_benchmark
from ckvision.models.contract import ModelContract
from ckvision.tuning import autotune
from ckvision.tuning.probe import Layout, usable_cores

TARGET_SPEEDUP, TARGET_ACCURACY = 2.0, 0.99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="installed FP32 model.onnx")
    parser.add_argument("--int8", type=Path, help="installed INT8 model.onnx (else made here)")
    parser.add_argument("--method", default="minmax", help="minmax | entropy | percentile")
    parser.add_argument("--dataset", type=Path, help="preprocessed dataset (default: sample set)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each Offline run")
    parser.add_argument("--latency-seconds", type=float, default=2.0, help="each SingleStream")
    parser.add_argument("--layout-seconds", type=float, default=0.5, help="each raw layout")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of FP32, INT8 in turns")
    args = parser.parse_args(argv)
    if args.rounds < 1 or min(args.seconds, args.latency_seconds, args.layout_seconds) <= 0:
        parser.error("rounds must be >= 1 and seconds > 0")
    try:
        with tempfile.TemporaryDirectory(prefix="ckvision-precision-") as tmp:
            os.environ["CK_TUNING_CACHE"] = str(Path(tmp) / "tuning.json")  # fresh probes
            return _measure(args, Path(tmp))
    except CkVisionError as err:
        print(f"precision: error: {err}", file=sys.stderr)
        return 1


def _contract(model: Path) -> tuple[ModelContract, dict[str, Any]]:
    info = json.loads((model.parent / "model.json").read_text(encoding="utf-8"))
    return ModelContract.from_env(info["env"]), info


def _int8(args: argparse.Namespace, tmp: Path, dataset: Path) -> Path:
    if args.int8 is not None:
        return Path(args.int8)
    from ckvision.quantize import QuantizeSpec, quantize_model
    from ckvision.quantize.calibration_images import calibration_source, describe_source

    contract, _info = _contract(args.fp32)
    source = calibration_source(contract, scored=PreprocessedDataset.open(dataset))
    return quantize_model(
        args.fp32,
        tmp / "int8",
        QuantizeSpec(method=args.method),
        source,
        calibration_record={"method": args.method, **describe_source(source, None)},
        accuracy_dataset=dataset,
        log=lambda _: None,
    )


def _dataset(args: argparse.Namespace, tmp: Path, contract: ModelContract) -> Path:
    if args.dataset is not None:
        return Path(args.dataset)
    from ckvision.data.sample_set import build_sample_cache

    build_sample_cache(tmp / "sample", contract, size=256)
    return tmp / "sample"


def _single_stream(
    model: Path, contract: ModelContract, data: PreprocessedDataset, tmp: Path, seconds: float
) -> float:
    """Our default SingleStream run's p90 latency in ns, from LoadGen."""
    config = RunConfig(
        scenario=Scenario.SINGLE_STREAM, mode=Mode.PERFORMANCE, min_duration_s=seconds,
        progress="off",
    )  # fmt: skip
    explicit = {"scenario", "mode", "min_duration_s"}
    config, _record = autotune(config, model, contract, data.path, explicit, log=lambda _: None)
    backend = create_backend("onnxruntime", model, contract, BackendOptions(threads=config.threads))
    with backend:
        result = run_benchmark(
            config, backend, data, tmp / f"ss-{time.time_ns()}", model_name=contract.name,
            log=lambda _: None,
        )  # fmt: skip
    return float(result.summary["latency_p90_ns"])


class _Round:
    """One precision in one round: raw before, ours default, raw after."""

    def __init__(self, before: float, ours: float, after: float, how: str) -> None:
        self.raw = (before + after) / 2  # the machine's drift within the bracket cancels
        self.ours, self.how = ours, how
        self.spread = spread([before, after])
        self.ends = (before, after)


def _measure(args: argparse.Namespace, tmp: Path) -> int:
    from ckvision.quantize import compare_accuracy

    fp32_contract, _info = _contract(args.fp32)
    dataset_dir = _dataset(args, tmp, fp32_contract)
    int8 = _int8(args, tmp, dataset_dir)
    int8_contract, int8_info = _contract(int8)
    models = {"fp32": (Path(args.fp32), fp32_contract), "int8": (int8, int8_contract)}
    data = {
        name: PreprocessedDataset.open(dataset_dir).for_model(contract)
        for name, (_m, contract) in models.items()
    }
    images = np.ascontiguousarray(data["fp32"].images)  # normalised, in RAM, as our QSL
    best: dict[str, Layout] = {}
    finalists: dict[str, dict[Layout, float]] = {}
    tuned: dict[str, Layout] = {}
    for name, (model, contract) in models.items():
        rates = raw_layout_rates(model, contract, images, args.layout_seconds)
        tuned[name] = tuned_layout(
            model, contract, dataset_dir, args.seconds, tmp / f"tuning-for-raw-{name}.json"
        )
        best[name], _rate, finalists[name] = raw_finalist(
            model, contract, images, rates, args.seconds, also=(tuned[name],)
        )

    def raw(name: str) -> float:
        model, contract = models[name]
        return raw_rate(model, contract, images, best[name], args.seconds)

    rounds: list[dict[str, _Round]] = []
    latency: dict[str, list[float]] = {"fp32": [], "int8": []}
    for n in range(args.rounds):
        row: dict[str, _Round] = {}
        for name in ["fp32", "int8"] if n % 2 == 0 else ["int8", "fp32"]:  # drift cancels
            model, contract = models[name]
            before = raw(name)
            rate, how = default_offline(model, dataset_dir, args.seconds, tmp)
            row[name] = _Round(before, rate, raw(name), how)
            latency[name].append(
                _single_stream(model, contract, data[name], tmp, args.latency_seconds)
            )
        rounds.append(row)
    acc = compare_accuracy(Path(args.fp32), int8, int8_contract, dataset_dir)

    quant = int8_info.get("quantization", {})
    print(
        f"FP32 {args.fp32}\nINT8 {int8} ({quant.get('method')} calibration on "
        f"{quant.get('calibration', {}).get('set')}, {quant.get('format')}, per-channel)"
    )
    print(f"{usable_cores()} cores, {args.seconds:g} s per Offline run\n")
    for name in ("fp32", "int8"):
        for lay, rate in sorted(finalists[name].items(), key=lambda kv: -kv[1]):
            print(f"  {name} raw finalist {lay.describe():<31} {rate:10.1f} samples/s")
        print(
            f"  {name} raw best: {best[name].describe()} (our auto-tuner's pick: "
            f"{tuned[name].describe()}); SingleStream p90 of ours "
            f"{float(np.median(latency[name])) / 1e6:.3f} ms"
        )
    held = [all(r.spread <= STILL for r in row.values()) for row in rounds]
    for n, (row, still) in enumerate(zip(rounds, held, strict=True), 1):
        for name in ("fp32", "int8"):
            r = row[name]
            print(
                f"  round {n} {name}: raw {r.raw:.1f} (its two runs {r.ends[0]:.1f} / "
                f"{r.ends[1]:.1f}: {r.spread:.1%}), ours default {r.ours:.1f} "
                f"({r.ours / r.raw:.3f} of raw): {r.how}"
            )
        print(
            f"  round {n}: ours INT8 / FP32 {_ratio(row, 'ours'):.3f}, raw INT8 / FP32 "
            f"{_ratio(row, 'raw'):.3f}: {'held still' if still else 'moving'}"
        )
    print(
        f"\ntop-1 over {acc['images']} images of {acc['dataset']}: FP32 {acc['top1_fp32']:.3f}%, "
        f"INT8 {acc['top1_int8']:.3f}%, agreement {acc['agreement']:.3f}%"
    )
    if acc.get("note"):
        print(f"  ({acc['note']})")
    ours = [_ratio(row, "ours") for row in rounds]
    still_ours = [v for v, still in zip(ours, held, strict=True) if still]
    lat = {name: float(np.median(v)) for name, v in latency.items()}
    accuracy = acc["ratio"] if acc["ratio"] is not None else float("nan")
    checks: list[Check] = [
        ("(a) raw INT8 / FP32, median", _median(rounds, "raw"), None, True),
        ("(b) ours INT8 / FP32, worst still round", min(still_ours, default=float("nan")),
         TARGET_SPEEDUP, True),
        ("(b) same, worst of every round", min(ours), None, True),
        ("(b) same, median of the rounds", float(np.median(ours)), None, True),
        ("(b) ours' ratio / raw's, median", float(np.median(
            [_ratio(row, "ours") / _ratio(row, "raw") for row in rounds])), None, True),
        ("(c) ours SingleStream p90 FP32 / INT8", lat["fp32"] / lat["int8"], None, True),
        ("(d) top-1 INT8 / FP32", accuracy, TARGET_ACCURACY, True),
        ("(e) ours / raw best, FP32, median", _median_of(rounds, "fp32"), None, True),
        ("(e) ours / raw best, INT8, median", _median_of(rounds, "int8"), None, True),
    ]  # fmt: skip
    print(
        f"  over {len(rounds)} rounds ({sum(held)} held still: each precision's two raw "
        f"runs within {STILL:.0%}):"
    )
    return print_checks(checks)


def _ratio(row: dict[str, _Round], which: str) -> float:
    """INT8 / FP32 samples/s within one round, of ours or of raw."""
    return float(getattr(row["int8"], which) / getattr(row["fp32"], which))


def _median(rounds: list[dict[str, _Round]], which: str) -> float:
    return float(np.median([_ratio(row, which) for row in rounds]))


def _median_of(rounds: list[dict[str, _Round]], name: str) -> float:
    """Median over rounds of ours / raw (its bracket) at one precision."""
    return float(np.median([row[name].ours / row[name].raw for row in rounds]))


if __name__ == "__main__":
    sys.exit(main())
