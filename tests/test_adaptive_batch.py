"""The Offline SUT settles its batch size inside the run (issue 19 part 3, CK_ADAPTIVE_BATCH).

The chooser's decisions are tested with a scripted clock (no timing assertions); one
real Offline run on the tiny model shows the SUT switching sizes and recording it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ckvision.tuning as tuning
from ckvision.backends import BackendOptions, create_backend
from ckvision.config import Mode, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.harness import run_benchmark
from ckvision.harness.adaptive import CLIMB_STEPS, SWITCH_MARGIN, BatchChooser
from ckvision.models.contract import ModelContract
from ckvision.tuning.probe import Layout, Measurement

pytestmark = pytest.mark.timeout(120)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _phase(chooser: BatchChooser, clock: Clock, seconds_per_batch: float) -> int:
    """Complete batches at the current size until the size changes; returns that size."""
    size = chooser.current
    while chooser.current == size and not chooser.settled:
        clock.now += seconds_per_batch
        chooser.completed(size, size)
    return size


def test_tries_start_half_and_double_then_keeps_the_fastest() -> None:
    clock = Clock()
    chooser = BatchChooser(4, phase_samples=32, clock=clock)
    assert chooser.candidates == [4, 2, 8]
    # the buffers are made for the largest size a climb may reach: 8, then 2 more steps
    assert chooser.reachable == [1, 2, 4, 8, 16, 32] and chooser.largest == 32
    # per-sample cost: batch 4 -> 10 ms, batch 2 -> 12 ms, batch 8 -> 8 ms, 16 -> 9 ms
    assert _phase(chooser, clock, 4 * 0.010) == 4
    assert _phase(chooser, clock, 2 * 0.012) == 2
    assert _phase(chooser, clock, 8 * 0.008) == 8
    assert not chooser.settled  # 8 won: one step further its way
    assert _phase(chooser, clock, 16 * 0.009) == 16
    assert chooser.settled and chooser.current == 8
    record = chooser.record()
    assert record["batch"] == 8 and record["start_batch"] == 4
    assert record["tried"] == pytest.approx(
        {"4": 100.0, "2": 83.33, "8": 125.0, "16": 111.11}, abs=0.01
    )
    chooser.completed(8, 8)
    assert chooser.current == 8  # settled: stays


def test_keeps_the_start_batch_when_it_is_the_fastest() -> None:
    clock = Clock()
    chooser = BatchChooser(2, phase_samples=8, clock=clock)
    for cost in (0.005, 0.009, 0.007):  # batch 2, 1, 4 per sample
        size = chooser.current
        _phase(chooser, clock, size * cost)
    assert chooser.settled and chooser.current == 2


def _settle(chooser: BatchChooser, clock: Clock, cost: dict[int, float]) -> list[int]:
    """Run phases at per-sample ``cost`` until the chooser settles; the sizes, in order."""
    order = []
    while not chooser.settled:
        order.append(_phase(chooser, clock, chooser.current * cost[chooser.current]))
    return order


def test_a_winning_neighbour_is_followed_its_way_to_the_best() -> None:
    """Seen on 2 vCPUs: a short probe tuned batch 16 (and 8) where batch 2 was 15-20 %
    faster; one neighbour each way never reached it."""
    clock = Clock()
    chooser = BatchChooser(16, phase_samples=32, clock=clock)
    cost = {1: 0.0031, 2: 0.0030, 4: 0.0033, 8: 0.0034, 16: 0.0036, 32: 0.0040}
    assert _settle(chooser, clock, cost) == [16, 8, 32, 4, 2]
    assert chooser.current == 2 and chooser.record()["batch"] == 2
    # batch 1 is 3 steps past the first neighbour: out of the climb's reach
    assert CLIMB_STEPS == 2 and 1 not in chooser.reachable


def test_the_climb_stops_at_the_first_step_that_is_not_the_fastest() -> None:
    clock = Clock()
    chooser = BatchChooser(8, phase_samples=32, clock=clock)
    cost = {1: 0.0031, 2: 0.0029, 4: 0.0030, 8: 0.0034, 16: 0.0036}
    assert _settle(chooser, clock, cost) == [8, 4, 16, 2, 1]  # 2 won, 1 did not
    assert chooser.current == 2
    clock, cost[2] = Clock(), 0.0031  # 4 is the best: 2 is tried and the climb ends
    chooser = BatchChooser(8, phase_samples=32, clock=clock)
    assert _settle(chooser, clock, cost) == [8, 4, 16, 2] and chooser.current == 4
    # no neighbour beats the tuned batch: nothing more is tried
    clock = Clock()
    chooser = BatchChooser(8, phase_samples=32, clock=clock)
    assert _settle(chooser, clock, {4: 0.004, 8: 0.003, 16: 0.0035}) == [8, 4, 16]
    assert chooser.current == 8


def test_batches_of_another_size_do_not_count() -> None:
    clock = Clock()
    chooser = BatchChooser(4, phase_samples=8, clock=clock)
    _phase(chooser, clock, 0.04)
    assert chooser.current == 2
    for _ in range(20):  # a worker still finishing batch-4 calls from the last phase
        clock.now += 1.0
        chooser.completed(4, 4)
    assert chooser.current == 2 and "2" not in chooser.record()["tried"]


def test_respects_the_models_max_batch_and_batch_one() -> None:
    capped = BatchChooser(8, max_batch=8, phase_samples=4)
    assert capped.candidates == [8, 4] and capped.reachable == [1, 2, 4, 8]
    assert BatchChooser(4, max_batch=16, phase_samples=4).largest == 16  # 32: not taken
    only = BatchChooser(1, max_batch=1, phase_samples=4)
    assert only.candidates == [1] and only.settled


def test_tries_only_the_neighbours_it_is_given() -> None:
    half = BatchChooser(4, phase_samples=4, neighbours=("half",))
    assert half.candidates == [4, 2] and half.reachable == [1, 2, 4]  # the climb: that way
    assert BatchChooser(4, phase_samples=4, neighbours=("double",)).candidates == [4, 8]
    alone = BatchChooser(4, phase_samples=4, neighbours=())
    assert alone.candidates == [4] and alone.settled and alone.current == 4
    assert alone.reachable == [4] and alone.largest == 4
    assert BatchChooser(1, phase_samples=4, neighbours=("half",)).settled  # no batch 0


@pytest.mark.parametrize(("lead", "kept"), [(1.015, 2), (1.03, 4)])
def test_another_batch_must_lead_by_the_switch_margin(lead: float, kept: int) -> None:
    """A lead inside a one-second phase's noise is no reason to switch (SWITCH_MARGIN)."""
    clock = Clock()
    chooser = BatchChooser(2, phase_samples=8, neighbours=("double",), clock=clock)
    _phase(chooser, clock, 2 * 0.010)  # batch 2: 100 samples/s
    _phase(chooser, clock, 4 * 0.010 / lead)  # batch 4: 100 x lead
    assert chooser.settled == (kept == 2)  # 4 won: batch 8 is tried next
    if not chooser.settled:
        assert _phase(chooser, clock, 8 * 0.010) == 8  # batch 8: 100 again
    assert chooser.settled and chooser.current == kept
    assert chooser.record()["switch_margin"] == SWITCH_MARGIN == 0.02


