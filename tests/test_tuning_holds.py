"""An auto-tuner that holds (issue 19 part 3), with scripted measurements, no timing.

A probe whose repeated rounds disagree is used but never cached; a cached choice that a
run misses by more than 10% (either way) is dropped, so the next run probes again; the
entry records the choice, whether it came from the cache, the spread and the check.
The backend is the real ONNX Runtime on the tiny model; only the probe's rates are
scripted (``measure_layout``), so the tests assert decisions, never speeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ckvision.tuning as tuning
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.models.contract import ModelContract
from ckvision.tuning.probe import Layout, Measurement

pytestmark = pytest.mark.timeout(120)

FAST, SLOW = Layout(1, 1, 4), Layout(1, 1, 1)


class Script:
    """Rates ``measure_layout`` returns, in order, per layout (then the last one again)."""

    def __init__(self, rates: dict[Layout, list[float]]) -> None:
        self.rates = {k: list(v) for k, v in rates.items()}
        self.calls: list[Layout] = []

    def __call__(self, _backend: Any, _samples: Any, layout: Layout, *_a: Any, **_k: Any):  # type: ignore[no-untyped-def]
        self.calls.append(layout)
        queue = self.rates[layout]
        return Measurement(layout, queue.pop(0) if len(queue) > 1 else queue[0])


@pytest.fixture()
def probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    """``probe(rates)``: one autotune of an Offline performance run with scripted rates."""
    monkeypatch.setattr(tuning, "candidate_layouts", lambda *_a, **_k: [FAST, SLOW])
    monkeypatch.setattr(tuning, "harness_cost_s", lambda *_a, **_k: 0.0)
    env = {"CK_TUNING_CACHE": str(tmp_path / "tuning.json")}

    def run(
        rates: dict[Layout, list[float]],
        model: Path,
        contract: ModelContract,
        data: PreprocessedDataset,
    ) -> tuple[RunConfig, dict[str, Any], Script, list[str]]:
        script = Script(rates)
        monkeypatch.setattr(tuning, "measure_layout", script)
        lines: list[str] = []
        config = RunConfig(scenario=Scenario.OFFLINE, mode=Mode.PERFORMANCE)
        tuned, record = tuning.autotune(
            config, model, contract, data.path, set(), log=lines.append, env=env, budget_s=0.01
        )
        assert record is not None
        return tuned, record, script, lines

    run.env = env  # type: ignore[attr-defined]
    return run


def _cache(env: dict[str, str]) -> dict[str, Any]:
    path = Path(env["CK_TUNING_CACHE"])
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def test_a_probe_whose_rounds_agree_is_cached_with_its_spread(
    probe: Any, tiny_onnx_model: Path, tiny_contract: ModelContract, tiny_dataset: Any
) -> None:
    rates = {FAST: [200.0, 200.0, 204.0, 198.0], SLOW: [100.0, 101.0, 99.0, 100.0]}
    tuned, record, _s, _l = probe(rates, tiny_onnx_model, tiny_contract, tiny_dataset)
    assert tuned.batch_size == 4 and not record["from_cache"] and record["cached"]
    assert record["spread"] == pytest.approx((204 - 198) / 200, abs=1e-4)
    stored = _cache(probe.env)[record["cache_key"]]
    assert stored["spread"] == record["spread"]
    again, record2, script, _l = probe(rates, tiny_onnx_model, tiny_contract, tiny_dataset)
    assert record2["from_cache"] and script.calls == []  # nothing measured again
    assert record2["spread"] == record["spread"] and again == tuned


def test_a_probe_whose_rounds_disagree_is_used_but_not_cached(
    probe: Any, tiny_onnx_model: Path, tiny_contract: ModelContract, tiny_dataset: Any
) -> None:
    # the machine is busy: the fast layout's rounds give 200, 150, 210
    rates = {FAST: [200.0, 200.0, 150.0, 210.0], SLOW: [100.0, 100.0, 100.0, 100.0]}
    tuned, record, _s, lines = probe(rates, tiny_onnx_model, tiny_contract, tiny_dataset)
    assert tuned.batch_size == 4  # this run still uses the best it saw
    assert record["spread"] == pytest.approx(60 / 200, abs=1e-4)
    assert record["cached"] is False and "disagree by 30%" in record["not_cached"]
    assert "not cached: spread 30%" in lines[0]
    assert record["cache_key"] not in _cache(probe.env)
    _t, record2, script, _l = probe(rates, tiny_onnx_model, tiny_contract, tiny_dataset)
    assert not record2["from_cache"] and script.calls  # the next run probes again


@pytest.mark.parametrize(
    ("achieved", "held"),
    [(195.0, True), (181.0, True), (150.0, False), (260.0, False)],  # predicted 200
)
def test_a_run_that_misses_the_prediction_drops_the_cached_choice(
    probe: Any,
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_dataset: Any,
    achieved: float,
    held: bool,
) -> None:
    rates = {FAST: [200.0], SLOW: [100.0]}
    _t, record, _s, _l = probe(rates, tiny_onnx_model, tiny_contract, tiny_dataset)
    assert record["expected_samples_per_s"] == pytest.approx(200.0)
    lines: list[str] = []
    check = tuning.validate_choice(record, achieved, env=probe.env, log=lines.append)
    assert check["checked"] and check["held"] is held
    assert check["ratio"] == pytest.approx(achieved / 200.0, abs=1e-4)
    assert (record["cache_key"] in _cache(probe.env)) is held
    assert check["action"] == ("kept" if held else "dropped: the next run probes again")
    assert bool(lines) is not held  # one line says so when the choice is dropped
    _t, record2, _s, _l = probe(rates, tiny_onnx_model, tiny_contract, tiny_dataset)
    assert record2["from_cache"] is held


def test_what_is_not_checked_says_why() -> None:
    record = {"expected_samples_per_s": 100.0, "cache_key": "k", "cache": "/nonexistent"}
    assert tuning.validate_choice(None, 100.0)["checked"] is False
    assert "accuracy" in tuning.validate_choice(record, None)["why"]
    server = tuning.validate_choice(record, 10.0, scenario=Scenario.SERVER)
    assert server["checked"] is False and "target QPS" in server["why"]
    latency = tuning.validate_choice({"chosen": {"target_latency_ms": 1.0}}, 100.0)
    assert latency["checked"] is False


def test_the_run_entry_records_choice_cache_spread_and_check(
    probe: Any,
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset,
    tmp_path: Path,
) -> None:
    """Through the program: ``tuning.validation`` compares LoadGen's own throughput."""
    from ckvision.program import resolve_inputs, run_program

    rates = {FAST: [200.0], SLOW: [100.0]}
    tuned, record, _s, _l = probe(rates, tiny_onnx_model, tiny_contract, tiny_dataset)
    config = tuned.with_(min_duration_s=0.05, count_override=64, target_qps=2000.0, threads=1)
    inputs = resolve_inputs(
        tiny_contract.to_env(), "onnxruntime", tiny_onnx_model, tiny_dataset.path
    )
    run = run_program(
        config,
        inputs,
        tmp_path / "run",
        log=lambda _: None,
        tuning=record,
        check_tuning=lambda result: tuning.validate_choice(
            record, result.samples_per_second, scenario=result.scenario, env=probe.env, log=print
        ),
    )
    entry = run["tuning"]
    assert entry["layout"] == FAST.describe() and entry["from_cache"] is False
    assert entry["cached"] is True and entry["spread"] == 0.0
    check = entry["validation"]
    achieved = run["loadgen"]["samples_per_second"]
    assert check["achieved_samples_per_s"] == pytest.approx(achieved, rel=1e-3)
    assert check["held"] is (abs(achieved / 200.0 - 1) <= tuning.MISS_LIMIT)
    assert (record["cache_key"] in _cache(probe.env)) is check["held"]


