"""Scale: preprocessing a whole validation-size folder, and runs over all of it, in one run.

(a) page cache warmed: every source file read once (timed, for information);
(b) raw loop: decode + resize + crop with the same library (Pillow), every core
    (processes), the same files, nothing written                       images/s;
(c) ours: ``build_imagenet_cache`` into a fresh rgb8 cache, every core  images/s,
    target (c)/(b) >= 0.9 (its rows go to disk past the page cache, so the cache is
    then read once, timed, for information, before (e) as (a) did for the source);
(d) raw ONNX Runtime Offline throughput of the model at its best layout (searched,
    RAM samples);
(e) load time: every sample normalised from the memory-mapped cache into RAM in sets
    of the performance sample count, as LoadGen's load_samples does;
(f) ours: an AccuracyOnly Offline run over the WHOLE set (``python -m ckvision run`` in
    its own process, (d)'s layout forced), wall time, target <= 1.1 x (N / (d) + (e)),
    top-1, and the peak RSS its run record holds (the cache is memory-mapped, the RAM
    held is one performance sample count of samples);
(g) ours: a PerformanceOnly Offline run with performance sample count 1024, its peak RSS.

Made for the SYNTHETIC folder of ``ckvision dataset synth --images 50000``: its accuracy
is on SYNTHETIC images, not ImageNet. The machine this ran on may be shared: figures
are noisy, and the ratios are the point.

    python benchmarks/scale.py --source /data/synth-50k --model CK-TOOLS/.../model.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from bench_common import Check, print_checks, raw_best_layout  # noqa: E402 - the sibling script's helpers
from PIL import Image

from ckvision.config import RunConfig
from ckvision.data.cache import PreprocessedDataset
from ckvision.data.imagenet import build_imagenet_cache, read_val_map
from ckvision.data.preprocess import _PIL_FILTERS, resized_size
from ckvision.data.variation import Preprocessing
from ckvision.harness.qsl import DEFAULT_BUFFER, SampleLibrary
from ckvision.program import resolve_inputs
from ckvision.tuning.probe import usable_cores

TARGET_PREPROCESS, TARGET_ACCURACY_WALL = 0.9, 1.1


def _raw_chunk(args: tuple[str, list[str], dict[str, object]]) -> int:
    """The raw loop's worker: decode, resize, crop; nothing kept."""
    folder, files, spec_dict = args
    spec = Preprocessing.from_dict(spec_dict)
    total = 0
    for file in files:
        with Image.open(Path(folder) / file) as image:
            rgb = image.convert("RGB")
        width, height = resized_size(rgb.width, rgb.height, spec)
        rgb = rgb.resize((width, height), _PIL_FILTERS[spec.interpolation])
        left, top = (width - spec.side) // 2, (height - spec.side) // 2
        pixels = np.asarray(rgb.crop((left, top, left + spec.side, top + spec.side)))
        total += int(pixels[0, 0, 0])
    return total


def raw_preprocess(folder: Path, files: list[str], spec: Preprocessing, workers: int) -> float:
    chunk = 128
    jobs = [
        (str(folder), files[i : i + chunk], spec.as_dict()) for i in range(0, len(files), chunk)
    ]
    start = time.perf_counter()
    with get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_raw_chunk, jobs):
            pass
    return len(files) / (time.perf_counter() - start)


def warm_page_cache(folder: Path, files: list[str]) -> float:
    start = time.perf_counter()
    total = 0
    for file in files:
        total += len((folder / file).read_bytes())
    return total / (time.perf_counter() - start) / 1e6


def read_once(path: Path) -> float:
    """Read ``path`` once (into the page cache); MB/s."""
    start, total = time.perf_counter(), 0
    with path.open("rb", buffering=0) as source:
        while block := source.read(16 << 20):
            total += len(block)
    return total / (time.perf_counter() - start) / 1e6


def load_time(dataset: PreprocessedDataset, buffer: int) -> float:
    config = RunConfig(buffer_size=buffer)
    qsl = SampleLibrary.from_dataset(dataset, config)
    start = time.perf_counter()
    for first in range(0, qsl.size, buffer):
        qsl.load(range(first, min(qsl.size, first + buffer)))
        qsl.unload([])
    return time.perf_counter() - start


