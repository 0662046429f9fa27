"""GPU overhead benchmark: our LoadGen harness vs a raw PyTorch loop, in one process.

For each model (EfficientNet-Lite0 with its real weights; ResNet50-v1.5 from torchvision's
architecture with RANDOM weights, so its numbers are speed only), precision (fp32, fp16)
and mode (``graphs``: one CUDA graph per batch size; ``eager``; ``compile``: torch.compile
plus graphs, run in a child process under a hard time box) it measures

* SingleStream: raw p90 of one image (pinned input, H2D, forward, D2H, synchronised)
  vs our harness's LoadGen p90;                              target ours/raw <= 1.05
* Offline, batch 1..256: raw samples/s of the same loop at that batch vs our
  harness's samples/s (2-4 workers, each with a CUDA runner of its own, the GPU
  gathering the batch's rows from page-locked memory); target ours/raw >= 0.95
* DEFAULT Offline (not for ``compile``; ``--no-default`` skips it): our run as a user
  gets it (THE pipeline, a fresh auto-tune probe, only device, precision and graphs
  given) vs the raw loop at its best batch of this run; target ours/raw >= 0.97

on a random-but-fixed dataset, prints one row per point as it goes (with its wall time),
and records every harness run as a CK experiment entry (written without ck, in ck's layout, see
ckvision.experiments.offline_writer) with GPU, driver, CUDA and torch provenance.
Everything lands in ``--out``: ``points.jsonl``, ``table.txt``, ``entries.tar.gz``.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_overhead.py --out /tmp/gpu   # on a GPU
    python benchmarks/gpu_overhead.py --device cpu --models efficientnet-lite0 \\
        --precisions fp32 --modes eager --batches 1,2 --seconds 0.3 --out /tmp/cpu

Needs numpy, torch (torchvision for ResNet50), mlcommons-loadgen and ckvision's own
modules; no ck and no ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing ckvision
    sys.path.insert(0, str(ROOT))

from ckvision.backends.base import BackendOptions  # noqa: E402
from ckvision.backends.registry import create_backend  # noqa: E402
from ckvision.config import Mode, RunConfig, Scenario  # noqa: E402
from ckvision.data.cache import PreprocessedDataset, write_cache  # noqa: E402
from ckvision.models.registry import get_model_spec  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Each configuration (model, precision, mode) gets an equal share of what is left of the
# time budget and runs its points most telling first, so a short budget still gives every
# configuration SingleStream and both ends of the batch sweep.
PRIORITY = (1, 256, 32, 8, 64, 2, 128, 16, 4)
# LoadGen sizes the Offline query from the expected QPS: at exactly the raw rate a harness
# faster than raw ends before the minimum duration (INVALID, seen on the H200 at batch <= 8).
EXPECTED_QPS_MARGIN = 1.5
DEFAULT_TARGET = 0.97  # our default (auto-tuned) Offline run / raw at its best batch
RUNNERS = 4  # CUDA runners per batch size (one per worker, each with its own stream)


def workers_for(batch: int, mode: str) -> int:
    """Offline workers on a GPU: 1 in eager mode (hundreds of op calls per batch, each
    giving the GIL up and taking it back: with two threads they convoy, 5-10x slower on
    the H200 host); else 2 for small batches (per-batch Python work dominates), 4 from
    batch 8 (the copies of one batch overlap the compute of another)."""
    if mode == "eager":
        return 1
    return 2 if batch < 8 else 4


RANDOM_WEIGHTS = "random (torchvision resnet50 v1.5 architecture, seed 0): speed only"


@dataclass
class Point:
    model: str
    precision: str
    mode: str
    scenario: str
    batch: int
    workers: int
    raw: float  # samples/s (Offline) or p90 ms (SingleStream)
    ours: float
    ratio: float
    ok: bool
    validity: str
    entry: str


def build_resnet50() -> Any:
    import torch
    import torchvision

    torch.manual_seed(0)  # 1001 outputs like the MLPerf ResNet50 (class 0 = background)
    return torchvision.models.resnet50(weights=None, num_classes=1001)


def random_dataset(root: Path, model: str, size: int) -> PreprocessedDataset:
    contract = get_model_spec(model).contract
    rng = np.random.default_rng(0)
    images = rng.standard_normal((size, *contract.input_shape(1)[1:]), dtype=np.float32)
    items = [(str(i), i % contract.num_classes) for i in range(size)]
    return write_cache(
        root / f"data-{model}",
        name=f"random-{model}",
        kind="random",
        source="numpy default_rng(0) standard normal",
        contract=contract,
        items=items,
        load=lambda name: images[int(name)],
    )


class RawLoop:
    """The plain loop: pinned host batch -> GPU -> cast -> model -> logits on the host.

    ``host`` holds whole steps of ``size`` rows; each step takes the next one in turn.
    """

    def __init__(
        self,
        torch: Any,
        model: Any,
        host: Any,
        size: int,
        dtype: Any,
        channels_last: bool,
        graphs: bool,
    ) -> None:
        self.torch, self.model = torch, model
        self.views = [host[i : i + size] for i in range(0, len(host) - size + 1, size)]
        self.turn = 0
        self.cuda = bool(host.is_pinned())
        self.graph: Any = None
        if not self.cuda:
            return
        shape = (size, *host.shape[1:])
        self.dev = torch.empty(shape, dtype=host.dtype, device="cuda")
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.static = torch.empty(shape, dtype=dtype, device="cuda", memory_format=fmt)
        with torch.inference_mode():
            for _ in range(3):
                self.dev.copy_(self.views[0], non_blocking=True)
                self.out = self._forward()
            torch.cuda.synchronize()
            if graphs:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.out = self._forward()
                torch.cuda.synchronize()

    def _forward(self) -> Any:
        self.static.copy_(self.dev)
        return self.model(self.static).float()

    def step(self) -> Any:
        view = self.views[self.turn % len(self.views)]
        self.turn += 1
        if not self.cuda:
            return self.model(view)
        self.dev.copy_(view, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            return self.out.cpu()  # .cpu() waits for the stream
        return self._forward().cpu()

    def timed(self, seconds: float, at_least: int) -> list[float]:
        with self.torch.inference_mode():
            for _ in range(3):
                self.step()
            times: list[float] = []
            start = time.perf_counter()
            while time.perf_counter() - start < seconds or len(times) < at_least:
                t0 = time.perf_counter()
                self.step()
                times.append(time.perf_counter() - t0)
        return times


def _host(torch: Any, images: np.ndarray, n: int, cuda: bool) -> Any:
    tensor = torch.from_numpy(np.array(images[:n]))  # a writable copy
    return tensor.pin_memory() if cuda else tensor


def _harness(
    backend: Any, dataset: PreprocessedDataset, config: RunConfig, out: Path, gpu: dict[str, Any]
) -> tuple[dict[str, Any], Path, dict[str, float]]:
    """LoadGen's summary, the run folder (its run record written by the pipeline's one
    writer), and where the time went inside our SUT (mean ms per sample: queue wait, batch
    formation, inference, response)."""
    from ckvision.harness.run import run_benchmark
    from ckvision.program import record_run
    from ckvision.provenance import collect_provenance

    started = time.time()
    result = run_benchmark(
        config, backend, dataset, out, model_name=backend.contract.name, log=lambda _m: None
    )
    model_info: dict[str, Any] = {"name": backend.contract.name, "source": "pytorch definition"}
    if backend.contract.name == "resnet50":
        model_info["weights"] = RANDOM_WEIGHTS
    record_run(
        out,
        config,
        model_info,
        dataset,
        backend,
        result,
        provenance={**collect_provenance(), "gpu": gpu},
        started=started,
    )
    return result.summary, out, dict((result.latency or {}).get("breakdown") or {})


def _record(
    args: argparse.Namespace,
    config: RunConfig,
    run_dir: Path,
    reference: dict[str, Any],
    gpu: dict[str, Any],
    tags: list[str],
) -> str:
    from ckvision.experiments.offline_writer import record_point
    from ckvision.experiments.record import collect_run

    record = collect_run(run_dir)
    record["logs"].pop("mlperf_log_detail.txt", None)  # the summary is kept; detail is big
    record["reference"] = reference
    name = ".".join(["gpu-reference", gpu["slug"], *tags[:4]])
    record_point(
        args.entries,
        name,
        tags=["ckvision", "gpu-reference", "pytorch", *tags, gpu["slug"]],
        meta={
            "ckvision": "gpu-reference",
            "backend": "pytorch",
            "gpu": gpu["name"],
            "model": tags[0],
            "precision": tags[1],
            "mode": tags[2],
            "scenario": tags[3],
        },
        characteristics={"run": record},
        features={"platform": {"gpu": gpu["name"], "driver": gpu["driver"]}},
        choices={
            "env": {
                "CK_BATCH_SIZE": str(config.batch_size),
                "CK_LOADGEN_SCENARIO": config.scenario.value,
                "CK_LOADGEN_WORKERS": str(config.workers),
                "CK_PRECISION": config.precision,
                "CK_DEVICE": config.device,
            }
        },
    )
    return name


def gpu_info(torch: Any, device: str) -> dict[str, Any]:
    from ckvision.cuda import nvidia_driver_version

    if device != "cuda":
        return {
            "name": "cpu",
            "slug": "cpu",
            "driver": "none",
            "cuda": "none",
            "torch": torch.__version__,
        }
    props = torch.cuda.get_device_properties(0)
    name = torch.cuda.get_device_name(0)
    return {
        "name": name,
        "slug": "-".join(name.lower().replace("nvidia", "").split())[:40],
        "driver": nvidia_driver_version(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "torch": torch.__version__,
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
    }


class Sweep:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        import torch

        self.args, self.work, self.torch = args, work, torch
        self.gpu = gpu_info(torch, args.device)
        self.deadline = time.monotonic() + args.budget_s
        self.configs_left = len(args.models) * len(args.precisions) * len(args.modes)
        self.datasets: dict[str, PreprocessedDataset] = {}
        self.skipped: list[str] = []
        self.raw_offline: list[tuple[float, int]] = []  # this configuration's raw points
        self.defaults: list[str] = []  # the default-run lines, for the summary

    def dataset(self, model: str) -> PreprocessedDataset:
        if model not in self.datasets:
            self.datasets[model] = random_dataset(self.work, model, self.args.samples)
        return self.datasets[model]

    def config(self, model: str, precision: str, mode: str) -> None:
        args, torch = self.args, self.torch
        if model == "resnet50":
            from ckvision.backends.pytorch_backend import register_torch_model

            try:
                import torchvision  # noqa: F401
            except ImportError:
                self.skipped.append(f"{model}: torchvision is not installed")
                return
            with _suppress_registered():
                register_torch_model("resnet50", build_resnet50)
        now = time.monotonic()
        if now > self.deadline:
            self.skipped.append(f"{model} {precision} {mode}: time budget spent")
            return
        share_end = now + (self.deadline - now) / max(self.configs_left, 1)
        self.configs_left -= 1
        dataset = self.dataset(model)
        contract = get_model_spec(model).contract
        options = BackendOptions(
            device=args.device,
            precision=precision,
            streams=RUNNERS,
            threads=args.threads,
            cuda_graphs=mode != "eager",
            compile=mode == "compile",
        )
        cuda = args.device == "cuda"
        dtype = torch.float16 if precision == "fp16" else torch.float32
        images = np.asarray(dataset.images)
        batches = sorted(args.batches, key=lambda b: PRIORITY.index(b) if b in PRIORITY else b)
        with create_backend("pytorch", Path(f"{model}.definition"), contract, options) as backend:
            for scenario, batch in [("singlestream", 1)] + [("offline", b) for b in batches]:
                tags = (model, precision, mode, scenario)
                if time.monotonic() > share_end:
                    self.skipped.append(f"{' '.join(tags)} batch {batch}: time share spent")
                    continue
                rows = 64 if scenario == "singlestream" else batch
                started = time.monotonic()
                try:
                    raw = RawLoop(
                        torch,
                        backend.module,
                        _host(torch, images, rows, cuda),
                        batch,
                        dtype,
                        cuda and contract.layout == "NCHW",
                        cuda and mode != "eager",
                    )
                    if scenario == "singlestream":
                        self.single(backend, raw, dataset, tags)
                    else:
                        self.offline(backend, raw, dataset, batch, tags)
                except Exception as err:  # one failed point must not lose the others
                    self.failed(f"{' '.join(tags)} batch {batch}", err)
                print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
        if args.default and mode != "compile":
            best = max(self.raw_offline, default=None)
            started = time.monotonic()
            try:
                self.default(model, precision, mode, dataset, best)
            except Exception as err:
                self.failed(f"{model} {precision} {mode} default offline", err)
            print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
        self.raw_offline = []

    def default(
        self,
        model: str,
        precision: str,
        mode: str,
        dataset: PreprocessedDataset,
        best: tuple[float, int] | None,
    ) -> None:
        """Our DEFAULT Offline run as a user gets it (THE pipeline, ``ckvision.program.run``:
        a fresh auto-tune probe, the in-run batch choice, the check), only the device,
        precision and graphs setting given, against the raw loop at ITS best batch of
        this configuration (target >= 0.97x)."""
        from ckvision.program import run

        contract = get_model_spec(model).contract
        definition = self.work / f"{model}.definition"  # built by name (pytorch backend)
        definition.touch()
        env = {
            **contract.to_env(),
            "CK_TUNING_CACHE": str(self.work / f"tuning-{model}-{precision}-{mode}.json"),
        }
        overrides = {
            "backend": "pytorch",
            "device": self.args.device,
            "precision": precision,
            "cuda_graphs": "off" if mode == "eager" else "on",
            "scenario": "Offline",
            "mode": "PerformanceOnly",
            "min_duration_s": self.args.seconds,
            "progress": "off",
        }
        out = self.work / "runs" / f"{model}-{precision}-{mode}-default"
        record = run(env, overrides, out, model=definition, dataset=dataset.path, log=print)
        ours = float(record["loadgen"]["samples_per_second"])
        tuning = record.get("tuning") or {}
        layout = tuning.get("layout", "?")
        settled = (tuning.get("in_run") or {}).get("batch", "- (no trial)")
        raw, at = best if best else (float("nan"), 0)
        ratio = ours / raw if best else float("nan")
        line = (
            f"{model:<18} {precision:<4} {mode:<7} DEFAULT Offline: {ours:.1f}/s vs raw best "
            f"{raw:.1f}/s (batch {at}) = {ratio:.3f} "
            f"{'yes' if ratio >= DEFAULT_TARGET else 'NO'} (target >= {DEFAULT_TARGET}); "
            f"tuned {layout}, in-run settled on batch {settled}, "
            f"probe {tuning.get('probe_s')} s, {record['loadgen'].get('result_validity')}"
        )
        print(line, flush=True)
        self.defaults.append(line)

    def failed(self, label: str, err: BaseException) -> None:
        text = f"{label}: FAILED: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
        print(text, flush=True)
        self.skipped.append(text)

    def _base(self, dataset: PreprocessedDataset, precision: str) -> dict[str, Any]:
        return dict(
            backend="pytorch",
            mode=Mode.PERFORMANCE,
            dataset_size=dataset.size,
            buffer_size=dataset.size,
            min_duration_s=self.args.seconds,
            device=self.args.device,
            precision=precision,
            threads=self.args.threads,
        )

    def single(
        self, backend: Any, raw: RawLoop, dataset: PreprocessedDataset, tags: tuple[str, ...]
    ) -> None:
        times = raw.timed(self.args.raw_seconds, 200)
        raw_p90 = float(np.percentile(times, 90)) * 1e3
        config = RunConfig(
            scenario=Scenario.SINGLE_STREAM,
            batch_size=1,
            target_latency_ms=raw_p90,
            **self._base(dataset, tags[1]),
        )
        backend.cuda_stats()  # reset: count the test only
        summary, run_dir, inside = _harness(
            backend, dataset, config, self.run_dir(tags, 1), self.gpu
        )
        ours = float(summary.get("latency_p90_ns") or 0) / 1e6
        self.emit(
            backend,
            dataset,
            config,
            run_dir,
            tags,
            1,
            1,
            raw_p90,
            ours,
            ours / raw_p90 if raw_p90 else float("nan"),
            summary,
            {
                "raw_p90_ms": raw_p90,
                "raw_p50_ms": float(np.percentile(times, 50)) * 1e3,
                "harness_p90_ms": ours,
                "harness_p50_ms": float(summary.get("latency_p50_ns") or 0) / 1e6,
                "sut_breakdown_ms": inside,
                "target": "harness p90 <= 1.05 x raw p90",
            },
            lambda r: r <= 1.05,
        )

    def offline(
        self,
        backend: Any,
        raw: RawLoop,
        dataset: PreprocessedDataset,
        batch: int,
        tags: tuple[str, ...],
    ) -> None:
        times = raw.timed(self.args.raw_seconds, 5)
        raw_qps = batch * len(times) / sum(times)
        self.raw_offline.append((raw_qps, batch))
        workers = workers_for(batch, tags[2])
        config = RunConfig(
            scenario=Scenario.OFFLINE,
            batch_size=batch,
            workers=workers,
            target_qps=raw_qps * EXPECTED_QPS_MARGIN,
            **self._base(dataset, tags[1]),
        )
        backend.cuda_stats()
        summary, run_dir, inside = _harness(
            backend, dataset, config, self.run_dir(tags, batch), self.gpu
        )
        ours = float(summary.get("samples_per_second") or 0)
        self.emit(
            backend,
            dataset,
            config,
            run_dir,
            tags,
            batch,
            workers,
            raw_qps,
            ours,
            ours / raw_qps,
            summary,
            {
                "raw_samples_per_second": raw_qps,
                "harness_samples_per_second": ours,
                "sut_breakdown_ms": inside,
                "target": "harness >= 0.95 x raw samples/s",
            },
            lambda r: r >= 0.95,
        )

    def run_dir(self, tags: tuple[str, ...], batch: int) -> Path:
        return self.work / "runs" / "-".join([*tags, str(batch)])

    def emit(
        self,
        backend: Any,
        dataset: PreprocessedDataset,
        config: RunConfig,
        run_dir: Path,
        tags: tuple[str, ...],
        batch: int,
        workers: int,
        raw: float,
        ours: float,
        ratio: float,
        summary: dict[str, Any],
        reference: dict[str, Any],
        good: Any,
    ) -> None:
        stats = backend.cuda_stats()  # the test's batches (warm-up excluded)
        reference = {
            **reference,
            "ratio": ratio,
            "harness_per_batch": stats,
            "raw_loop": "pinned input, H2D, cast on GPU, forward (same graphs "
            "setting), .cpu(); serial, default stream",
        }
        entry = _record(self.args, config, run_dir, reference, self.gpu, list(tags))
        point = Point(
            *tags,
            batch,
            workers,
            raw,
            ours,
            ratio,
            bool(good(ratio)),
            str(summary.get("result_validity", "?")),
            entry,
        )
        extra = (
            f"  [per batch: copy {stats['host_copy_ms']:.3f} enqueue "
            f"{stats['enqueue_ms']:.3f} wait {stats['wait_ms']:.3f} ms]"
            if stats
            else ""
        )
        inside = reference.get("sut_breakdown_ms") or {}
        if scenario_is_single(tags) and inside:
            extra += (
                "  [SUT per sample: "
                + " ".join(f"{k.removesuffix('_ms')} {v:.3f}" for k, v in inside.items())
                + f" ms; raw p50 {reference['raw_p50_ms']:.3f}, ours p50 "
            )
            extra += f"{reference['harness_p50_ms']:.3f}]"
        print(format_point(point) + extra, flush=True)
        with (self.args.out / "points.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(point)) + "\n")


def scenario_is_single(tags: tuple[str, ...]) -> bool:
    return tags[3] == "singlestream"


class _suppress_registered:
    """Registering the ResNet50 builder twice (one per configuration) is fine here."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: Any, tb: Any) -> bool:
        from ckvision.errors import ConfigError

        return kind is not None and issubclass(kind, ConfigError)


