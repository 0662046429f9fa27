"""The TensorRT image's default command: self-check, engine for this GPU, recorded runs.

1. Self-check: TensorRT, cuda-python, a CUDA driver and a GPU; anything missing is one line
   (an image built on a base without TensorRT stops here, before anything else).
2. The engine: an engine only runs on the GPU model and TensorRT version it was built with,
   so it is installed (``ck install package``) into the engine volume under tags naming both
   (``gpu.<model>``, ``trt.<version>``) and its CK env entry is recorded in a CK repo that
   lives in the same volume; the next container finds and reuses it.
3. ``ck benchmark --record`` of the TensorRT program: accuracy and performance, SingleStream
   and Offline, into the mounted experiment folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ckvision.ck.tool import ck_lines, run_ck

__all__ = ["ENGINE_TAGS", "engine_tags", "run_tensorrt_job"]

CACHE_REPO = "ckvision-engine-cache"
ENGINE_TAGS = "model,tensorrt,efficientnet-lite0,converted-from-onnx,fp16,maxbatch.32"
PROGRAM = "image-classification-tensorrt-loadgen-py"
_RUNS = (
    ("SingleStream", "AccuracyOnly", ()),
    ("Offline", "AccuracyOnly", ("CK_BATCH_SIZE=32",)),
    ("SingleStream", "PerformanceOnly", ("CK_LOADGEN_MIN_DURATION_S=10",)),
    ("Offline", "PerformanceOnly", ("CK_BATCH_SIZE=32", "CK_LOADGEN_MIN_DURATION_S=10")),
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def engine_tags(gpu_name: str, trt_version: str) -> str:
    """The tags that make an engine specific to one GPU model and TensorRT version."""
    return f"gpu.{_slug(gpu_name)},trt.{_slug(trt_version)}"


def _ensure_cache_repo(cache: Path) -> None:
    if CACHE_REPO not in ck_lines(["list", "repo"]):
        cache.mkdir(parents=True, exist_ok=True)
        run_ck(["add", f"repo:{CACHE_REPO}", f"--path={cache}", "--quiet"], capture=True)


def run_tensorrt_job(
    cache: Path = Path("/home/ck/engine-cache"), log: Callable[[str], None] = print
) -> None:
    from ckvision.backends.tensorrt_backend import check_tensorrt_available, import_tensorrt
    from ckvision.cuda import device_info

    check_tensorrt_available()  # one line and exit 5 when anything is missing
    gpu, version = device_info(0).name, str(import_tensorrt().__version__)
    extra = engine_tags(gpu, version)
    log(f"ckvision: {gpu}, TensorRT {version}: engine tags {extra}")
    _ensure_cache_repo(cache)
    tags = f"{ENGINE_TAGS},{extra}"
    if not any(":env:" in ln for ln in ck_lines(["search", "env", f"--tags={tags}"])):
        log(f"ckvision: building the engine for this GPU into {cache} (first run only)")
        run_ck(
            [
                "install",
                "package",
                f"--tags={ENGINE_TAGS}",
                f"--extra_tags={extra}",
                f"--env_repo_uoa={CACHE_REPO}",
                f"--install_path={cache / _slug(f'{gpu}-{version}') / 'engine'}",
                "--quiet",
            ]
        )
    for scenario, mode, env in _RUNS:
        short = "accuracy" if mode == "AccuracyOnly" else "performance"
        name = f"ckvision.docker.tensorrt.efficientnet-lite0.{scenario.lower()}.{short}"
        run_ck(
            [
                "benchmark",
                f"program:{PROGRAM}",
                "--repetitions=1",
                f"--dep_add_tags.weights=fp16,maxbatch.32,{extra}",
                f"--env.CK_LOADGEN_SCENARIO={scenario}",
                f"--env.CK_LOADGEN_MODE={mode}",
                *(f"--env.{kv}" for kv in env),
                "--record",
                "--record_repo=local",
                f"--record_uoa={name}",
                f"--tags=ckvision,docker,tensorrt,{scenario.lower()},{short},{extra}",
                "--skip_print_timers",
                "--skip_stat_analysis",
                "--process_multi_keys",
                "--quiet",
                "--return_error_if_external_fail=yes",
            ],
            env=dict(os.environ),
        )
    log("ckvision: recorded; read them on the host with: python -m ckvision results DIR/*")
