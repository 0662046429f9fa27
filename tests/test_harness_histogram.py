"""The SUT-side HDR histogram and the per-second progress of a performance run."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TinyRun
from hdrh.histogram import HdrHistogram

import ckvision.harness.run as run_module
from ckvision.backends import create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.harness.histogram import HDR_FILE, HGRM_FILE, LatencyRecorder
from ckvision.harness.progress import format_progress, report_progress
from ckvision.models.contract import ModelContract


@pytest.mark.parametrize("scenario", [Scenario.OFFLINE, Scenario.SINGLE_STREAM])
def test_performance_run_saves_histogram_of_every_sample(
    scenario: Scenario,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    config = quick_config(
        scenario=scenario, mode=Mode.PERFORMANCE, batch_size=4, count_override=200, progress="off"
    )
    result = tiny_run(
        config, create_backend("null", Path("none"), tiny_contract), tmp_path, log=lambda _: None
    )
    latency = result.latency
    assert latency is not None
    assert latency["count"] >= 200
    if scenario is Scenario.SINGLE_STREAM:  # one sample per query
        assert latency["count"] == result.summary["result_query_count"]
    assert latency["p50_ns"] <= latency["p90_ns"] <= latency["p99_ns"] <= latency["max_ns"]
    decoded = HdrHistogram.decode((tmp_path / HDR_FILE).read_text().strip())
    assert decoded.get_total_count() == latency["count"]
    hgrm = (tmp_path / HGRM_FILE).read_text()
    assert "Value     Percentile TotalCount" in hgrm and "#[Max" in hgrm
    # SUT-side latency cannot exceed LoadGen's (LoadGen's clock starts earlier, ends later)
    assert latency["max_ns"] <= result.summary["latency_max_ns"] + 1_000_000


def test_accuracy_run_has_no_histogram(
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    result = tiny_run(
        quick_config(mode=Mode.ACCURACY),
        create_backend("null", Path("none"), tiny_contract),
        tmp_path,
        log=lambda _: None,
    )
    assert result.latency is None and not (tmp_path / HGRM_FILE).exists()


def test_recorder_keeps_only_completed_samples() -> None:
    recorder = LatencyRecorder()
    recorder.observe([5_000, 7_000], True)
    recorder.observe([1_000], False)  # completed empty: failed or aborted, not a latency
    assert recorder.count == 2
    assert recorder.take_window() == [5_000, 7_000] and recorder.take_window() == []


def test_progress_plain_lines_and_quiet(
    monkeypatch: pytest.MonkeyPatch,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(run_module, "PROGRESS_EVERY_S", 0.05)
    lines: list[str] = []
    for progress in ("plain", "off"):
        config = quick_config(
            scenario=Scenario.SERVER,
            mode=Mode.PERFORMANCE,
            target_qps=400.0,
            count_override=100,
            min_duration_s=0.3,
            progress=progress,
        )
        lines.clear()
        tiny_run(
            config, create_backend("null", Path("none"), tiny_contract), tmp_path, log=lines.append
        )
        progress_lines = [ln for ln in lines if ln.startswith("progress: ")]
        if progress == "plain":
            assert progress_lines and "completed=" in progress_lines[-1]
            assert "p99=" in progress_lines[-1] and "rate=" in progress_lines[-1]
        else:
            assert progress_lines == []


def test_progress_live_line_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Ledger:
        completed = 5
        issued = 6

    out, lines = Tty(), []
    recorder = LatencyRecorder()
    import time

    with report_progress("auto", Ledger(), recorder, lines.append, stream=out, interval_s=0.02):
        time.sleep(0.1)
    assert lines == [] and out.getvalue().startswith("\rprogress: ")
    assert out.getvalue().endswith("\n")


def test_format_progress_percentiles() -> None:
    line = format_progress(3.0, 10, 12, 5.0, [1_000_000] * 98 + [9_000_000] * 2)
    assert "completed=10 issued=12" in line and "p50=1.00 ms" in line and "p99=9.00 ms" in line


def test_batched_sut_records_latency_breakdown(
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    config = quick_config(
        scenario=Scenario.MULTI_STREAM,
        mode=Mode.PERFORMANCE,
        multistreamness=8,
        batch_size=4,
        progress="off",
    )
    result = tiny_run(
        config, create_backend("null", Path("none"), tiny_contract), tmp_path, log=lambda _: None
    )
    assert result.latency is not None
    stages = result.latency["breakdown"]
    assert set(stages) == {"queue_wait_ms", "batch_formation_ms", "inference_ms", "response_ms"}
    assert all(v >= 0 for v in stages.values())
    # the stages partition each sample's SUT-side latency
    assert sum(stages.values()) == pytest.approx(result.latency["mean_ns"] / 1e6, rel=1e-6)
