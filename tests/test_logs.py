"""The LoadGen log parser, against committed real logs and logs made here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ckvision.errors import RunError
from ckvision.harness.logs import parse_detail, parse_output_dir, parse_summary

DATA = Path(__file__).parent / "data" / "loadgen"


def test_offline_fixture() -> None:
    result = parse_output_dir(DATA / "offline")
    assert result["scenario"] == "Offline"
    assert result["mode"] == "PerformanceOnly"
    assert result["result_validity"] == "INVALID"
    assert result["min_duration_satisfied"] is False
    assert result["min_queries_satisfied"] is True
    assert result["early_stopping_satisfied"] is True
    assert result["samples_per_second"] == 125474
    assert result["headline"] == "Samples per second"
    assert result["headline_value"] == 125474.0
    assert result["result_query_count"] == 1
    assert result["latency_min_ns"] == 548169
    assert result["latency_p50_ns"] == 2492946
    assert result["latency_p90_ns"] == 3773778
    assert result["latency_p99_9_ns"] == 4080523
    assert result["recommendations"] == [
        "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
    ]
    assert result["invalid_reason"].startswith("Increase expected QPS")
    assert result["errors"] == 0
    assert result["loadgen_version"].startswith("6.0.17")


def test_server_fixture() -> None:
    result = parse_output_dir(DATA / "server")
    assert result["scenario"] == "Server"
    assert result["result_validity"] == "VALID"
    assert result["performance_constraints_satisfied"] is True
    assert result["scheduled_samples_per_second"] == 1566.16
    assert result["completed_samples_per_second"] == 1565.91
    assert result["headline"] == "Completed samples per second"
    assert result["result_query_count"] == 1500
    percentiles = [result[f"latency_p{p}_ns"] for p in ("50", "90", "95", "97", "99", "99_9")]
    assert percentiles[:2] == [874589, 2246282]  # as logged
    assert percentiles == sorted(percentiles)  # each under its own key, none swapped
    assert result["early_stopping_lines"] == ["Run successful."]
    assert result["recommendations"] == []
    assert result["errors"] == 1
    assert "Max query count reached" in result["error_messages"][0]


@pytest.mark.parametrize("missing", ["mlperf_log_detail.txt", "mlperf_log_summary.txt"])
def test_missing_log_is_a_run_error(tmp_path: Path, missing: str) -> None:
    shutil.copytree(DATA / "offline", tmp_path / "run")
    (tmp_path / "run" / missing).unlink()
    with pytest.raises(RunError, match=f"LoadGen wrote no {missing}"):
        parse_output_dir(tmp_path / "run")


def test_empty_log_is_a_run_error(tmp_path: Path) -> None:
    shutil.copytree(DATA / "offline", tmp_path / "run")
    (tmp_path / "run" / "mlperf_log_detail.txt").write_text("")
    with pytest.raises(RunError, match="no mlperf_log_detail.txt"):
        parse_output_dir(tmp_path / "run")


def test_truncated_performance_log_is_a_run_error(tmp_path: Path) -> None:
    shutil.copytree(DATA / "offline", tmp_path / "run")
    detail = tmp_path / "run" / "mlperf_log_detail.txt"
    lines = detail.read_text().splitlines()
    keep = [line for line in lines if '"result_' not in line]
    detail.write_text("\n".join(keep) + '\n:::MLLOG {"key": "cut sho')
    with pytest.raises(RunError, match="has no result"):
        parse_output_dir(tmp_path / "run")


def test_detail_counts_errors_and_warnings() -> None:
    text = "\n".join(
        [
            "noise before the log",
            ':::MLLOG {"key": "error_runtime", "value": "boom", "metadata": {"is_error": true}}',
            ':::MLLOG {"key": "warning_generic_message", "value": "w", '
            '"metadata": {"is_error": false, "is_warning": true}}',
            ':::MLLOG {"key": "result_99.00_percentile_per_query_latency_ns", "value": 7}',
            ':::MLLOG {"key": "early_stopping_result", "value": " * A.\\n more  * B."}',
        ]
    )
    result = parse_detail(text)
    assert result["errors"] == 1 and result["warnings"] == 1
    assert result["error_messages"] == ["error_runtime: boom"]
    assert result["query_latency_p99_ns"] == 7
    assert result["early_stopping_lines"] == ["A. more", "B."]


def test_summary_headline_for_latency_scenarios() -> None:
    result = parse_summary("90.0th percentile latency (ns) : 3645\nResult is : VALID\n")
    assert result == {
        "recommendations": [],
        "headline": "90.0th percentile latency (ns)",
        "headline_value": 3645.0,
    }


def test_multistream_metric_is_per_query() -> None:
    detail = "\n".join(
        ":::MLLOG " + json.dumps({"key": key, "value": value, "metadata": {}})
        for key, value in [
            ("effective_scenario", "MultiStream"),
            ("result_99.00_percentile_latency_ns", 100),
            ("result_99.00_percentile_per_query_latency_ns", 700),
        ]
    )
    result = parse_detail(detail)
    assert result["latency_p99_ns"] == 700  # LoadGen's MultiStream metric
    assert result["sample_latency_p99_ns"] == 100
    single = parse_detail(detail.replace("MultiStream", "SingleStream"))
    assert single["latency_p99_ns"] == 100 and "sample_latency_p99_ns" not in single


def test_logs_missing_on_a_full_disk_name_the_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import namedtuple

    with pytest.raises(RunError, match="the test did not run$"):
        parse_output_dir(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10, 10, 0))
    with pytest.raises(RunError, match=r"could not write .* is full \(0 bytes free\)$"):
        parse_output_dir(tmp_path)
