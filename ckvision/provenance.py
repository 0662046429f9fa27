"""Where a number came from: software versions and the host, recorded with each run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

__all__ = ["collect_provenance", "cpu_model"]

_DISTRIBUTIONS = ("ck", "mlcommons-loadgen", "onnxruntime", "numpy", "ckvision", "onnx", "torch")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_provenance() -> dict[str, object]:
    versions: dict[str, str] = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "versions": versions,
        "host": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpu_affinity": (
                len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            ),
            "machine": platform.machine(),
            "system": platform.platform(),
            "hostname": platform.node(),
        },
    }