def _m(batch: int, rate: float, workers: int = 2, threads: int = 1) -> Measurement:
    return Measurement(Layout(workers, threads, batch), rate)


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        ({1: 190.0, 4: 193.0}, "on"),  # both within 5%: the probe cannot tell
        ({1: 195.0, 4: 179.0}, "half"),  # as seen on this VM: 2.5% and 10% behind
        ({1: 150.0, 4: 196.0}, "double"),
        ({1: 150.0, 4: 160.0}, "off"),  # the probe told them apart: no phase is wasted
        ({4: 150.0}, "half"),  # batch 1 not measured: the run tries it
    ],
)
def test_the_auto_tuner_asks_only_for_neighbours_its_probe_could_not_tell_apart(
    rates: dict[int, float], expected: str
) -> None:
    best = _m(2, 200.0)
    others = [_m(b, r) for b, r in rates.items()]
    # a neighbour batch at another split of the cores is another layout: it does not count
    results = [best, *others, _m(1, 199.0, workers=1, threads=2)]
    assert tuning._neighbours_to_try(best, results) == expected
    # a probe that agreed with itself within the margin changes nothing
    assert tuning._neighbours_to_try(best, results, 0.04) == expected


@pytest.mark.parametrize(
    ("spread", "expected"), [(None, "off"), (0.05, "off"), (0.09, "half"), (0.12, "on")]
)
def test_a_lead_within_the_probes_own_spread_is_tried_in_the_run(
    spread: float | None, expected: str
) -> None:
    """Seen on 2 vCPUs: batch 4 tuned at a spread of 12 %, batch 2 put 5.0 % behind it
    (not tried) and 10 % faster over 10 s."""
    best = _m(4, 331.2)
    results = [best, _m(2, 314.6), _m(8, 300.0)]  # 5.0 % and 9.4 % behind
    assert tuning._neighbours_to_try(best, results, spread) == expected


