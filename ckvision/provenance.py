"""Where a number came from: software versions and the host, recorded with each run."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path

__all__ = ["collect_provenance", "cpu_model", "code_fingerprint", "memory_bytes"]

_DISTRIBUTIONS = ("ck", "mlcommons-loadgen", "onnxruntime", "numpy", "ckvision", "onnx", "torch")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    """Physical memory (MemTotal of /proc/meminfo), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@functools.cache
def code_fingerprint() -> str:
    """sha256 of the ckvision sources that make a run (every module but the submission
    tooling, which only reads runs): the code version a submission must not mix.

    Taken once per process, when the run pipeline is imported (:mod:`ckvision.program`
    asks for it at import): a checkout that changes while a long process runs does not
    change the code that process loaded, so its records keep one fingerprint."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("submission/"):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


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
            "memory_bytes": memory_bytes(),
        },
        "code_sha256": code_fingerprint(),
    }
