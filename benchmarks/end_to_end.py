"""JPEG in, class out (issue 20): raw preprocessing, raw inference, then our end-to-end runs.

In one run, on the same machine and the same files:

(a) raw preprocessing rate of each engine (decode + resize + centre crop + the model's
    normalisation), images/s: Pillow and OpenCV (thread pool), DALI CPU pipeline;
(b) raw inference rate of ONNX Runtime at ITS best layout (workers x threads x batch,
    searched);
(c) our end-to-end Offline (JPEG-in, PerformanceOnly) per engine and prefetch depth
    (``--prefetch``: batches formed ahead while one infers), then as a user gets it with
    only the engine given (auto-tuned layout, threads and prefetch), and the ratio to
    min((a), (b)) and to the serial bound 1 / (1/(a) + 1/(b)) (preprocessing and
    inference share the same cores: on a CPU-only machine that is the real ceiling);
(d) our end-to-end SingleStream p90 per engine vs raw batch-1 preprocessing + inference;
(e) DALI against the reference preprocessing: pixel difference and the top-1 effect
    (AccuracyOnly runs of the same model on the offline cache and on DALI's pixels);
(f) with ``--triton``: the JPEG-in ensemble on a tritonserver started here (python
    backend: preprocess -> ONNX Runtime): LoadGen Offline through it over HTTP, gRPC and
    gRPC with the files in system shared memory, SingleStream p90 through it vs raw
    batch-1 preprocessing + inference,
    then perf_analyzer swept over batch sizes and concurrency, as the seed does, with its
    two plots (throughput and p90 latency against concurrency, one line per batch size);
    then (unless ``--no-auto``) a default run that starts its own server: layout,
    instances and batching delay auto-tuned.

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
from bench_common import raw_best_layout  # noqa: E402 - the sibling script's helpers

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


def _auto_run(
    args: argparse.Namespace,
    cache: Path,
    out: Path,
    engine: str,
    model: Path | None = None,
    **given: Any,
) -> tuple[float, str]:
    """Our end-to-end Offline run with only the engine (and ``given``) set: THE pipeline
    (``ckvision.program.run``) chooses the layout, preprocessing threads and prefetch
    depth, or for a Triton server it starts, the instances and delay (a fresh tuning
    cache: this run's own probe)."""
    from ckvision.program import run

    env = {"CK_TUNING_CACHE": str(out.parent / f"tuning-{out.name}.json")}
    record = run(
        env,
        {"scenario": "Offline", "mode": "PerformanceOnly", "min_duration_s": args.seconds,
         "input_format": "jpeg", "preprocess_engine": engine, "progress": "off", **given},
        out,
        model=model or args.model,
        dataset=cache,
        log=lambda _line: None,
    )  # fmt: skip
    tuning = record.get("tuning") or {}
    return float(record["loadgen"]["samples_per_second"]), str(tuning.get("summary", "flags"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="EfficientNet-Lite0 ONNX")
    parser.add_argument("--size", type=int, default=128, help="sample images (JPEG files)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--engines", default="pillow,opencv,dali")
    parser.add_argument("--workers", type=int, default=1, help="Offline SUT workers")
    parser.add_argument(
        "--prefetch", default="0,2", help="(c) CK_PREPROCESS_PREFETCH values, each a run"
    )
    parser.add_argument(
        "--no-auto", dest="auto", action="store_false",
        help="skip (c)'s auto-tuned run per engine (layout, threads, prefetch chosen by us)",
    )  # fmt: skip
    parser.add_argument("--triton", action="store_true", help="(f): the Triton ensemble too")
    parser.add_argument("--triton-batches", default="1,4,8")
    parser.add_argument("--triton-concurrency", default="1:4")
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
    rows = np.ascontiguousarray(
        PreprocessedDataset.open(cache).for_model(contract).images[: args.size]
    )
    best, infer = raw_best_layout(args.model, contract, rows, args.seconds / 4)
    print(f"(b) raw inference     onnxruntime {infer:8.1f} images/s (its best: {best.describe()})")

    prefetches = [int(d) for d in args.prefetch.split(",")]
    common = {
        "input_format": "jpeg",
        "preprocess_threads": args.threads,
        "threads": args.threads,
        "mode": Mode.PERFORMANCE,
    }
    for engine, prefetch in [(e, d) for e in engines for d in prefetches]:
        record = _run(
            inputs,
            work / f"offline-{engine}-prefetch{prefetch}",
            scenario=Scenario.OFFLINE,
            batch_size=args.batch,
            workers=args.workers,
            min_duration_s=args.seconds,
            target_qps=min(pre[engine], infer),
            preprocess_engine=engine,
            preprocess_prefetch=prefetch,
            **common,
        )
        qps = float(record["loadgen"]["samples_per_second"])
        bound = min(pre[engine], infer)
        serial = 1.0 / (1.0 / pre[engine] + 1.0 / infer)
        limit = "preprocessing" if pre[engine] < infer else "inference"
        share = (record.get("latency_histogram") or {}).get("breakdown") or {}
        print(
            f"(c) e2e Offline {engine:7s} prefetch {prefetch} {qps:8.1f} images/s = "
            f"{qps / bound:.2f}x "
            f"min(a,b) ({limit} limits), {qps / serial:.2f}x serial bound {serial:.1f}; "
            f"breakdown {share}"
        )
    for engine in engines if args.auto else []:
        qps, how = _auto_run(args, cache, work / f"auto-{engine}", engine)
        bound = min(pre[engine], infer)
        serial = 1.0 / (1.0 / pre[engine] + 1.0 / infer)
        print(
            f"(c) e2e Offline {engine:7s} auto-tuned {qps:8.1f} images/s = {qps / bound:.2f}x "
            f"min(a,b), {qps / serial:.2f}x serial bound; {how}"
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
    if args.triton:
        through_triton(cache, contract, args, work, min(pre.values()), infer)
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


def through_triton(
    cache: Path,
    contract: Any,
    args: argparse.Namespace,
    work: Path,
    pre_rate: float,
    infer_rate: float,
) -> None:
    from ckvision.triton.ensemble import EnsembleSpec, write_ensemble, write_jpeg_input_data
    from ckvision.triton.perf import PerfSpec, run_perf_analyzer
    from ckvision.triton.repository import RepoSpec, write_repository
    from ckvision.triton.server import TritonServer, find_triton

    repo = work / "triton-repo"
    batches = [int(b) for b in args.triton_batches.split(",")]
    top = max(batches)
    write_repository(
        repo,
        args.model.resolve(),
        contract,
        RepoSpec(backend="python", max_batch=top, max_queue_delay_us=2000, ort_threads=1),
    )
    spec = EnsembleSpec(engine="pillow", max_batch=top, threads=1, max_queue_delay_us=2000)
    write_ensemble(repo, contract, spec)
    install = find_triton()
    data = EncodedDataset.open(cache, contract)
    blobs = [data.read(i) for i in range(min(64, data.size))]
    input_json = write_jpeg_input_data(work / "jpeg-input.json", blobs)
    low, high = (int(v) for v in args.triton_concurrency.split(":"))
    rows: dict[int, list[dict[str, float]]] = {}
    with TritonServer(install, repo, work / "triton-logs") as server:
        inputs = resolve_inputs({}, "triton", repo / "ckvision-triton.json", cache)
        for protocol, shm in (("http", "none"), ("grpc", "none"), ("grpc", "system")):
            record = _run(
                inputs,
                work / f"triton-{protocol}-{shm}",
                backend="triton",
                scenario=Scenario.OFFLINE,
                mode=Mode.PERFORMANCE,
                batch_size=min(args.batch, top),
                workers=2,
                min_duration_s=args.seconds,
                target_qps=min(pre_rate, infer_rate),
                input_format="jpeg",
                triton_urls=server.url(protocol),
                triton_protocol=protocol,
                triton_shm=shm,
                triton_model=spec.ensemble_name,
            )
            qps = float(record["loadgen"]["samples_per_second"])
            stats = record["backend"].get("statistics") or {}
            print(
                f"(f) LoadGen Offline -> Triton ensemble ({protocol}, shared memory {shm}) "
                f"{qps:8.1f} images/s = "
                f"{qps / min(pre_rate, infer_rate):.2f}x min(a,b); server breakdown "
                + ", ".join(f"{k}={v}" for k, v in stats.items() if k.endswith("_us"))
            )
        single = _run(  # one file per query, JPEG in, through the ensemble
            inputs,
            work / "triton-single",
            backend="triton",
            scenario=Scenario.SINGLE_STREAM,
            mode=Mode.PERFORMANCE,
            min_duration_s=args.seconds,
            target_latency_ms=20.0,
            input_format="jpeg",
            triton_urls=server.grpc_url,
            triton_protocol="grpc",
            triton_model=spec.ensemble_name,
        )
        p90 = float(single["loadgen"]["latency_p90_ns"]) / 1e6
        raw_ms = 1000.0 / raw_pre_one(cache, contract, spec.engine, 1, args.seconds)
        local = resolve_inputs({}, "onnxruntime", args.model.resolve(), cache)
        raw_inf_ms = 1000.0 / raw_inference(local, 1, args.threads, args.seconds)
        print(
            f"(f) LoadGen SingleStream -> Triton ensemble (grpc) p90 {p90:6.2f} ms vs raw "
            f"{spec.engine} preprocessing {raw_ms:5.2f} + inference {raw_inf_ms:5.2f} ms = "
            f"{p90 / (raw_ms + raw_inf_ms):.2f}x"
        )
        for batch in batches:
            try:
                rows[batch] = [
                    r["perf_analyzer"]
                    for r in run_perf_analyzer(
                        install,
                        PerfSpec(
                            model=spec.ensemble_name,
                            url=server.grpc_url,
                            batch=batch,
                            concurrency=(low, high, 1),
                            request_count=max(10, 40 // batch),
                            stability_percent=50,
                            input_data=str(input_json),
                        ),
                        work / f"perf-b{batch}",
                    )
                ]
            except CkVisionError as err:
                print(f"(f) perf_analyzer batch {batch}: {err}")
                continue
            for row in rows[batch]:
                print(
                    f"(f) perf_analyzer batch {batch} concurrency {row['concurrency']:.0f}: "
                    f"{row['throughput']:7.1f} images/s, p90 {row['p90_latency_us'] / 1e3:7.1f} "
                    f"ms (queue {row.get('server_queue_us', 0) / 1e3:.1f}, compute "
                    f"{row.get('server_compute_infer_us', 0) / 1e3:.1f} ms)"
                )
        per_model_breakdown(server.http_url, [spec.preprocess_name, spec.classifier])
    if rows:
        plot_sweep(rows, work / "triton-jpeg-sweep.png")
    if args.auto:  # as a user gets it: the run starts the server and tunes its knobs too
        qps, how = _auto_run(
            args,
            cache,
            work / "auto-triton",
            spec.engine,
            model=repo / "ckvision-triton.json",
            backend="triton",
            triton_model=spec.ensemble_name,
        )
        print(
            f"(f) LoadGen Offline -> Triton ensemble, auto-tuned, server started by the run "
            f"{qps:8.1f} images/s = {qps / min(pre_rate, infer_rate):.2f}x min(a,b); {how}"
        )


def per_model_breakdown(url: str, models: list[str]) -> None:
    """The server's cumulative statistics of each step of the ensemble (all runs above):
    what preprocessing costs next to inference, per request."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        for name in models:
            stats = client.get_inference_statistics(name)["model_stats"][0]
            parts = stats["inference_stats"]
            count = max(1, int(parts["success"]["count"]))
            per = {
                k: round(int(parts[k]["ns"]) / count / 1e6, 2)
                for k in ("queue", "compute_input", "compute_infer", "compute_output")
            }
            print(
                f"(f) server step {name}: {count} requests, mean ms per request {per}, "
                f"{stats['inference_count']} images in {stats['execution_count']} batches"
            )
    finally:
        client.close()


def plot_sweep(rows: dict[int, list[dict[str, float]]], path: Path) -> None:
    """The seed's two plots: throughput and p90 latency against concurrency, per batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for batch, unsorted in sorted(rows.items()):
        points = sorted(unsorted, key=lambda p: p["concurrency"])
        x = [p["concurrency"] for p in points]
        left.plot(x, [p["throughput"] for p in points], marker="o", label=f"batch {batch}")
        right.plot(x, [p["p90_latency_us"] / 1e3 for p in points], marker="o")
    left.set(xlabel="concurrency", ylabel="images/s", title="JPEG-in ensemble: throughput")
    right.set(xlabel="concurrency", ylabel="p90 latency (ms)", title="p90 latency")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"(f) plot: {path}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CkVisionError as err:
        print(f"end_to_end: error: {err}", file=sys.stderr)
        sys.exit(1)
