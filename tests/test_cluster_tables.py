"""Tables of points run on a Ray cluster (issue 21) never mix nodes silently. No Ray
needed: the records are what :func:`ckvision.cluster.node.run_point` returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ckvision.analysis import summary_table
from ckvision.analysis.frame import run_row
from ckvision.analysis.sections import ab_table, provenance_table
from ckvision.experiments.entries import RecordedRun
from ckvision.sweeps import Point, PointResult, sweep_table

pytestmark = pytest.mark.timeout(30)
FAST, SLOW = "Xeon x8", "EPYC x2"


def _record(qps: float, node: str | None, hardware: str, batch: int = 4) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_version": 1,
        "loadgen": {
            "scenario": "Offline",
            "mode": "PerformanceOnly",
            "samples_per_second": qps,
            "latency_p99_ns": 5e6,
            "result_validity": "VALID",
        },
        "config": {"batch_size": batch, "scenario": "Offline", "mode": "PerformanceOnly"},
        "model": {"name": "tiny"},
        "dataset": {"name": "d"},
        "backend": {"name": "onnxruntime"},
        "provenance": {"host": {"cpu_model": hardware, "hostname": "h"}, "versions": {}},
    }
    if node:
        record["cluster"] = {"node": node, "hardware": hardware, "node_id": node * 4}
    return record


def _run(record: dict[str, Any], name: str) -> RecordedRun:
    return RecordedRun(name, ("t",), "p", 1, record, Path(name))


def test_sweep_table_has_node_and_hardware_and_orders_rows_by_node() -> None:
    results = [
        PointResult(Point("batch", f"batch={b}", {}), _record(q, n, hw, b), f"e{i}")
        for i, (b, q, n, hw) in enumerate(
            [(1, 10.0, "b/2", SLOW), (1, 50.0, "a/1", FAST), (2, 12.0, "b/2", SLOW)]
        )
    ]
    table = sweep_table(results, "batch")
    assert list(table["node"]) == ["a/1", "b/2", "b/2"]
    assert list(table["hardware"]) == [FAST, SLOW, SLOW]
    assert list(table["samples/s"]) == [50.0, 10.0, 12.0]  # one row per node's point
    local = sweep_table(
        [PointResult(Point("batch", "b", {}), _record(9.0, None, FAST), "e")], "batch"
    )
    assert "node" not in local.columns  # a local sweep's table is unchanged


def test_results_table_shows_the_node_only_for_cluster_runs() -> None:
    runs = [_run(_record(10.0, "a/1", FAST), "x"), _run(_record(20.0, None, FAST), "y")]
    table = summary_table(pd.DataFrame([run_row(r) for r in runs]))
    assert list(table["node"].fillna("-")) == ["a/1", "-"]
    assert "node" not in summary_table(pd.DataFrame([run_row(runs[1])])).columns


def test_ab_table_says_how_many_kinds_of_hardware_each_mean_spans() -> None:
    a = [_run(_record(10.0, "a/1", FAST), "a1"), _run(_record(30.0, "b/2", SLOW), "a2")]
    b = [_run(_record(40.0, "a/1", FAST), "b1")]
    table = ab_table(a, b)
    assert list(table["hardware A"]) == [2] and list(table["hardware B"]) == [1]
    assert list(table["samples/s A"]) == [20.0]  # the mean, flagged as mixed
    assert list(provenance_table(a)["node"]) == ["a/1", "b/2"]
    local = ab_table([_run(_record(10.0, None, FAST), "l")], [_run(_record(20.0, None, FAST), "m")])
    assert "hardware A" not in local.columns