def test_ckvision_run_validates_its_tuned_choice(
    probe: Any,
    monkeypatch: pytest.MonkeyPatch,
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset,
    tmp_path: Path,
) -> None:
    """The CLI wires the check: a default Offline run's entry has ``tuning.validation``."""
    from ckvision.cli import main
    from ckvision.experiments.record import collect_run

    monkeypatch.setattr(tuning, "measure_layout", Script({FAST: [200.0], SLOW: [100.0]}))
    for key, value in {**tiny_contract.to_env(), **probe.env}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    args = ["run", "--backend", "onnxruntime", "--model", str(tiny_onnx_model), "--quiet"]
    args += ["--dataset", str(tiny_dataset.path), "--output-dir", str(out)]
    args += ["--scenario", "Offline", "--mode", "PerformanceOnly", "--min-duration-s", "0.05"]
    args += ["--count-override", "64", "--target-qps", "2000", "--threads", "1"]
    assert main(args) == 0
    entry = collect_run(out)["tuning"]
    assert entry["layout"] == FAST.describe() and entry["cached"] is True
    assert "threads" in entry["explicit"] and entry["validation"]["checked"] is True
    assert entry["validation"]["predicted_samples_per_s"] == entry["expected_samples_per_s"]


@pytest.mark.parametrize(
    ("achieved", "held"),
    [(61.0, True), (100.0, True), (108.0, True), (58.0, False), (112.0, False)],
)
def test_jpeg_input_is_checked_against_both_stages(
    tmp_path: Path, achieved: float, held: bool
) -> None:
    """JPEG-in: inference 200/s and preprocessing 100/s on the same cores allow 66.7/s (one
    after the other) to 100/s (fully overlapped), each with the 10% margin; the inference
    rate alone (200) would drop a choice that held."""
    record = {
        "expected_samples_per_s": 200.0,
        "preprocess": {"threads": 2, "images_per_s": 100.0},
        "cache_key": "k",
        "cache": str(tmp_path / "tuning.json"),
    }
    check = tuning.validate_choice(record, achieved, log=lambda _line: None)
    assert check["held"] is held
    assert check["expected_range"] == [pytest.approx(66.67, abs=0.01), 100.0]


@pytest.mark.parametrize(
    ("achieved", "held"),
    [(136.0, True), (150.0, True), (164.0, True), (134.0, False), (166.0, False)],
)
def test_jpeg_input_is_checked_against_the_pipeline_probe_when_it_ran(
    tmp_path: Path, achieved: float, held: bool
) -> None:
    """JPEG-in with the pipeline probed (``tuning.prefetch``): it timed the run's own path
    (150/s), so that is the prediction, +-10%; the two stages' range (66.7-100 here) and
    the inference rate (200) are not."""
    record = {
        "expected_samples_per_s": 200.0,
        "preprocess": {"threads": 2, "images_per_s": 100.0},
        "prefetch": {"depth": 1, "images_per_s": 150.0},
        "cache_key": "k",
        "cache": str(tmp_path / "tuning.json"),
    }
    check = tuning.validate_choice(record, achieved, log=lambda _line: None)
    assert check["held"] is held
    assert check["predicted_samples_per_s"] == 150.0 and "expected_range" not in check
