"""The report's tables, built from recorded runs (one row per run or trial)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ckvision.analysis.frame import run_precision
from ckvision.experiments.entries import RecordedRun

__all__ = [
    "runs_table",
    "sweep_frame",
    "peak_tables",
    "provenance_table",
    "ab_table",
    "run_label",
    "latency_distribution",
    "accuracy_table",
    "precision_table",
]


def runs_table(runs: Sequence[RecordedRun]) -> pd.DataFrame:
    from ckvision.analysis.frame import run_row
    from ckvision.analysis.tables import summary_table
    from ckvision.sweeps.grid import throughput

    table = summary_table(pd.DataFrame([run_row(r) for r in runs]))
    # Server and MultiStream have no LoadGen samples/s: completed samples / duration
    for i, run in enumerate(runs):
        if run.record.get("config", {}).get("mode") == "PerformanceOnly":
            if pd.isna(table.at[i, "samples/s"]):
                table.at[i, "samples/s"] = throughput(run.record)
    return table


def sweep_frame(runs: Sequence[RecordedRun]) -> pd.DataFrame:
    from ckvision.sweeps.grid import sweep_row
    from ckvision.sweeps.points import Point, PointResult

    rows = [sweep_row(PointResult(Point("report", "", {}), r.record, r.entry)) for r in runs]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    key = "concurrency" if frame["concurrency"].notna().any() else "batch"
    if key == "batch":
        frame = frame.drop(columns=["concurrency"])
    return frame.sort_values(key).reset_index(drop=True)


def peak_tables(
    runs: Sequence[RecordedRun], docs: Sequence[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    for doc in docs:
        acc = doc.get("check_accuracy", {})
        for arrival, bounds in doc.get("results", {}).items():
            for bound, result in bounds.items():
                summary.append(
                    {
                        "arrival": arrival,
                        "bound ms": float(bound) * 1000,
                        "max QPS": result.get("qps"),
                        "p99 ms": None
                        if result.get("measured_latency") is None
                        else result["measured_latency"] * 1000,
                        "trials": result.get("trials"),
                        "accuracy %": acc.get("accuracy"),
                    }
                )
        for scan in doc.get("scan", {}).values():
            trials.extend(
                {
                    "arrival": t["arrival"],
                    "bound ms": t["bound_ms"],
                    "target qps": t["target_qps"],
                    "qps": t["qps"],
                    "p99 ms": t["p99_ms"],
                    "passed": t["passed"],
                    "entry": t.get("entry") or "-",
                }
                for t in scan
            )
    recorded = {t["entry"] for t in trials}
    for run in runs:
        if "peak_poisson" not in run.tags or run.entry in recorded:
            continue
        lg, cfg = run.record.get("loadgen", {}), run.record.get("config", {})
        trials.append(
            {
                "arrival": "exponential",
                "bound ms": cfg.get("target_latency_ms"),
                "target qps": cfg.get("target_qps"),
                "qps": lg.get("completed_samples_per_second"),
                "p99 ms": (lg.get("latency_p99_ns") or 0) / 1e6,
                "passed": None,
                "entry": run.entry,
            }
        )
    return pd.DataFrame(summary), pd.DataFrame(trials)


def provenance_table(runs: Sequence[RecordedRun]) -> pd.DataFrame:
    rows = []
    for run in runs:
        rec = run.record
        prov, cfg = rec.get("provenance", {}), rec.get("config", {})
        versions, host = prov.get("versions", {}), prov.get("host", {})
        tuning = rec.get("tuning") or {}
        rows.append(
            {
                "entry": run.entry,
                "scenario": cfg.get("scenario"),
                "mode": cfg.get("mode"),
                "backend": cfg.get("backend"),
                "layout": (
                    f"{cfg.get('workers')}w x {cfg.get('threads')}t x b{cfg.get('batch_size')}"
                ),
                "auto-tuned": tuning.get("summary", "-"),
                "model": (rec.get("model") or {}).get("name")
                or (rec.get("model") or {}).get("contract", {}).get("name"),
                "dataset": (rec.get("dataset") or {}).get("name"),
                "ckvision": versions.get("ckvision"),
                "onnxruntime": versions.get("onnxruntime"),
                "loadgen": versions.get("mlcommons-loadgen"),
                "python": versions.get("python"),
                "cpu": host.get("cpu_model"),
                "cores": host.get("cpu_affinity"),
                "host": host.get("hostname"),
                **({"node": rec["cluster"].get("node")} if rec.get("cluster") else {}),
            }
        )
    return pd.DataFrame(rows)


def _perf(runs: Sequence[RecordedRun]) -> pd.DataFrame:
    from ckvision.sweeps.grid import sweep_row
    from ckvision.sweeps.points import Point, PointResult

    rows = []
    for run in runs:
        if run.record.get("config", {}).get("mode") != "PerformanceOnly":
            continue
        row = sweep_row(PointResult(Point("ab", "", {}), run.record, run.entry))
        row["scenario"] = run.record["config"].get("scenario")
        rows.append(row)
    return pd.DataFrame(rows)


def ab_table(a: Sequence[RecordedRun], b: Sequence[RecordedRun]) -> pd.DataFrame:
    """Mean samples/s and p99 per (scenario, batch) in A and B, and B/A ratios."""
    fa, fb = _perf(a), _perf(b)
    if fa.empty or fb.empty:
        return pd.DataFrame()
    keys = ["scenario", "batch"]
    ga = fa.groupby(keys)[["samples/s", "p99 ms"]].mean()
    gb = fb.groupby(keys)[["samples/s", "p99 ms"]].mean()
    for side, frame, group in (("A", fa, ga), ("B", fb, gb)):  # cluster runs: say when a
        if "hardware" in frame:  # mean spans different hardware (never silently)
            group[f"hardware {side}"] = frame.groupby(keys)["hardware"].nunique()
    table = ga.join(gb, lsuffix=" A", rsuffix=" B", how="inner").reset_index()
    if table.empty:
        return table
    table["B/A samples/s"] = table["samples/s B"] / table["samples/s A"]
    table["B/A p99"] = table["p99 ms B"] / table["p99 ms A"]
    return table


def run_label(run: RecordedRun) -> str:
    """A short name for a run in a legend: scenario, batch, repetition of its entry."""
    config = run.record.get("config", {})
    return f"{config.get('scenario', '?')} b{config.get('batch_size', '?')} #{run.repetition}"


def latency_distribution(run: RecordedRun) -> pd.DataFrame | None:
    """The SUT-side latency percentile distribution of a performance run, from the
    ``latency.hgrm`` the run recorded (HdrHistogram's text: value in ms, percentile,
    count, 1/(1-percentile)); None for a run without one."""
    text = (run.record.get("logs") or {}).get("latency.hgrm")
    if not isinstance(text, str):
        return None
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        try:
            value, percentile = float(parts[0]), float(parts[1])
        except ValueError:
            continue  # the header line
        if percentile < 1.0:
            rows.append((percentile * 100.0, value, 1.0 / (1.0 - percentile)))
    if not rows:
        return None
    return pd.DataFrame(rows, columns=["percentile", "latency_ms", "inverse_tail"])


def accuracy_table(runs: Sequence[RecordedRun]) -> pd.DataFrame:
    """One row per accuracy run: label, dataset, images, top-1 and top-5 (%)."""
    rows = []
    for run in runs:
        accuracy = run.record.get("accuracy")
        if not accuracy:
            continue
        rows.append(
            {
                "run": run_label(run),
                "entry": run.entry,
                "dataset": accuracy.get("dataset") or run.record.get("dataset", {}).get("name"),
                "images": accuracy.get("total"),
                "top1 %": accuracy.get("top1"),
                "top5 %": accuracy.get("top5"),
            }
        )
    return pd.DataFrame(rows)


def precision_table(runs: Sequence[RecordedRun]) -> pd.DataFrame:
    """One row per (model, precision, calibration): Offline samples/s, SingleStream
    latency, top-1, and each as a ratio of the same model's FP32 row (issue 19)."""
    from ckvision.sweeps.grid import sweep_row
    from ckvision.sweeps.points import Point, PointResult

    rows = []
    for run in runs:
        rec, cfg = run.record, run.record.get("config", {})
        model = rec.get("model") or {}
        precision, method = run_precision(rec)
        row: dict[str, Any] = {
            "model": model.get("name") or (model.get("contract") or {}).get("name"),
            "precision": precision,
            "calibration": method,
        }
        if cfg.get("mode") == "AccuracyOnly":
            row["top-1 %"] = (rec.get("accuracy") or {}).get("top1")
        else:
            perf = sweep_row(PointResult(Point("precision", "", {}), rec, run.entry))
            if cfg.get("scenario") == "Offline":
                row["Offline samples/s"] = perf["samples/s"]
            elif cfg.get("scenario") == "SingleStream":
                row["SingleStream p50 ms"] = perf["p50 ms"]
                row["SingleStream p90 ms"] = perf["p90 ms"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty or frame["precision"].nunique() < 2:
        return pd.DataFrame()
    keys = ["model", "precision", "calibration"]
    values = [c for c in frame.columns if c not in keys]
    table = frame.groupby(keys, dropna=False)[values].mean().reset_index()
    for column, ratio in (
        ("Offline samples/s", "x FP32 samples/s"),
        ("SingleStream p50 ms", "x FP32 p50"),
        ("top-1 %", "x FP32 top-1"),
    ):
        if column not in table:
            continue
        base = table[table["precision"] == "fp32"].set_index("model")[column]
        table[ratio] = [
            value / base[m] if m in base and base[m] else None
            for m, value in zip(table["model"], table[column], strict=True)
        ]
    if "x FP32 top-1" in table:
        table["meets 99%"] = [
            None if pd.isna(r) else bool(r >= 0.99) for r in table["x FP32 top-1"]
        ]
    return table