HEADER = (
    f"{'model':<18} {'prec':<4} {'mode':<7} {'scenario':<12} {'batch':>5} {'wk':>2} "
    f"{'raw':>10} {'ours':>10} {'ratio':>6} ok  validity"
)


def format_point(p: Point) -> str:
    unit = "ms p90" if p.scenario == "singlestream" else "/s"
    return (
        f"{p.model:<18} {p.precision:<4} {p.mode:<7} {p.scenario:<12} {p.batch:>5} "
        f"{p.workers:>2} {p.raw:>10.3f} {p.ours:>10.3f} {p.ratio:>6.3f} "
        f"{'yes' if p.ok else 'NO ':<3} {p.validity} ({unit})"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--models", default="efficientnet-lite0,resnet50")
    p.add_argument("--precisions", default="fp16,fp32")
    p.add_argument("--modes", default="graphs,eager", help="graphs, eager and/or compile")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = default")
    p.add_argument("--samples", type=int, default=256, help="random dataset size")
    p.add_argument("--seconds", type=float, default=1.5, help="LoadGen minimum duration")
    p.add_argument("--raw-seconds", type=float, default=0.6)
    p.add_argument("--budget-s", type=float, default=280.0, help="start no point after this")
    p.add_argument(
        "--compile-box-s",
        type=float,
        default=90.0,
        help="hard limit for the torch.compile child (0: skip it)",
    )
    p.add_argument("--compile-batches", default="64")
    p.add_argument(
        "--no-default",
        dest="default",
        action="store_false",
        help="skip each configuration's default (auto-tuned) Offline run",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--entries", type=Path, help="experiment entries here (default: OUT/entries)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.models, args.precisions, args.modes = (
        [v for v in text.split(",") if v] for text in (args.models, args.precisions, args.modes)
    )
    args.entries = args.entries or args.out / "entries"
    return args


def _compile_child(args: argparse.Namespace, box: float) -> str:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--device",
        args.device,
        "--models",
        "efficientnet-lite0",
        "--precisions",
        "fp16",
        "--modes",
        "compile",
        "--batches",
        args.compile_batches,
        "--samples",
        str(args.samples),
        "--seconds",
        str(args.seconds),
        "--raw-seconds",
        str(args.raw_seconds),
        "--budget-s",
        str(box),
        "--compile-box-s",
        "0",
        "--out",
        str(args.out),
        "--entries",
        str(args.entries),
        "--threads",
        str(args.threads),
    ]
    try:
        done = subprocess.run(cmd, timeout=box, check=False)  # noqa: S603 (argument list)
    except subprocess.TimeoutExpired:
        return f"torch.compile stopped at its {box:.0f} s time box (points done are kept)"
    return f"torch.compile child exited {done.returncode}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-overhead-") as tmp:
        sweep = Sweep(args, Path(tmp))
        if not args.child:
            print(json.dumps({"gpu": sweep.gpu}), flush=True)
            print(HEADER, flush=True)
        for precision in args.precisions:
            for mode in args.modes:
                for model in args.models:
                    try:
                        sweep.config(model, precision, mode)
                    except Exception as err:  # e.g. the model cannot load: note, go on
                        sweep.failed(f"{model} {precision} {mode}", err)
        notes = sweep.defaults + sweep.skipped
    if not args.child:
        if args.compile_box_s > 0:
            notes.append(_compile_child(args, args.compile_box_s))
        finish(args, notes)
    else:
        for note in notes:
            print(f"note: {note}", flush=True)
    return 0


def _config(p: Point) -> tuple[str, str, str]:
    return (p.precision, p.mode, p.model)


def finish(args: argparse.Namespace, notes: list[str]) -> None:
    lines = (
        (args.out / "points.jsonl").read_text().splitlines()
        if (args.out / "points.jsonl").is_file()
        else []
    )
    points = [Point(**json.loads(line)) for line in lines]
    order = {cfg: i for i, cfg in enumerate(dict.fromkeys(_config(p) for p in points))}
    points.sort(key=lambda p: (order[_config(p)], p.scenario != "singlestream", p.batch))
    table = [HEADER, *map(format_point, points), *(f"note: {n}" for n in notes)]
    (args.out / "table.txt").write_text("\n".join(table) + "\n")
    with tarfile.open(args.out / "entries.tar.gz", "w:gz") as tar:
        if args.entries.is_dir():
            tar.add(args.entries, arcname="entries")
    print("\n".join(["", "== summary ==", *table]), flush=True)
    short = [p for p in points if not p.ok]
    print(
        f"{len(points)} points, {len(short)} short of target; entries in "
        f"{args.out / 'entries.tar.gz'}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
