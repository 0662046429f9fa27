"""The summary table users read: one row per run, the figures that decide a comparison."""

from __future__ import annotations

import pandas as pd

__all__ = ["summary_table", "SUMMARY_COLUMNS"]

# output column -> source column of load_experiments()
SUMMARY_COLUMNS = {
    "entry": "entry",
    "scenario": "loadgen.scenario",
    "mode": "loadgen.mode",
    "backend": "backend.name",
    "model": "model.name",
    "batch": "config.batch_size",
    "threads": "config.threads",
    "samples/s": "loadgen.samples_per_second",
    "p50 ms": "loadgen.latency_p50_ns",
    "p90 ms": "loadgen.latency_p90_ns",
    "p99 ms": "loadgen.latency_p99_ns",
    "validity": "loadgen.result_validity",
    "top1 %": "accuracy.top1",
    "top5 %": "accuracy.top5",
    "dataset": "dataset.name",
}


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Select and convert the summary columns (latencies in ms, QPS rounded)."""
    out = pd.DataFrame(index=frame.index)
    for name, source in SUMMARY_COLUMNS.items():
        column = frame[source] if source in frame else pd.Series([None] * len(frame), dtype=object)
        if name.endswith(" ms"):
            column = pd.to_numeric(column, errors="coerce") / 1e6
        out[name] = column.values
    performance = out["mode"] == "PerformanceOnly"
    out.loc[~performance, ["samples/s", "p50 ms", "p90 ms", "p99 ms", "validity"]] = None
    return out.reset_index(drop=True)
