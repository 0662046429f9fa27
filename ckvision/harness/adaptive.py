"""The Offline SUT's batch size, chosen inside the run from what the run itself achieves.

A probe before the run measures a few seconds of a machine that may change by the time
the run starts (seen on a shared VM: the probe's batch cost 10% against the best). With
``CK_ADAPTIVE_BATCH=on`` an Offline performance run tries the tuned batch, then half and
twice it (``half`` or ``double``: only that one), each for a phase of completed samples,
and keeps for the rest of the run the batch whose phase completed the most samples per
second, by more than :data:`SWITCH_MARGIN` over the tuned batch's phase (a phase is
about a second: a smaller lead is its noise, and a switch it decides costs the run
what the lead was not). A neighbour that wins is followed one step further the same way
(its half, or its double), up to :data:`CLIMB_STEPS` steps, while each step is the
fastest so far: a short probe on a drifting machine can put the tuned batch two or three
doublings from the best (seen on 2 vCPUs: batch 8 and 16 tuned, batch 2 best by 15-20 %),
where one neighbour each way never reaches it. The entry records what was tried and what
it settled on.

Every phase on a slower batch costs the run its deficit: the auto-tuner only asks for
the neighbours its probe could not tell from the tuned batch (:mod:`ckvision.tuning`).

The rate of a phase is the samples completed at that batch size after the phase's first
completion, over the time since it: batches of the previous size still in flight when
the size changes are not counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "BatchChooser",
    "PHASE_S",
    "MAX_ADAPTIVE_BATCH",
    "SWITCH_MARGIN",
    "NEIGHBOURS",
    "CLIMB_STEPS",
]

PHASE_S = 1.0  # each candidate's phase lasts about this long at the expected rate
MAX_ADAPTIVE_BATCH = 64
SWITCH_MARGIN = 0.02  # another batch replaces the tuned one only when this much faster
CLIMB_STEPS = 2  # a winning neighbour is followed this many halvings / doublings further
# CK_ADAPTIVE_BATCH value -> which neighbours of the tuned batch are tried
NEIGHBOURS = {"on": ("half", "double"), "half": ("half",), "double": ("double",), "off": ()}


class BatchChooser:
    """Which batch size the workers take now; fed each completed batch."""

    def __init__(
        self,
        start: int,
        *,
        max_batch: int = 0,
        phase_samples: int,
        neighbours: tuple[str, ...] = NEIGHBOURS["on"],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limit = min(max_batch, MAX_ADAPTIVE_BATCH) if max_batch > 0 else MAX_ADAPTIVE_BATCH
        # every size the run may take: the tuned one, and each way it may go its first
        # neighbour and CLIMB_STEPS more (buffers and first calls are made for all of them)
        ways = {way: _way(start, way, limit) for way in neighbours}
        self.reachable = sorted({start, *(size for sizes in ways.values() for size in sizes)})
        # the sizes tried, in order: the tuned one, its neighbours, then any climb
        self.candidates = [start, *(sizes[0] for sizes in ways.values() if sizes)]
        self.current = start
        self.phase_samples = max(1, phase_samples)
        self.rates: dict[int, float] = {}
        self.settled = len(self.candidates) == 1
        self._clock = clock
        self._lock = threading.Lock()
        self._phase_start: float | None = None
        self._phase_done = 0
        self._total = 0
        self._settled_at: int | None = 0 if self.settled else None

    @property
    def largest(self) -> int:
        """The largest batch the run may take (the workers' buffers are made for it)."""
        return max(self.reachable)

    def completed(self, samples: int, batch: int) -> None:
        """A batch of ``samples`` taken at size ``batch`` is complete."""
        with self._lock:
            self._total += samples
            if self.settled or batch != self.current:
                return
            now = self._clock()
            if self._phase_start is None:
                self._phase_start = now  # the phase's clock starts at its first completion
                return
            self._phase_done += samples
            if self._phase_done < self.phase_samples:
                return
            elapsed = max(now - self._phase_start, 1e-9)
            self.rates[self.current] = self._phase_done / elapsed
            untried = [b for b in self.candidates if b not in self.rates]
            if not untried and (beyond := self._beyond(self._winner())) is not None:
                self.candidates.append(beyond)  # the winner's way, one step further
                untried = [beyond]
            if untried:
                self.current = untried[0]
            else:
                self.current = self._winner()
                self.settled = True
                self._settled_at = self._total
            self._phase_start, self._phase_done = None, 0

    def _beyond(self, winner: int) -> int | None:
        """The next size past a winning neighbour, the way it lies from the tuned batch, when
        the run may take it and has not tried it (None: the climb ends)."""
        start = self.candidates[0]
        if winner == start:
            return None
        size = _step_from(winner, "double" if winner > start else "half")
        return size if size in self.reachable and size not in self.rates else None

    def _winner(self) -> int:
        """The fastest batch, if it beat the tuned one by more than the margin."""
        start = self.candidates[0]
        fastest = max(self.rates, key=lambda b: self.rates[b])
        return fastest if self.rates[fastest] > self.rates[start] * (1 + SWITCH_MARGIN) else start

    def record(self) -> dict[str, Any]:
        """What the entry keeps: the candidates' rates and the batch the run settled on."""
        return {
            "start_batch": self.candidates[0],
            "tried": {str(b): round(r, 2) for b, r in self.rates.items()},
            "settled": self.settled,
            "batch": self.current,
            "settled_after_samples": self._settled_at,
            "phase_samples": self.phase_samples,
            "switch_margin": SWITCH_MARGIN,
        }


def _way(start: int, way: str, limit: int) -> list[int]:
    """The sizes one way from ``start`` (``half`` or ``double``), nearest first: the first
    neighbour and up to :data:`CLIMB_STEPS` more, none above ``limit`` or below 1."""
    sizes: list[int] = []
    size = start
    for _step in range(1 + CLIMB_STEPS):
        size, last = _step_from(size, way), size
        if size == last or size > limit:
            break
        sizes.append(size)
    return sizes


def _step_from(size: int, way: str) -> int:
    """One halving or doubling of a batch size (never below 1)."""
    return size * 2 if way == "double" else max(1, size // 2)
