"""The JPEG-in pipeline probe (:mod:`ckvision.tuning.pipeline`): what it measures and how
it chooses. The backend here is a STAND-IN that sleeps (a device we do not have: a call
that leaves the CPU free), so the overlap the probe must see is certain; the real ONNX
Runtime path is tested in test_jpeg_input.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ckvision.errors import DataError
from ckvision.tuning.pipeline import (
    DEPTHS,
    LAYOUT_CANDIDATES,
    LAYOUT_NEAR,
    NEAR_BEST,
    choose_depth,
    measure_pipeline,
    pipeline_layouts,
)


class SleepingBackend:
    """A stand-in device: each call takes ``seconds`` of wall time and no CPU."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self._lock = threading.Lock()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        with self._lock:
            self.calls += 1
        return np.zeros((len(batch), 10), np.float32)


def _form(seconds: float, seen: list[list[int]] | None = None):  # type: ignore[no-untyped-def]
    def form(rows):  # type: ignore[no-untyped-def]
        if seen is not None:
            seen.append(list(rows))
        time.sleep(seconds)  # decode + resize of a batch, with the GIL released
        return np.zeros((len(rows), 3), np.float32)

    return form


@pytest.mark.timeout(60)
def test_forming_ahead_overlaps_the_call_and_in_series_does_not() -> None:
    backend = SleepingBackend(0.02)
    serial = measure_pipeline(backend, _form(0.02), 8, 1, 4, 0, 0.6)
    ahead = measure_pipeline(backend, _form(0.02), 8, 1, 4, 1, 0.6)
    assert serial == pytest.approx(4 / 0.04, rel=0.35)  # form, then infer: 40 ms a batch
    assert ahead > 1.4 * serial  # the next batch forms while this one infers


@pytest.mark.timeout(60)
def test_each_worker_walks_the_samples_from_its_own_offset_in_batches() -> None:
    seen: list[list[int]] = []
    outputs: list[int] = []
    measure_pipeline(
        SleepingBackend(0.001),
        _form(0.0, seen),
        8,
        2,
        3,
        0,
        0.05,
        lambda out: outputs.append(len(out)),
    )
    firsts = sorted(rows[0] for rows in seen[:2])
    assert firsts == [0, 4]  # worker i starts at i * count / workers
    assert all(len(rows) == 3 and all(0 <= r < 8 for r in rows) for rows in seen)
    assert outputs and set(outputs) == {3}  # `after` sees every timed output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("depth", [0, 2])
def test_a_failing_batch_is_raised_not_hidden(depth: int) -> None:
    calls = [0]

    def form(rows):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 3:
            raise DataError("cannot decode image bad.JPEG")
        return np.zeros((len(rows), 3), np.float32)

    with pytest.raises(DataError, match="bad.JPEG"):
        measure_pipeline(SleepingBackend(0.001), form, 8, 2, 2, depth, 5.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("rates", "chosen"),
    [
        ({0: 100.0, 1: 130.0, 2: 132.0}, 1),  # 1 is within NEAR_BEST of 2: fewer wins
        ({0: 100.0, 1: 101.0, 2: 102.0}, 0),  # forming ahead does not pay
        ({0: 100.0, 1: 110.0, 2: 130.0}, 2),
        ({0: 140.0, 1: 110.0, 2: 130.0}, 0),
    ],
)
def test_the_fewest_batches_ahead_near_the_best_win(rates: dict[int, float], chosen: int) -> None:
    assert sorted(rates) == list(DEPTHS) and NEAR_BEST == 0.03
    assert choose_depth(rates) == chosen


@pytest.mark.timeout(60)
def test_the_screened_layouts_are_the_inference_probes_near_best() -> None:
    assert (LAYOUT_NEAR, LAYOUT_CANDIDATES) == (0.10, 4)

    def c(w: int, t: int, b: int, rate: float) -> dict[str, float]:
        return {"workers": w, "threads": t, "batch": b, "samples_per_s": rate}

    probe = [
        c(2, 1, 2, 200.0),  # the best: the run's choice, first
        c(1, 2, 4, 195.0),
        c(1, 2, 16, 181.0),  # within 10 %
        c(2, 1, 8, 179.0),  # just under 90 %: not screened
        c(1, 2, 1, 120.0),
    ]
    assert pipeline_layouts((2, 1, 2), probe) == [(2, 1, 2), (1, 2, 4), (1, 2, 16)]
    many = [c(1, 2, b, 200.0 - b / 100) for b in (1, 2, 4, 8, 16, 32)]
    assert len(pipeline_layouts((1, 2, 1), many)) == LAYOUT_CANDIDATES
    assert pipeline_layouts((1, 2, 8), []) == [(1, 2, 8)]  # a given layout: only it
