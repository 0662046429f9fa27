"""The Triton server knobs the auto-tuner chooses (:mod:`ckvision.tuning.server_knobs`):
which values it tries, how it chooses, that every server it started is stopped. The
sessions here are STAND-INS (no server), named so; a default run on a real tritonserver
that chooses them is in test_triton_jpeg.py."""

from __future__ import annotations

from typing import Any

import pytest

from ckvision.tuning.pipeline import NEAR_BEST
from ckvision.tuning.server_knobs import (
    DELAYS_US,
    MAX_INSTANCES,
    MAX_THREADS,
    ROUNDS,
    choose_knobs,
    knob_candidates,
    thread_candidates,
    tune_server_knobs,
)


def test_the_pairs_tried_and_a_given_value_kept() -> None:
    assert knob_candidates(2, None, None) == [(1, d) for d in DELAYS_US] + [
        (2, d) for d in DELAYS_US
    ]
    assert {i for i, _d in knob_candidates(64, None, None)} == set(range(1, MAX_INSTANCES + 1))
    assert knob_candidates(8, 3, None) == [(3, d) for d in DELAYS_US]
    assert knob_candidates(8, None, 250) == [(i, 250) for i in range(1, MAX_INSTANCES + 1)]
    assert knob_candidates(1, 1, 0) == [(1, 0)]  # both given: nothing to choose
    assert thread_candidates(2) == [(1,), (2,)]
    assert thread_candidates(64) == [(t,) for t in range(1, MAX_THREADS + 1)]


@pytest.mark.parametrize(
    ("rates", "chosen"),
    [
        ({(1, 0): 100.0, (1, 500): 101.0, (2, 0): 150.0, (2, 500): 149.0}, (2, 0)),
        ({(1, 0): 98.0, (1, 500): 99.0, (2, 0): 100.0, (2, 500): 100.5}, (1, 0)),
        ({(1, 0): 90.0, (1, 500): 100.0, (2, 0): 95.0, (2, 500): 100.0}, (1, 500)),
    ],
)
def test_the_fewest_instances_then_the_shortest_delay_near_the_best_win(
    rates: dict[tuple[int, int], float], chosen: tuple[int, int]
) -> None:
    assert choose_knobs(rates) == chosen
    best = max(rates.values())
    assert rates[chosen] >= best * (1 - NEAR_BEST)


class StandInSession:
    """A STAND-IN for a session on a server of its own (no server runs)."""

    def __init__(self, knob: tuple[int, int], log: list[Any]) -> None:
        self.knob, self.log, self.closed = knob, log, False

    def close(self) -> None:
        self.closed = True
        self.log.append(("close", self.knob))


def test_every_server_is_up_before_timing_the_rounds_alternate_and_all_stop() -> None:
    log: list[Any] = []
    sessions: list[StandInSession] = []
    speed = {(1, 0): 100.0, (1, 500): 100.0, (2, 0): 180.0, (2, 500): 120.0}

    def serve(i: int, d: int) -> Any:
        log.append(("serve", (i, d)))
        sessions.append(StandInSession((i, d), log))
        return sessions[-1]

    def rate(session: Any, seconds: float) -> float:
        assert not session.closed
        log.append(("time", session.knob))
        return speed[session.knob]

    measured: dict[str, Any] = {"k1.500": 100.0}  # one pair cached: not served again
    names = ("instances", "max_queue_delay_us")
    out = tune_server_knobs(
        names, knob_candidates(2, None, None), serve, rate, lambda i, d: f"k{i}.{d}", measured, 4.0
    )
    assert out["instances"] == 2 and out["max_queue_delay_us"] == 0
    assert out["samples_per_s"] == 180.0 and out["from_cache"] is False
    assert out["spread"] == 0.0 and len(out["candidates"]) == 4
    assert measured == {"k1.0": 100.0, "k1.500": 100.0, "k2.0": 180.0, "k2.500": 120.0}
    served = [k for what, k in log if what == "serve"]
    assert served == [(1, 0), (2, 0), (2, 500)]
    times = [k for what, k in log if what == "time"]
    assert times == served * ROUNDS  # in turns, after every server is up
    assert log.index(("time", (1, 0))) > log.index(("serve", (2, 500)))
    assert all(s.closed for s in sessions)
    # everything cached: no server at all
    log.clear()
    again = tune_server_knobs(
        names, knob_candidates(2, None, None), serve, rate, lambda i, d: f"k{i}.{d}", measured, 4.0
    )
    assert again["from_cache"] is True and again["spread"] is None and not log
    assert (again["instances"], again["max_queue_delay_us"]) == (2, 0)


def test_a_server_that_fails_to_start_stops_the_others_and_is_raised() -> None:
    log: list[Any] = []
    sessions: list[StandInSession] = []

    def serve(i: int, d: int) -> Any:
        if i == 2:
            raise RuntimeError("tritonserver exited with status 1 while starting")
        sessions.append(StandInSession((i, d), log))
        return sessions[-1]

    with pytest.raises(RuntimeError, match="while starting"):
        tune_server_knobs(
            ("instances", "max_queue_delay_us"),
            knob_candidates(2, None, None),
            serve,
            lambda s, t: 1.0,
            lambda i, d: f"{i}.{d}",
            {},
            1.0,
        )
    assert len(sessions) == 2 and all(s.closed for s in sessions)