def test_an_offline_run_settles_its_batch_and_records_it(
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset,
    quick_config: Callable[..., Any],
    tmp_path: Path,
) -> None:
    config = quick_config(
        scenario=Scenario.OFFLINE,
        mode=Mode.PERFORMANCE,
        batch_size=4,
        adaptive_batch="on",
        target_qps=10.0,  # phases of 4 x batch x workers = 16 samples
        count_override=2000,
    )
    backend = create_backend("onnxruntime", tiny_onnx_model, tiny_contract, BackendOptions())
    with backend:
        result = run_benchmark(
            config, backend, tiny_dataset, tmp_path, model_name="tiny", log=lambda _: None
        )
    record = result.adaptive
    assert record is not None and record["phase_samples"] == 16
    tried = [int(b) for b in record["tried"]]
    assert record["settled"] and tried[:3] == [4, 2, 8]
    # any further size is a climb: one step past the fastest so far, its way from 4
    for k, size in enumerate(tried[3:], start=3):
        leader = max(tried[:k], key=lambda b: record["tried"][str(b)])
        assert size == (leader * 2 if leader > 4 else leader // 2)
    assert record["batch"] == int(max(record["tried"], key=lambda b: record["tried"][b]))
    assert result.completed >= 2000 and result.failures == 0
    off = quick_config(scenario=Scenario.OFFLINE, mode=Mode.ACCURACY, adaptive_batch="on")
    with backend:
        plain = run_benchmark(
            off, backend, tiny_dataset, tmp_path / "acc", model_name="tiny", log=lambda _: None
        )
    assert plain.adaptive is None  # accuracy runs keep the batch they were given


def test_a_run_that_settles_elsewhere_drops_the_cached_choice(tmp_path: Path) -> None:
    from ckvision.tuning.cache import load_choice, store_choice

    cache = tmp_path / "tuning.json"
    store_choice(cache, "k", {"measured": {}})
    record = {
        "expected_samples_per_s": 100.0,
        "chosen": {"batch_size": 4, "adaptive_batch": "on"},
        "cache_key": "k",
        "cache": str(cache),
        "cached": True,
    }
    tried = {"4": 100.0, "2": 80.0, "8": 108.0}
    same = tuning.validate_choice(record, 101.0, in_run={"settled": True, "batch": 4})
    assert same["held"] and load_choice(cache, "k") is not None
    # settled on 8, but within 10% of the probe's 4 in the run: noise, the choice holds
    close = tuning.validate_choice(
        record, 101.0, in_run={"settled": True, "batch": 8, "tried": tried}
    )
    assert close["held"] and load_choice(cache, "k") is not None
    tried["8"] = 125.0
    lines: list[str] = []
    moved = tuning.validate_choice(
        record, 101.0, in_run={"settled": True, "batch": 8, "tried": tried}, log=lines.append
    )
    assert not moved["held"] and moved["in_run_batch"] == 8
    assert load_choice(cache, "k") is None and "settled on batch 8 over the probe's 4" in lines[0]
