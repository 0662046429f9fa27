"""JPEG in, class out (issue 20): raw preprocessing, raw inference, then our end-to-end runs.

In one run, on the same machine and the same files:

(a) raw preprocessing rate of each engine (decode + resize + centre crop + the model's
    normalisation), images/s: Pillow and OpenCV (thread pool), DALI CPU pipeline;
(b) raw inference rate of ONNX Runtime at the batch size of the runs;
(c) our end-to-end Offline (JPEG-in, PerformanceOnly) per engine, and the ratio to
    min((a), (b)) and to the serial bound 1 / (1/(a) + 1/(b)) (preprocessing and
    inference share the same cores: on a CPU-only machine that is the real ceiling);
(d) our end-to-end SingleStream p90 per engine vs raw batch-1 preprocessing + inference;
(e) DALI against the reference preprocessing: pixel difference and the top-1 effect
    (AccuracyOnly runs of the same model on the offline cache and on DALI's pixels).

The dataset is the embedded sample set written as JPEG files (real photos and their
augmentations, see :mod:`ckvision.data.sample_set`) plus its offline rgb8 cache:

    cd benchmarks && python end_to_end.py \
        --model ~/CK-TOOLS/model-onnx-efficientnet-lite0-export/model.onnx
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.backends import BackendOptions, create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.data.encoded import EncodedDataset, dali_available, pixel_difference
from ckvision.data.imagenet import build_imagenet_cache
from ckvision.data.sample_set import write_sample_folder
from ckvision.errors import CkVisionError
from ckvision.program import ProgramInputs, resolve_inputs, run_program


def _rate(call: Any, count: int, seconds: float) -> float:
    call()  # warm (DALI builds, pools start)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call()
        done += count
    return done / elapsed


def raw_preprocessing(data: EncodedDataset, batch: int, seconds: float) -> float:
    blobs = [data.read(i) for i in range(data.size)]
    engine = data.preprocessor(batch)
    engine.prepare(1)
    position = [0]

    def one_batch() -> None:
        start = position[0]
        rows = [(start + k) % len(blobs) for k in range(batch)]
        position[0] = (start + batch) % len(blobs)
        data.model_input(engine([blobs[r] for r in rows], [data.files[r] for r in rows]))

    return _rate(one_batch, batch, seconds)


def raw_inference(inputs: ProgramInputs, batch: int, threads: int, seconds: float) -> float:
    dataset = PreprocessedDataset.open(inputs.dataset_dir).for_model(inputs.contract)
    x = np.ascontiguousarray(dataset.images[:batch])
    backend = create_backend(
        "onnxruntime", inputs.model_path, inputs.contract, BackendOptions(threads=threads)
    )
    with backend:
        backend.load()
        return _rate(lambda: backend.predict(x), batch, seconds)


def _run(inputs: ProgramInputs, out: Path, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "backend": "onnxruntime",
        "autotune": "off",
        "progress": "off",
    }
    values.update(changes)
    return run_program(RunConfig(**values), inputs, out, log=lambda _line: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="EfficientNet-Lite0 ONNX")
    parser.add_argument("--size", type=int, default=128, help="sample images (JPEG files)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--engines", default="pillow,opencv,dali")
    parser.add_argument("--workers", type=int, default=1, help="Offline SUT workers")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if "dali" in engines and dali_available() is not None:
        print(f"dali skipped: {dali_available()}")
        engines.remove("dali")
    work = Path(tempfile.mkdtemp(prefix="ckvision-e2e-"))
    folder = write_sample_folder(work / "jpeg", size=args.size)
    env = {"CK_ENV_ONNX_MODEL_ONNX_FILEPATH": str(args.model)}
    from ckvision.models.contract import ModelContract
    from ckvision.program import _sidecar  # the model package's contract env

    contract = ModelContract.from_env(dict(_sidecar(args.model.resolve()).get("env", {})))
    cache = build_imagenet_cache(folder, work / "cache", contract).path
    inputs = resolve_inputs(env, "onnxruntime", args.model.resolve(), cache)
    sizes = [(folder / f).stat().st_size for f in PreprocessedDataset.open(cache).files]
    print(
        f"{args.size} JPEG files (mean {np.mean(sizes) / 1024:.0f} KiB), model "
        f"{contract.name}, batch {args.batch}, {args.threads} threads, "
        f"{os.cpu_count()} cores; a shared machine drifts: read ratios, not absolutes"
    )

    pre: dict[str, float] = {}
    for engine in engines:
        data = EncodedDataset.open(cache, contract, engine, threads=args.threads)
        try:
            pre[engine] = raw_preprocessing(data, args.batch, args.seconds)
        finally:
            data.close()
        print(f"(a) raw preprocessing {engine:7s} {pre[engine]:8.1f} images/s")
    infer = raw_inference(inputs, args.batch, args.threads, args.seconds)
    print(f"(b) raw inference     onnxruntime {infer:8.1f} images/s (batch {args.batch})")

    common = {
        "input_format": "jpeg",
        "preprocess_threads": args.threads,
        "threads": args.threads,
        "mode": Mode.PERFORMANCE,
    }
    for engine in engines:
        record = _run(
            inputs,
            work / f"offline-{engine}",
            scenario=Scenario.OFFLINE,
            batch_size=args.batch,
            workers=args.workers,
            min_duration_s=args.seconds,
            target_qps=min(pre[engine], infer),
            preprocess_engine=engine,
            **common,
        )
        qps = float(record["loadgen"]["samples_per_second"])
        bound = min(pre[engine], infer)
        serial = 1.0 / (1.0 / pre[engine] + 1.0 / infer)
        limit = "preprocessing" if pre[engine] < infer else "inference"
        share = (record.get("latency_histogram") or {}).get("breakdown") or {}
        print(
            f"(c) e2e Offline {engine:7s} {qps:8.1f} images/s = {qps / bound:.2f}x "
            f"min(a,b) ({limit} limits), {qps / serial:.2f}x serial bound {serial:.1f}; "
            f"breakdown {share}"
        )
    for engine in engines:
        record = _run(
            inputs,
            work / f"single-{engine}",
            scenario=Scenario.SINGLE_STREAM,
            min_duration_s=args.seconds,
            target_latency_ms=20.0,
            preprocess_engine=engine,
            **common,
        )
        p90 = float(record["loadgen"]["latency_p90_ns"]) / 1e6
        raw_ms = 1000.0 / raw_pre_one(cache, contract, engine, args.threads, args.seconds)
        raw_inf_ms = 1000.0 / raw_inference(inputs, 1, args.threads, args.seconds)
        print(
            f"(d) e2e SingleStream {engine:7s} p90 {p90:6.2f} ms vs raw preprocessing "
            f"{raw_ms:5.2f} + inference {raw_inf_ms:5.2f} ms = {p90 / (raw_ms + raw_inf_ms):.2f}x"
        )
    if "dali" in engines:
        dali_vs_reference(cache, contract, inputs, work, args)
    print(f"work files (delete when done): {work}")
    return 0


def raw_pre_one(cache: Path, contract: Any, engine: str, threads: int, seconds: float) -> float:
    data = EncodedDataset.open(cache, contract, engine, threads=threads)
    try:
        return raw_preprocessing(data, 1, seconds)
    finally:
        data.close()


def dali_vs_reference(
    cache: Path, contract: Any, inputs: ProgramInputs, work: Path, args: argparse.Namespace
) -> None:
    data = EncodedDataset.open(cache, contract, "dali", threads=args.threads)
    try:
        engine = data.preprocessor(args.batch)
        pixels = engine([data.read(i) for i in range(data.size)], list(data.files))
    finally:
        data.close()
    reference = np.asarray(PreprocessedDataset.open(cache).images)
    diff = pixel_difference(pixels, reference)
    top1 = {}
    for name, changes in (
        ("reference", {}),
        ("dali", {"input_format": "jpeg", "preprocess_engine": "dali"}),
    ):
        record = _run(
            inputs,
            work / f"accuracy-{name}",
            scenario=Scenario.OFFLINE,
            mode=Mode.ACCURACY,
            batch_size=args.batch,
            threads=args.threads,
            **changes,
        )
        top1[name] = float(record["accuracy"]["top1"])
    print(f"(e) DALI vs reference ({contract.library}) pixels: {diff}")
    print(
        f"(e) top-1 on {data.size} sample images: reference {top1['reference']:.3f}%, "
        f"DALI {top1['dali']:.3f}% ({top1['dali'] - top1['reference']:+.3f} points)"
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CkVisionError as err:
        print(f"end_to_end: error: {err}", file=sys.stderr)
        sys.exit(1)
