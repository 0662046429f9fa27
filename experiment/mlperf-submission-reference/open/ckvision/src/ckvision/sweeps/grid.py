"""The batch sweep (Offline) and the concurrency sweep (MultiStream), one table each.

Batch sweep: one Offline PerformanceOnly run per batch size, columns as model-navigator
and the GPUNet deployment report print them. Concurrency sweep: one MultiStream run per
N, each query holding N outstanding samples (perf_analyzer's ``--concurrency-range``
for a closed loop), with the latency breakdown our SUT measures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ckvision.errors import ConfigError
from ckvision.sweeps.points import CkPointRunner, Point, PointResult

__all__ = [
    "parse_range",
    "batch_sweep",
    "concurrency_sweep",
    "sweep_table",
    "sweep_row",
    "throughput",
    "TABLE_COLUMNS",
]

_RANGE = re.compile(r"^(\d+)(?:\.\.|:)(\d+)$")
TABLE_COLUMNS = ("samples/s", "avg ms", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "validity")
_MAX_POINTS = 64


def parse_range(text: str, what: str, max_value: int = 0) -> list[int]:
    """``1,2,4,8`` or ``1..32`` (powers of two from 1 to 32): strictly increasing, > 0."""
    text = text.strip()
    match = _RANGE.match(text)
    try:
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if lo < 1 or hi < lo:
                raise ConfigError(f"{what} range {text!r} is empty or decreasing")
            values, v = [], 1
            while v <= hi:
                if v >= lo:
                    values.append(v)
                v *= 2
            values = values or [lo]
        else:
            values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: use e.g. 1,2,4,8 or 1..32") from None
    if not values:
        raise ConfigError(f"{what} range {text!r} is empty")
    if any(v < 1 for v in values):
        raise ConfigError(f"{what} {text!r}: values must be positive")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ConfigError(f"{what} {text!r} is not increasing")
    if max_value and values[-1] > max_value:
        raise ConfigError(f"{what} {values[-1]} is above the model's maximum batch {max_value}")
    if len(values) > _MAX_POINTS:
        raise ConfigError(f"{what} {text!r} has {len(values)} points; at most {_MAX_POINTS}")
    return values


def batch_sweep(runner: CkPointRunner, batches: Sequence[int]) -> list[PointResult]:
    return [
        runner.run(
            Point(
                "batch",
                f"batch={b}",
                {
                    "CK_LOADGEN_SCENARIO": "Offline",
                    "CK_LOADGEN_MODE": "PerformanceOnly",
                    "CK_BATCH_SIZE": str(b),
                },
                (f"batch.{b}",),
            )
        )
        for b in batches
    ]


def concurrency_sweep(
    runner: CkPointRunner, levels: Sequence[int], batch: int | None = None
) -> list[PointResult]:
    return [
        runner.run(
            Point(
                "concurrency",
                f"concurrency={n}",
                {
                    "CK_LOADGEN_SCENARIO": "MultiStream",
                    "CK_LOADGEN_MODE": "PerformanceOnly",
                    "CK_LOADGEN_MULTISTREAMNESS": str(n),
                    "CK_BATCH_SIZE": str(min(n, batch) if batch else n),
                },
                (f"concurrency.{n}",),
            )
        )
        for n in levels
    ]


def _ms(loadgen: dict[str, Any], key: str) -> float | None:
    value = loadgen.get(key)
    return None if value is None else float(value) / 1e6


def throughput(record: dict[str, Any]) -> float | None:
    """LoadGen's samples/s; MultiStream has none: samples completed / test duration."""
    lg = record.get("loadgen") or {}
    value = lg.get("samples_per_second") or lg.get("completed_samples_per_second")
    if value is not None:
        return float(value)
    count = (record.get("latency_histogram") or {}).get("count")
    duration = record.get("duration_s")
    return count / duration if count and duration else None


def sweep_row(result: PointResult) -> dict[str, Any]:
    lg, record = result.loadgen, result.record
    config = record.get("config", {})
    multi = lg.get("scenario") == "MultiStream"
    prefix = "query_latency" if multi and "query_latency_p50_ns" in lg else "latency"
    row: dict[str, Any] = {
        "batch": config.get("batch_size"),
        "concurrency": config.get("multistreamness") if multi else None,
        "samples/s": throughput(record),
        "avg ms": _ms(lg, f"{prefix}_mean_ns"),
    }
    for p in ("50", "90", "95", "99"):
        row[f"p{p} ms"] = _ms(lg, f"{prefix}_p{p}_ns")
    row["validity"] = lg.get("result_validity")
    stages = (record.get("latency_histogram") or {}).get("breakdown") or {}
    for key, value in stages.items():
        row[key.replace("_ms", " ms").replace("_", " ")] = value
    row["workers"], row["threads"] = config.get("workers"), config.get("threads")
    row["entry"] = result.entry
    return row


def sweep_table(results: Sequence[PointResult], kind: str) -> pd.DataFrame:
    frame = pd.DataFrame([sweep_row(r) for r in results])
    if kind == "batch":
        frame = frame.drop(columns=["concurrency"])
    return frame
