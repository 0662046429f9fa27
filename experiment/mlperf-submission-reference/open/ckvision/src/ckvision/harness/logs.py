"""Read a LoadGen output directory into one flat dict.

``mlperf_log_detail.txt`` is the source of truth: one ``:::MLLOG {json}`` line per event,
each with ``key``, ``value`` and ``metadata.is_error`` / ``is_warning``.
``mlperf_log_summary.txt`` adds the headline line and the recommendations as printed.
Latencies stay in nanoseconds, as LoadGen writes them. ``latency_*`` are always the
scenario's metric: per query for MultiStream (``sample_latency_*`` per sample there).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ckvision.errors import RunError

__all__ = [
    "parse_output_dir",
    "parse_detail",
    "parse_summary",
    "DETAIL_LOG",
    "SUMMARY_LOG",
    "ACCURACY_LOG",
]

DETAIL_LOG = "mlperf_log_detail.txt"
SUMMARY_LOG = "mlperf_log_summary.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"
_PREFIX = ":::MLLOG "

# detail key -> our key
_RENAMES = {
    "effective_scenario": "scenario",
    "effective_test_mode": "mode",
    "result_validity": "result_validity",
    "result_min_duration_met": "min_duration_satisfied",
    "result_min_queries_met": "min_queries_satisfied",
    "early_stopping_met": "early_stopping_satisfied",
    "result_perf_constraints_met": "performance_constraints_satisfied",
    "result_samples_per_second": "samples_per_second",
    "result_scheduled_samples_per_sec": "scheduled_samples_per_second",
    "result_completed_samples_per_sec": "completed_samples_per_second",
    "result_qps_with_loadgen_overhead": "qps_with_loadgen_overhead",
    "result_qps_without_loadgen_overhead": "qps_without_loadgen_overhead",
    "result_query_count": "result_query_count",
    "result_overlatency_query_count": "overlatency_query_count",
    "result_min_latency_ns": "latency_min_ns",
    "result_max_latency_ns": "latency_max_ns",
    "result_mean_latency_ns": "latency_mean_ns",
    "result_min_query_latency_ns": "query_latency_min_ns",
    "result_max_query_latency_ns": "query_latency_max_ns",
    "result_mean_query_latency_ns": "query_latency_mean_ns",
    "early_stopping_latency_ss": "early_stopping_latency_ss_ns",
    "early_stopping_latency_ms": "early_stopping_latency_ms_ns",
    "result_invalid_reason": "invalid_reason",
    "effective_samples_per_query": "samples_per_query",
    "effective_target_qps": "target_qps",
    "effective_target_latency_ns": "target_latency_ns",
    "effective_min_duration_ms": "min_duration_ms",
    "effective_max_duration_ms": "max_duration_ms",
    "effective_min_query_count": "min_query_count",
    "effective_max_query_count": "max_query_count",
    "effective_performance_sample_count": "performance_sample_count",
    "loadgen_version": "loadgen_version",
}
# result_90.00_percentile_latency_ns, result_99.90_percentile_per_query_latency_ns
_PERCENTILE = re.compile(r"^result_(\d+)\.(\d+)_percentile_(per_query_)?latency_ns$")
_HEADLINE = re.compile(
    r"^(Samples per second|Completed samples per second|[\d.]+th percentile latency \(ns\))"
    r"\s*:\s*(\S+)"
)


def parse_output_dir(path: Path) -> dict[str, Any]:
    """The flat summary of the LoadGen run whose logs are in ``path``."""
    path = Path(path)
    detail, summary = path / DETAIL_LOG, path / SUMMARY_LOG
    for log in (detail, summary):
        if not log.is_file() or log.stat().st_size == 0:
            raise RunError(f"LoadGen wrote no {log.name} in {path}; the test did not run")
    result = parse_detail(detail.read_text(encoding="utf-8", errors="replace"))
    result.update(parse_summary(summary.read_text(encoding="utf-8", errors="replace")))
    if result.get("mode") == "PerformanceOnly" and "result_validity" not in result:
        raise RunError(f"{detail} has no result (LoadGen stopped before the end of the test)")
    return result


def parse_detail(text: str) -> dict[str, Any]:
    """Results, effective settings, and error/warning counts from a detail log."""
    out: dict[str, Any] = {"errors": 0, "warnings": 0, "error_messages": []}
    for line in text.splitlines():
        if not line.startswith(_PREFIX):
            continue
        try:
            event = json.loads(line[len(_PREFIX) :])
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: ignore it, keep the rest
        key, value = event.get("key"), event.get("value")
        meta = event.get("metadata") or {}
        if meta.get("is_error"):
            out["errors"] += 1
            out["error_messages"].append(f"{key}: {value}")
        if meta.get("is_warning"):
            out["warnings"] += 1
        _store(out, str(key), value)
    if out.get("scenario") == "MultiStream":
        _per_query_metric(out)
    return out


def _per_query_metric(out: dict[str, Any]) -> None:
    """MultiStream's metric is per query (LoadGen's own): ``latency_*`` become the
    per-query figures; the per-sample ones stay as ``sample_latency_*``."""
    for key in [k for k in out if k.startswith("latency_")]:
        out[f"sample_{key}"] = out.pop(key)
    for key in [k for k in out if k.startswith("query_latency_")]:
        out[key[len("query_") :]] = out[key]


def _store(out: dict[str, Any], key: str, value: Any) -> None:
    if key in _RENAMES:
        out[_RENAMES[key]] = value
        return
    match = _PERCENTILE.match(key)
    if match:
        whole, frac, per_query = match.groups()
        name = whole if int(frac) == 0 else f"{whole}_{frac.rstrip('0')}"
        out[f"{'query_' if per_query else ''}latency_p{name}_ns"] = value
    elif key == "early_stopping_result":
        out["early_stopping_lines"] = [
            " ".join(part.split()) for part in str(value).split(" * ") if part.strip()
        ]


def parse_summary(text: str) -> dict[str, Any]:
    """Headline metric and recommendation lines from a summary log."""
    out: dict[str, Any] = {"recommendations": []}
    in_recommendations = False
    for raw in text.splitlines():
        line = raw.strip()
        headline = _HEADLINE.match(line)
        if headline:
            out["headline"] = headline.group(1)
            out["headline_value"] = float(headline.group(2))
        if line == "Recommendations:":
            in_recommendations = True
        elif in_recommendations and line.startswith("* "):
            out["recommendations"].append(line[2:])
        elif in_recommendations:
            in_recommendations = False
    return out
