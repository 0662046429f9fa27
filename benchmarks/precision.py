"""INT8 vs FP32 on this CPU, raw ONNX Runtime and through our harness, in one run.

(a) raw ORT at each model's best layout (every workers x threads x batch searched, the
    3 fastest timed again for --seconds, twice each);
(b) ours, DEFAULT Offline (auto-tuned, fresh probe cache), FP32 and INT8 in turns per
    round; ratio INT8 / FP32 of the medians                              target >= 2.0;
(c) ours, default SingleStream p90 latency, FP32 / INT8                  (for information);
(d) top-1 of INT8 and FP32 on the same images (the sample set unless --dataset), their
    agreement; INT8 / FP32                                               target >= 0.99;
(e) ours default Offline / raw best, per precision (the auto-tuner)      (for information).

The INT8 model is the package's: ``--int8`` an installed one (``model.json`` beside it),
or, without it, quantized here from ``--fp32`` with ``--method`` on the set-aside photos
(never the scored images). The machine is shared and drifts: run it twice.

    python benchmarks/precision.py --fp32 $FP32_DIR/model.onnx --seconds 5 --rounds 2
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
from bench_common import raw_best_layout  # noqa: E402 - the sibling script's helpers

from ckvision.backends import BackendOptions, create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import CkVisionError
from ckvision.harness import run_benchmark
from ckvision.models.contract import ModelContract
from ckvision.tuning import autotune
from ckvision.tuning.probe import usable_cores

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
    parser.add_argument("--rounds", type=int, default=2, help="rounds of FP32, INT8 in turns")
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


def _ours(
    model: Path,
    contract: ModelContract,
    data: PreprocessedDataset,
    tmp: Path,
    scenario: Scenario,
    seconds: float,
) -> tuple[float, str]:
    """(samples/s for Offline, p90 ns for SingleStream, from LoadGen; the tuner's choice)."""
    config = RunConfig(
        scenario=scenario, mode=Mode.PERFORMANCE, min_duration_s=seconds, progress="off"
    )
    explicit = {"scenario", "mode", "min_duration_s"}
    config, record = autotune(config, model, contract, data.path, explicit, log=lambda _: None)
    backend = create_backend("onnxruntime", model, contract, BackendOptions(threads=config.threads))
    with backend:
        result = run_benchmark(
            config,
            backend,
            data,
            tmp / f"ours-{time.time_ns()}",
            model_name=contract.name,
            log=lambda _: None,
        )
    summary = (record or {}).get("summary", "flags")
    if result.adaptive is not None:
        summary += f"; in the run settled on batch {result.adaptive['batch']}"
    if scenario is Scenario.SINGLE_STREAM:
        return float(result.summary["latency_p90_ns"]), summary
    return float(result.summary["samples_per_second"]), summary


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
    raw = {
        name: raw_best_layout(
            model, contract, images, args.layout_seconds, final_seconds=args.seconds
        )
        for name, (model, contract) in models.items()
    }
    offline: dict[str, list[float]] = {"fp32": [], "int8": []}
    latency: dict[str, list[float]] = {"fp32": [], "int8": []}
    chose: dict[str, str] = {}
    for n in range(args.rounds):
        order = ["fp32", "int8"] if n % 2 == 0 else ["int8", "fp32"]  # drift cancels
        for name in order:
            model, contract = models[name]
            rate, chose[name] = _ours(
                model, contract, data[name], tmp, Scenario.OFFLINE, args.seconds
            )
            offline[name].append(rate)
            p90, _ = _ours(
                model, contract, data[name], tmp, Scenario.SINGLE_STREAM, args.latency_seconds
            )
            latency[name].append(p90)
    acc = compare_accuracy(Path(args.fp32), int8, int8_contract, dataset_dir)

    quant = int8_info.get("quantization", {})
    print(
        f"FP32 {args.fp32}\nINT8 {int8} ({quant.get('method')} calibration on "
        f"{quant.get('calibration', {}).get('set')}, {quant.get('format')}, per-channel)"
    )
    print(f"{usable_cores()} cores; the machine may be shared: figures are noisy\n")
    header = f"{'raw best samples/s':>20}  {'ours Offline samples/s (rounds)':<34}"
    print(f"{'':<6}{header}{'SS p90 ms':>10}")
    for name in ("fp32", "int8"):
        best, rate = raw[name]
        rounds = ", ".join(f"{r:.1f}" for r in offline[name])
        p90 = float(np.median(latency[name])) / 1e6
        print(f"{name:<6}{rate:>20.1f}  {rounds:<34}{p90:>10.3f}")
        print(f"      raw best layout: {best.describe()}; ours chose: {chose[name]}")
    med = {name: float(np.median(v)) for name, v in offline.items()}
    lat = {name: float(np.median(v)) for name, v in latency.items()}
    print(
        f"\ntop-1 over {acc['images']} images of {acc['dataset']}: FP32 {acc['top1_fp32']:.3f}%, "
        f"INT8 {acc['top1_int8']:.3f}%, agreement {acc['agreement']:.3f}%"
    )
    if acc.get("note"):
        print(f"  ({acc['note']})")
    ratio = acc["ratio"] if acc["ratio"] is not None else float("nan")
    checks = [
        ("(a) raw INT8 / FP32 samples/s", raw["int8"][1] / raw["fp32"][1], 0.0),
        ("(b) ours INT8 / FP32 Offline samples/s", med["int8"] / med["fp32"], TARGET_SPEEDUP),
        ("(c) ours SingleStream p90 FP32 / INT8", lat["fp32"] / lat["int8"], 0.0),
        ("(d) top-1 INT8 / FP32", ratio, TARGET_ACCURACY),
        ("(e) ours / raw best, FP32", med["fp32"] / raw["fp32"][1], 0.0),
        ("(e) ours / raw best, INT8", med["int8"] / raw["int8"][1], 0.0),
    ]
    misses = 0
    for name, value, target in checks:
        ok = value >= target
        misses += not ok
        goal = "(info)" if target == 0 else f"target >= {target:g}"
        print(f"  {name:<42} {value:8.3f}  {goal}  {'PASS' if ok else 'MISS'}")
    return 0 if misses == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
