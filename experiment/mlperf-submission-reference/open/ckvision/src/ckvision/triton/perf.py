"""Triton's own ``perf_analyzer`` against a server: run it, parse its CSV, record it.

The CSV (``-f``) has one row per concurrency with the GPUNet seed's columns, in
microseconds; rows become records with the same ``record_version`` and ``config`` /
``backend`` shape as our LoadGen runs (``"tool": "perf_analyzer"``), so both sit in one
table. ``perf_analyzer`` of ``tritonclient[all]==2.51.0`` links ``libb64.so.0d`` and
``libcudart.so.12``; pytriton bundles both under hashed names, linked here by their
plain names in a private directory.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ckvision.errors import BackendError, ConfigError, DataError
from ckvision.triton.server import TritonInstall

__all__ = ["PerfSpec", "perf_command", "parse_perf_csv", "run_perf_analyzer", "COLUMNS"]

# perf_analyzer CSV column -> our key (microseconds unless named otherwise)
COLUMNS = {
    "Concurrency": "concurrency",
    "Inferences/Second": "throughput",
    "Client Send": "client_send_us",
    "Network+Server Send/Recv": "network_server_send_recv_us",
    "Server Queue": "server_queue_us",
    "Server Compute Input": "server_compute_input_us",
    "Server Compute Infer": "server_compute_infer_us",
    "Server Compute Output": "server_compute_output_us",
    "Client Recv": "client_recv_us",
    "p50 latency": "p50_latency_us",
    "p90 latency": "p90_latency_us",
    "p95 latency": "p95_latency_us",
    "p99 latency": "p99_latency_us",
    "Avg latency": "avg_latency_us",
}
_LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


@dataclass(frozen=True)
class PerfSpec:
    model: str = "classifier"
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    batch: int = 1
    concurrency: tuple[int, int, int] = (1, 1, 1)  # start, end, step
    shared_memory: str = "none"  # none | system
    output_shm_bytes: int = 0  # system shm: bytes per output (batch * classes * 4)
    request_count: int = 50  # per measurement window
    max_trials: int = 5
    stability_percent: int = 10  # perf_analyzer -s: allowed spread between windows

    def __post_init__(self) -> None:
        if self.protocol not in ("http", "grpc"):
            raise ConfigError(f"perf_analyzer protocol {self.protocol!r}: use http or grpc")
        if self.shared_memory not in ("none", "system"):
            raise ConfigError(
                f"perf_analyzer shared memory {self.shared_memory!r}: use none or system"
            )
        start, end, step = self.concurrency
        if self.batch < 1 or start < 1 or end < start or step < 1:
            raise ConfigError(
                f"perf_analyzer batch {self.batch} / concurrency "
                f"{list(self.concurrency)} must be positive, start <= end"
            )
        if self.request_count < 1 or self.max_trials < 1 or self.stability_percent < 1:
            raise ConfigError("perf_analyzer request count, trials and stability must be >= 1")


def perf_command(binary: Path, spec: PerfSpec, csv_path: Path) -> list[str]:
    start, end, step = spec.concurrency
    args = [
        str(binary),
        "-m",
        spec.model,
        "-i",
        spec.protocol,
        "-u",
        spec.url,
        "-b",
        str(spec.batch),
        "--concurrency-range",
        f"{start}:{end}:{step}",
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(spec.request_count),
        "--max-trials",
        str(spec.max_trials),
        "-s",
        str(spec.stability_percent),
        "-f",
        str(csv_path),
    ]
    if spec.shared_memory == "system":
        args += [
            "--shared-memory",
            "system",
            "--output-shared-memory-size",
            str(spec.output_shm_bytes or 1 << 20),
        ]
    return args


def parse_perf_csv(path: Path) -> list[dict[str, float]]:
    """perf_analyzer's ``-f`` CSV -> one dict per concurrency (unknown columns dropped)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise DataError(f"cannot read perf_analyzer CSV {path}: {err}") from err
    if not rows or "Concurrency" not in rows[0] or "Inferences/Second" not in rows[0]:
        raise DataError(
            f"{path} is not a perf_analyzer CSV (no Concurrency, Inferences/Second columns)"
        )
    out = []
    for row in rows:
        try:
            item = {key: float(row[col]) for col, key in COLUMNS.items() if row.get(col)}
        except ValueError as err:
            raise DataError(f"{path}: a non-numeric perf_analyzer value: {err}") from err
        # what is not the server's: as backend.statistics.client_remainder_us for LoadGen runs
        item["client_remainder_us"] = sum(
            item.get(k, 0.0)
            for k in ("client_send_us", "network_server_send_recv_us", "client_recv_us")
        )
        out.append(item)
    return out


def _lib_dir(install: TritonInstall, into: Path) -> str:
    if install.libs is None:
        return ""
    for name, pattern in _LIBS.items():
        found = sorted(install.libs.glob(pattern))
        if found:
            (into / name).symlink_to(found[0])
    return str(into)


def find_perf_analyzer(install: TritonInstall) -> Path:
    candidates = [install.bindir / "perf_analyzer"] if install.bindir else []
    which = shutil.which("perf_analyzer")
    candidates += [Path(which)] if which else []
    for path in candidates:
        if path.is_file():
            return path
    raise BackendError(
        "perf_analyzer not found; it comes with tritonclient[all]==2.51.0 in "
        "the triton env (make triton-venv)"
    )


def run_perf_analyzer(
    install: TritonInstall, spec: PerfSpec, out_dir: Path, timeout_s: float = 300.0
) -> list[dict[str, Any]]:
    """Run perf_analyzer once; one record per concurrency level. Output kept in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, log_path = out_dir / "perf_analyzer.csv", out_dir / "perf_analyzer.log"
    binary = find_perf_analyzer(install)
    with tempfile.TemporaryDirectory(prefix="ckvision-pa-") as libs:
        env = dict(os.environ)
        extra = os.pathsep.join(
            p for p in (_lib_dir(install, Path(libs)), install.env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["LD_LIBRARY_PATH"] = extra + (
            os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""
        )
        started = time.time()
        try:
            with open(log_path, "wb") as log:
                proc = subprocess.run(  # noqa: S603 - argument list, no shell
                    perf_command(binary, spec, csv_path),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout_s,
                )
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"perf_analyzer did not finish within {timeout_s:g} s (log: {log_path})"
            ) from None
    if proc.returncode:
        text = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise BackendError(
            f"perf_analyzer failed (status {proc.returncode}): "
            f"{(text or ['no output'])[-1][:300]} (log: {log_path})"
        )
    from ckvision.experiments.record import RECORD_VERSION

    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    warnings = [ln.strip() for ln in log_text.splitlines() if "Failed to obtain stable" in ln]
    return [
        {
            "record_version": RECORD_VERSION,
            "tool": "perf_analyzer",
            "config": {"backend": "triton", **asdict(spec), "batch_size": spec.batch},
            "model": {"name": spec.model},
            "perf_analyzer": row,
            "started": started,
            "warnings": warnings,
            "logs": {"perf_analyzer.log": log_text},
        }
        for row in parse_perf_csv(csv_path)
    ]
