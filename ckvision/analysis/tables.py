"""The summary table users read: one row per run, the figures that decide a comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["summary_table", "SUMMARY_COLUMNS", "JPEG_FLAG"]

JPEG_FLAG = "dataset.preprocessing_in_measured_path"  # True: a JPEG-in run (not MLPerf-style)

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


# Triton runs (LoadGen through Triton, and perf_analyzer): the per-request breakdown in ms,
# shown only when some run has it. perf_analyzer rows fill the LoadGen columns they match.
SERVED_COLUMNS = {
    "in flight": ("backend.statistics.concurrency", "perf_analyzer.concurrency"),
    "queue ms": ("backend.statistics.server_queue_us", "perf_analyzer.server_queue_us"),
    "input ms": (
        "backend.statistics.server_compute_input_us",
        "perf_analyzer.server_compute_input_us",
    ),
    "infer ms": (
        "backend.statistics.server_compute_infer_us",
        "perf_analyzer.server_compute_infer_us",
    ),
    "output ms": (
        "backend.statistics.server_compute_output_us",
        "perf_analyzer.server_compute_output_us",
    ),
    "client ms": ("backend.statistics.client_remainder_us", "perf_analyzer.client_remainder_us"),
}
_PERF_ANALYZER = {
    "samples/s": ("perf_analyzer.throughput", 1.0),
    "p50 ms": ("perf_analyzer.p50_latency_us", 1e3),
    "p90 ms": ("perf_analyzer.p90_latency_us", 1e3),
    "p99 ms": ("perf_analyzer.p99_latency_us", 1e3),
}


def _true(value: object) -> bool:
    return isinstance(value, bool | np.bool_) and bool(value)


def _column(frame: pd.DataFrame, source: str) -> pd.Series:
    return (
        frame[source]
        if source in frame
        else pd.Series([None] * len(frame), dtype=object, index=frame.index)
    )


def _perf_analyzer_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """perf_analyzer records -> the LoadGen-named sources summary_table reads."""
    if "tool" not in frame:
        return frame
    frame = frame.copy()
    rows = frame["tool"] == "perf_analyzer"
    frame.loc[rows, "loadgen.scenario"] = "perf_analyzer"
    frame.loc[rows, "loadgen.mode"] = "PerformanceOnly"
    frame.loc[rows, "backend.name"] = "triton"
    for name, (source, scale) in _PERF_ANALYZER.items():
        if source in frame:
            target = SUMMARY_COLUMNS[name]
            frame[target] = frame[target].astype(object) if target in frame else None
            frame.loc[rows, target] = pd.to_numeric(frame.loc[rows, source]) * scale
    return frame


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Select and convert the summary columns (latencies in ms, QPS rounded)."""
    frame = _perf_analyzer_rows(frame)
    out = pd.DataFrame(index=frame.index)
    for name, source in SUMMARY_COLUMNS.items():
        column = frame[source] if source in frame else pd.Series([None] * len(frame), dtype=object)
        if name.endswith(" ms"):
            column = pd.to_numeric(column, errors="coerce") / 1e6
        out[name] = column.values
    performance = out["mode"] == "PerformanceOnly"
    out.loc[~performance, ["samples/s", "p50 ms", "p90 ms", "p99 ms", "validity"]] = None
    for name, sources in SERVED_COLUMNS.items():
        if any(source in frame for source in sources):
            values = pd.to_numeric(_column(frame, sources[0]), errors="coerce")
            values = values.fillna(pd.to_numeric(_column(frame, sources[1]), errors="coerce"))
            out[name] = (values if name == "in flight" else values / 1e3).values
    precision = _column(frame, "precision").fillna("fp32")
    if (precision != "fp32").any():  # an INT8 or FP16 model beside (or instead of) FP32
        out.insert(list(out.columns).index("model") + 1, "precision", precision.values)
    jpeg = [_true(v) for v in _column(frame, JPEG_FLAG)]
    if any(jpeg):  # JPEG-in runs (issue 20): never mistaken for MLPerf-style ones
        engine = _column(frame, "dataset.preprocessing.engine")
        out["input"] = [
            f"jpeg/{e}" if flag else "preprocessed" for flag, e in zip(jpeg, engine, strict=True)
        ]
    if "cluster.node" in frame:  # runs on a Ray cluster: which node, on what hardware
        out["node"] = frame["cluster.node"].values
        out["hardware"] = _column(frame, "cluster.hardware").values
    return out.reset_index(drop=True)
