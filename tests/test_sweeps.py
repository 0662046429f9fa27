"""Sweeps without ck: ranges, bounds, the peak bisection, equal-spaced arrivals, point ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ckvision.backends import create_backend
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import ConfigError
from ckvision.models.contract import ModelContract
from ckvision.sweeps import (
    CkPointRunner,
    Point,
    PointResult,
    parse_bounds,
    parse_range,
    parse_setting_values,
    search_peak,
    setting_sweep,
    sweep_table,
)
from ckvision.sweeps.arrivals import run_equal_spaced
from ckvision.sweeps.peak import PeakResult, Trial, failed_checks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1..32", [1, 2, 4, 8, 16, 32]),
        ("4..20", [4, 8, 16]),
        ("1,3,5", [1, 3, 5]),
        ("7", [7]),
        ("3..3", [3]),
    ],
)
def test_parse_range(text: str, expected: list[int]) -> None:
    assert parse_range(text, "batch sizes") == expected


@pytest.mark.parametrize(
    ("text", "max_value", "message"),
    [
        ("", 0, "is empty"),
        ("8..2", 0, "empty or decreasing"),
        ("4,2", 0, "not increasing"),
        ("2,2", 0, "not increasing"),
        ("0,1", 0, "must be positive"),
        ("a,b", 0, "use e.g."),
        ("1..64", 32, "above the model's maximum batch 32"),
    ],
)
def test_bad_ranges_are_one_line(text: str, max_value: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_range(text, "batch sizes", max_value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "must be > 0"),
        ("-5,10", "must be > 0"),
        ("50,10", "not increasing"),
        ("x", "use ms values"),
        ("", "none given"),
    ],
)
def test_bad_bounds(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_bounds(text)


def _system(capacity: float, bound: float = 10.0, noise_at: float | None = None):
    """A queue whose p99 grows as the offered rate nears ``capacity``."""
    calls: list[float] = []

    def measure(qps: float) -> Trial:
        calls.append(qps)
        load = qps / capacity
        p99 = 1.0 / max(1e-6, 1 - load) if load < 1 else 1e6
        if noise_at is not None and qps == noise_at and calls.count(qps) == 1:
            p99 = 0.5  # one lucky measurement
        achieved = min(qps, capacity)
        return Trial("exponential", bound, qps, achieved, p99, p99 / 2)

    return measure, calls


def test_peak_search_brackets_then_bisects_to_tolerance() -> None:
    measure, calls = _system(capacity=1000.0)  # p99 <= 10 ms up to 900 qps
    peak = search_peak(measure, 100.0, tolerance=0.05, max_trials=20, log=lambda _: None)
    assert 800 <= peak.target_qps <= 900 and peak.p99_ms is not None and peak.p99_ms <= 10
    assert calls[:4] == [100.0, 200.0, 400.0, 800.0] and 1600.0 in calls
    assert peak.result_line().startswith("===RESULT: exponential target_latency=0.01 ")


def test_peak_search_is_bounded_in_trials() -> None:
    measure, calls = _system(capacity=1000.0)
    search_peak(measure, 1.0, max_trials=5, log=lambda _: None)
    assert len(calls) == 5


def test_peak_near_edge_must_pass_twice() -> None:
    # 950 fails in truth (p99 20 ms) but its first measurement is lucky
    measure, calls = _system(capacity=1000.0, bound=10.5, noise_at=950.0)
    peak = search_peak(measure, 800.0, tolerance=0.05, max_trials=20, log=lambda _: None)
    assert calls.count(950.0) == 2 and peak.target_qps < 950.0


def test_a_trial_loadgen_calls_invalid_does_not_pass() -> None:
    within = Trial("exponential", 10.0, 100.0, 100.0, 5.0, 2.0, "VALID")
    assert within.passed
    invalid = Trial("exponential", 10.0, 100.0, 100.0, 5.0, 2.0, "INVALID")
    assert not invalid.passed and invalid.line().endswith("fail (LoadGen: INVALID)")
    why = failed_checks({"early_stopping_satisfied": False, "min_duration_satisfied": True})
    assert why.startswith("early stopping") and "duration" not in why
    told = Trial("exponential", 10.0, 100.0, 100.0, 5.0, 2.0, "INVALID", invalid_because=why)
    assert told.line().endswith(f"fail (LoadGen: INVALID: {why})")
    assert Trial("linear", 10.0, 100.0, 100.0, 5.0, 2.0, None).passed  # no LoadGen verdict


def test_unreachable_bound_gives_minus_one() -> None:
    measure, _ = _system(capacity=1000.0, bound=0.5)  # p99 >= 1 ms at any rate
    peak: PeakResult = search_peak(measure, 100.0, max_trials=20, log=lambda _: None)
    assert peak.qps == -1 and peak.p99_ms is None
    assert peak.result_line().endswith("qps=-1")


def test_equal_spaced_arrivals_keep_the_rate(
    tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset,
) -> None:
    backend = create_backend("null", Path("none"), tiny_contract)
    result = run_equal_spaced(backend, np.asarray(tiny_dataset.images), 400.0, 0.5, workers=2)
    assert len(result.latencies_s) == 200 and result.failures == 0
    assert 300 < result.qps < 480 and (result.latencies_s > 0).all()


def test_point_ids_depend_on_settings_and_provenance() -> None:
    def runner(fp: dict) -> CkPointRunner:
        return CkPointRunner(
            "null", ["x"], {"CK_LOADGEN_MIN_DURATION_S": "1"}, fp, log=lambda _: None
        )

    point = Point("batch", "batch=4", {"CK_BATCH_SIZE": "4"})
    a, b = runner({"v": 1}), runner({"v": 2})
    assert a.point_id(point) == runner({"v": 1}).point_id(point)
    assert a.point_id(point) != b.point_id(point)
    assert a.point_id(point) != a.point_id(Point("batch", "b", {"CK_BATCH_SIZE": "8"}))
    assert a.entry_name(point).startswith("ckvision.sweep.batch.")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "bogus"}, "unknown"),
        ({"tags": ["a b"]}, "experiment tag 'a b'"),
        ({"base_env": {"X;rm": "1"}}, "bad env var name"),
    ],
)
def test_runner_rejects_bad_input(kwargs: dict, message: str) -> None:
    args = {"backend": "null", "tags": ["x"], "base_env": {}, **kwargs}
    with pytest.raises(ConfigError, match=message):
        CkPointRunner(args["backend"], args["tags"], args["base_env"], {})


class _InProcessRunner(CkPointRunner):
    """Each point through the run pipeline in this process (``ck benchmark`` runs the
    same pipeline in the CK program; tests/test_sweeps_ck.py goes through ck)."""

    def __init__(self, run_env: dict[str, str], out: Path) -> None:
        super().__init__("onnxruntime", ["t20"], {"CK_AUTOTUNE": "off"}, {}, log=lambda _: None)
        self.run_env, self.out = run_env, out
        self.lines: list[str] = []

    def run(self, point: Point) -> PointResult:
        from ckvision.program import run

        env = {**self.run_env, **self.base_env, **point.env}
        record = run(env, None, self.out / point.label, autotune=False, log=self.lines.append)
        result = PointResult(point, record, self.entry_name(point))
        self.done.append(result)
        return result


@pytest.mark.parametrize(
    ("setting", "values", "column", "notes"),
    [
        ("CK_PREPROCESS_PREFETCH", "0,2", "preprocess_prefetch", 1),  # 2: JPEG input only
        ("triton_max_queue_delay_us", "0,100", "triton_max_queue_delay_us", 2),  # triton only
    ],
)
def test_a_setting_sweep_records_each_value(
    setting: str,
    values: str,
    column: str,
    notes: int,
    tiny_run_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``ckvision sweep setting``: any setting of the one table is an axis; each point's
    run records its own value, and the table shows it."""
    var, texts = parse_setting_values(setting, values)
    runner = _InProcessRunner(tiny_run_env, tmp_path)
    results = setting_sweep(runner, var, texts)
    recorded = [r.record["config"][column] for r in results]
    assert recorded == [int(v) for v in values.split(",")]
    assert [r.point.env[var] for r in results] == values.split(",")
    assert len({runner.entry_name(r.point) for r in results}) == 2  # two points, two entries
    assert all(r.record["config"]["scenario"] == "Offline" for r in results)
    table = sweep_table(results, "setting", column)
    assert list(table[column]) == recorded and table.columns[0] == column
    assert results[0].point.tags == (f"{var.lower().removeprefix('ck_')}.{texts[0]}",)
    # a value this run (onnxruntime, preprocessed input) has no use for is said, never
    # silently dropped
    said = [line for line in runner.lines if line.startswith(f"note: {var}")]
    assert len(said) == notes


@pytest.mark.parametrize(
    ("setting", "values", "message"),
    [
        ("CK_NOPE", "1", r"--setting 'CK_NOPE' is no setting"),
        ("CK_TRITON_INSTANCES", "1,0", r"CK_TRITON_INSTANCES=0 must be positive"),
        ("CK_PREPROCESS_PREFETCH", "1,x", r"CK_PREPROCESS_PREFETCH='x' is not an integer"),
        ("CK_TRITON_INSTANCES", "2,2", r"distinct values"),
        ("CK_LOADGEN_SCENARIO", "Offline", r"the sweep sets it"),
    ],
)
def test_bad_setting_sweeps_are_one_line(setting: str, values: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_setting_values(setting, values)
    assert "\n" not in str(caught.value)
