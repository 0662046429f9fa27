"""The batch sweep (Offline), the concurrency sweep (MultiStream) and the setting sweep,
one table each.

Batch sweep: one Offline PerformanceOnly run per batch size, columns as model-navigator
and the GPUNet deployment report print them. Concurrency sweep: one MultiStream run per
N, each query holding N outstanding samples (perf_analyzer's ``--concurrency-range``
for a closed loop), with the latency breakdown our SUT measures. Setting sweep: one run
per value of any setting of the one table (:data:`ckvision.config.SETTINGS`: its env
var, each value validated as the run would), in the scenario chosen, the table adding a
column with the setting's value as each run recorded it.
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
    "setting_sweep",
    "parse_setting_values",
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
    points = [
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
        for b in batches
    ]
    return runner.run_all(points)


def concurrency_sweep(
    runner: CkPointRunner, levels: Sequence[int], batch: int | None = None
) -> list[PointResult]:
    points = [
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
        for n in levels
    ]
    return runner.run_all(points)


def parse_setting_values(name: str, text: str) -> tuple[str, list[str]]:
    """(env var, values) of a setting sweep: ``name`` is a setting's env var or field name
    (``CK_TRITON_INSTANCES``, ``triton_instances``); every value is checked as a run
    would check it (one line for a bad one)."""
    from ckvision.config import SETTINGS, RunConfig

    by_env = {s.env: s for s in SETTINGS.values()}
    spec = by_env.get(name.strip()) or SETTINGS.get(name.strip())
    if spec is None:
        raise ConfigError(f"--setting {name!r} is no setting; use an env var of `ckvision run`")
    if spec.env in _OWN_AXES:
        raise ConfigError(f"--setting {spec.env}: the sweep sets it; use another setting")
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"--values {text!r}: give distinct values, e.g. 1,2,4")
    if len(values) > _MAX_POINTS:
        raise ConfigError(f"--values {text!r} has {len(values)} points; at most {_MAX_POINTS}")
    for value in values:
        RunConfig.from_env({spec.env: value})  # ConfigError: one line naming the var
    return spec.env, values


_OWN_AXES = ("CK_LOADGEN_SCENARIO", "CK_LOADGEN_MODE")


def setting_sweep(
    runner: CkPointRunner, var: str, values: Sequence[str], scenario: str = "Offline"
) -> list[PointResult]:
    """One PerformanceOnly run in ``scenario`` per value of setting ``var``."""
    points = [
        Point(
            "setting",
            f"{var}={v}",
            {"CK_LOADGEN_SCENARIO": scenario, "CK_LOADGEN_MODE": "PerformanceOnly", var: v},
            (_tag(var, v),),
        )
        for v in values
    ]
    return runner.run_all(points)


def _tag(var: str, value: str) -> str:
    """The point's tag, e.g. ``triton_instances.2`` (safe characters only)."""
    name = var.lower().removeprefix("ck_")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{name}.{value}")[:100]


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
    node = record.get("cluster")  # a point run on a Ray cluster: which node, what hardware
    if node:
        row["node"], row["hardware"] = node.get("node"), node.get("hardware")
    row["entry"] = result.entry
    return row


def sweep_table(
    results: Sequence[PointResult], kind: str, setting: str | None = None
) -> pd.DataFrame:
    """The sweep's table; ``setting`` (a field name): a first column with its value as
    each point's run recorded it."""
    frame = pd.DataFrame([sweep_row(r) for r in results])
    if setting is not None:
        frame.insert(0, setting, [(r.record.get("config") or {}).get(setting) for r in results])
    if kind in ("batch", "setting"):
        frame = frame.drop(columns=["concurrency"])
    if "node" in frame.columns and frame["node"].nunique() > 1:  # grouped by node, never mixed
        frame = frame.sort_values("node", kind="stable").reset_index(drop=True)
    return frame
