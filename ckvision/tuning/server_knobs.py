"""The server side of a Triton run that starts its own server: instances, batching delay and
the JPEG-in preprocessing threads.

``CK_TRITON_INSTANCES``, ``CK_TRITON_MAX_QUEUE_DELAY_US`` and, for a JPEG-in ensemble,
``CK_TRITON_PREPROCESS_THREADS`` (:mod:`ckvision.triton.knobs`) are what NVIDIA's
end-to-end benchmark tunes on the server, after batch size and concurrency. When a run
starts its own server and the user left them open, the auto-tuner serves each candidate
from a server of its own (a copy of the repository that carries it, as the run's own
server will), all started before any timing, and times them at the run's layout in
alternating rounds (A B C D A B C D), each keeping the median of its rounds; the probe's
spread is how far the rounds of the two fastest disagree. First the (instances, delay)
pairs, then the preprocessing threads at the pair chosen. The smallest values within
:data:`NEAR_BEST` of the fastest win (fewest instances, then the shortest delay; fewest
threads): an instance or a thread holds a core and memory, a delay adds latency to every
request, for nothing when they do not pay. A value the user gave is kept and only the
others are searched. A server given by URL serves its own repository: there is nothing to
choose there (the run refuses settings it does not serve).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ckvision.backends.base import Backend
from ckvision.tuning.pipeline import NEAR_BEST
from ckvision.tuning.probe import close_all, spread

__all__ = [
    "DELAYS_US",
    "MAX_INSTANCES",
    "MAX_THREADS",
    "ROUNDS",
    "knob_candidates",
    "thread_candidates",
    "choose_knobs",
    "tune_server_knobs",
]

MAX_INSTANCES = 4  # at most this many instances per served model are tried
MAX_THREADS = 4  # at most this many preprocessing threads per instance are tried
DELAYS_US = (0, 500)  # dynamic batching delays tried: none, and half a millisecond
ROUNDS = 2  # rounds per candidate, in turns

Knob = tuple[int, ...]  # e.g. (instances, max queue delay in us), or (threads,)


def knob_candidates(cores: int, instances: int | None, delay_us: int | None) -> list[Knob]:
    """The (instances, delay) pairs to try: 1 up to the cores (at most
    :data:`MAX_INSTANCES`) instances x :data:`DELAYS_US`; a value given is the only one."""
    counts = [instances] if instances is not None else range(1, min(cores, MAX_INSTANCES) + 1)
    delays = [delay_us] if delay_us is not None else DELAYS_US
    return [(i, d) for i in counts for d in delays]


def thread_candidates(cores: int) -> list[Knob]:
    """The preprocessing threads to try: 1 up to the cores (at most :data:`MAX_THREADS`)."""
    return [(t,) for t in range(1, min(cores, MAX_THREADS) + 1)]


def choose_knobs(rates: Mapping[Knob, float]) -> Knob:
    """The smallest values (in order: fewest instances, then the shortest delay) within
    :data:`NEAR_BEST` of the fastest."""
    best = max(rates.values())
    return min(k for k, r in rates.items() if r >= best * (1 - NEAR_BEST))


def tune_server_knobs(
    names: Sequence[str],
    candidates: Sequence[Knob],
    serve: Callable[..., Backend],
    rate: Callable[[Backend, float], float],
    key: Callable[..., str],
    measured: dict[str, Any],
    budget_s: float,
) -> dict[str, Any]:
    """The chosen values (by ``names``) and what the probe saw (rates cached in
    ``measured`` under ``key(*values)``). ``serve(*values)``: a loaded session on a server
    of its own that serves them; ``rate(session, seconds)``: samples/s at the run's layout.
    Every server started here is stopped before this returns, whatever happens."""
    todo = [k for k in candidates if key(*k) not in measured]
    rounds: dict[Knob, list[float]] = {k: [] for k in todo}
    sessions: dict[Knob, Backend] = {}
    try:
        for knob in todo:  # every server is up before any timing: no start-up in a slice
            sessions[knob] = serve(*knob)
        for _round in range(ROUNDS):
            for knob in todo:
                rounds[knob].append(rate(sessions[knob], budget_s / (ROUNDS * len(todo))))
    finally:
        close_all(sessions.values())
    for knob, seen in rounds.items():
        measured[key(*knob)] = round(float(np.median(seen)), 2)
    rates = {k: float(measured[key(*k)]) for k in candidates}
    chosen = choose_knobs(rates)
    # how far the rounds of the two fastest disagree (the others do not decide the choice)
    finalists = sorted(rounds, key=lambda k: -float(np.median(rounds[k])))[:2]
    spreads = [spread(rounds[k]) for k in finalists]
    return {
        **dict(zip(names, chosen, strict=True)),
        "samples_per_s": rates[chosen],
        "candidates": [
            {**dict(zip(names, k, strict=True)), "samples_per_s": r} for k, r in rates.items()
        ],
        "from_cache": not todo,
        "spread": round(max(spreads), 4) if spreads else None,
    }