def our_run(
    model: Path, data: Path, out: Path, extra: list[str], env: dict[str, str]
) -> tuple[float, dict[str, object]]:
    cmd = [sys.executable, "-m", "ckvision", "run", "--model", str(model), "--dataset", str(data)]
    cmd += ["--output-dir", str(out), "--quiet", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"our run failed: {done.stderr[-2000:]}")
    return wall, json.loads((out / "ckvision-run.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="JPEGs + val_map.txt")
    parser.add_argument("--model", type=Path, required=True, help="an installed ONNX model")
    parser.add_argument("--work", type=Path, help="where the cache goes (default: a temp dir)")
    parser.add_argument("--layout-seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = every core)")
    parser.add_argument("--skip-runs", action="store_true", help="preprocessing only")
    parser.add_argument("--count", type=int, default=0, help="first N images only (0 = all)")
    args = parser.parse_args(argv)
    workers = args.workers or os.cpu_count() or 1
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)  # a folder named here may be new
    with tempfile.TemporaryDirectory(dir=args.work) as tmp_name:
        return _measure(args, Path(tmp_name), workers)


def _measure(args: argparse.Namespace, tmp: Path, workers: int) -> int:
    files = [f for f, _label in read_val_map(args.source)]
    files = files[: args.count] if args.count > 0 else files
    n = len(files)
    spec = Preprocessing()  # side.224, crop.875, pillow, linear: EfficientNet-Lite0's
    print(f"source {args.source}: {n} images; {workers} processes; {usable_cores()} cores")
    mb_s = warm_page_cache(args.source, files)
    print(f"(a) page cache warmed: {mb_s:.0f} MB/s read")
    raw = raw_preprocess(args.source, files, spec, workers)
    print(f"(b) raw loop (decode+resize+crop, Pillow, {workers} processes): {raw:.1f} images/s")
    cache = tmp / "cache"
    start = time.perf_counter()
    last = [0.0]

    def progress(message: str) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"    {message}", flush=True)

    ds = build_imagenet_cache(
        args.source, cache, spec, count=args.count, progress=progress, workers=workers
    )
    ours = n / (time.perf_counter() - start)
    print(f"(c) ours (build_imagenet_cache, {ds.kind} {ds.name}): {ours:.1f} images/s")
    checks: list[Check] = [
        ("(c)/(b) preprocessing vs raw loop", ours / raw, TARGET_PREPROCESS, True)
    ]
    if not args.skip_runs:
        checks += _runs(args, cache, ds, n)
    print()
    return print_checks(checks)


def _runs(args: argparse.Namespace, cache: Path, ds: PreprocessedDataset, n: int) -> list[Check]:
    inputs = resolve_inputs({}, "onnxruntime", args.model, cache)
    bound = ds.for_model(inputs.contract)
    layout, raw_rate = raw_best_layout(
        args.model, inputs.contract, np.asarray(bound.images[:256]), args.layout_seconds,
        (1, 2, 4, 8, 16, 32),
    )  # fmt: skip
    print(f"(d) raw ORT Offline best: {layout.describe()}: {raw_rate:.1f} samples/s")
    buffer = min(n, DEFAULT_BUFFER)  # MLPerf's performance sample count for ResNet50: 1024
    print(f"    cache read once from disk: {read_once(cache / 'images.npy'):.0f} MB/s")
    loading = load_time(bound, buffer)
    print(f"(e) load time ({n} samples into RAM, sets of {buffer}): {loading:.1f} s")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    forced = [
        "--workers", str(layout.workers), "--threads", str(layout.threads),
        "--batch-size", str(layout.batch), "--autotune", "off",
    ]  # fmt: skip
    accuracy_flags = ["--mode", "AccuracyOnly", "--scenario", "Offline", *forced]
    wall, record = our_run(args.model, cache, cache.parent / "acc", accuracy_flags, env)
    acc = record["result"]["accuracy"]  # type: ignore[index]
    rss = record["resources"]["peak_rss_mib"]  # type: ignore[index]
    bound_s = n / raw_rate + loading
    top1 = acc.get("top1") if isinstance(acc, dict) else acc
    print(
        f"(f) ours AccuracyOnly over all {n}: wall {wall:.1f} s (bound {bound_s:.1f} s = "
        f"{n}/{raw_rate:.1f} + {loading:.1f}), top-1 {top1} (SYNTHETIC set), peak RSS {rss} MiB"
    )
    perf_wall, perf = our_run(
        args.model, cache, cache.parent / "perf",
        ["--mode", "PerformanceOnly", "--scenario", "Offline", "--buffer-size", str(buffer),
         "--min-duration-s", "10", "--target-qps", f"{raw_rate:.0f}", *forced],
        env,
    )  # fmt: skip
    perf_rss = perf["resources"]["peak_rss_mib"]  # type: ignore[index]
    rate = perf["result"]["samples_per_second"]  # type: ignore[index]
    print(
        f"(g) ours PerformanceOnly Offline, performance sample count {buffer}: "
        f"{rate:.1f} samples/s, wall {perf_wall:.1f} s, peak RSS {perf_rss} MiB"
    )
    sample_mib = bound.images.shape[1] * bound.images.shape[2] * bound.images.shape[3] * 4 / 2**20
    print(f"    one performance sample count in RAM: {buffer * sample_mib:.0f} MiB")
    return [
        ("(f) accuracy wall / (N/raw + load)", wall / bound_s, TARGET_ACCURACY_WALL, False),
        ("(f) peak RSS MiB, accuracy over the whole set", float(rss), None, True),
        ("(g) peak RSS MiB, performance sample count", float(perf_rss), None, True),
        ("(g) ours Offline / raw best", rate / raw_rate, None, True),
    ]


if __name__ == "__main__":
    sys.exit(main())
