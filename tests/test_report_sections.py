"""The report's latency-distribution and accuracy sections, from recorded runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ckvision.analysis.report import write_report
from ckvision.analysis.sections import accuracy_table, latency_distribution
from ckvision.experiments.entries import RecordedRun

HGRM = """       Value     Percentile TotalCount 1/(1-Percentile)

       2.000 0.000000000000          1           1.00
       4.000 0.500000000000          5           2.00
       9.000 0.900000000000          9          10.00
      12.000 1.000000000000         10
#[Mean    =        5.000, StdDeviation   =        3.000]
"""


def _run(record: dict[str, Any], entry: str = "e") -> RecordedRun:
    base = {"config": {"scenario": "Offline", "batch_size": 8, "mode": "PerformanceOnly"}}
    return RecordedRun(entry, ("t",), "p", 1, {**base, **record}, Path("/nonexistent"))


@pytest.mark.timeout(30)
def test_latency_distribution_reads_the_recorded_hgrm() -> None:
    frame = latency_distribution(_run({"logs": {"latency.hgrm": HGRM}}))
    assert frame is not None
    assert frame["percentile"].tolist() == [0.0, 50.0, 90.0]  # the 100% row has no tail
    assert frame["latency_ms"].tolist() == [2.0, 4.0, 9.0]
    assert frame["inverse_tail"].tolist() == pytest.approx([1.0, 2.0, 10.0])
    assert latency_distribution(_run({"logs": {}})) is None
    assert latency_distribution(_run({})) is None


@pytest.mark.timeout(30)
def test_accuracy_table_has_one_row_per_accuracy_run() -> None:
    accuracy = {"top1": 57.031, "top5": 84.375, "total": 256, "dataset": "ckvision-sample-256"}
    table = accuracy_table([_run({"accuracy": accuracy}, "a"), _run({"accuracy": None}, "b")])
    assert table["entry"].tolist() == ["a"]
    assert table.loc[0, "top1 %"] == 57.031 and table.loc[0, "images"] == 256


@pytest.mark.timeout(60)
def test_report_shows_latency_distribution_and_accuracy_pictures(tmp_path: Path) -> None:
    perf = _run({"logs": {"latency.hgrm": HGRM}, "loadgen": {"scenario": "Offline"}}, "perf")
    accuracy = {"top1": 75.0, "top5": 100.0, "total": 40, "dataset": "tiny"}
    acc = _run({"accuracy": accuracy, "loadgen": {"scenario": "Offline"}}, "acc")
    out = tmp_path / "report.html"
    said: list[str] = []
    write_report("t", out, runs=[perf, acc], png_dir=tmp_path / "png", log=said.append)
    images = re.findall(r'<img alt="([^"]+)"', out.read_text())
    assert {"latency distribution", "accuracy per run"} <= set(images)
    assert said[0].endswith("(2 runs, 2 plots)")
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == [
        "accuracy.png",
        "latency_distribution.png",
    ]
