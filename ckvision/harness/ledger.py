"""The one owner of "every sample LoadGen issued is completed exactly once".

Every SUT goes through a :class:`Ledger`: ``issue`` records each sample LoadGen handed
over; ``complete`` / ``fail`` complete the ones still outstanding (a sample completed
twice is impossible: completion pops it under the lock first); ``abort`` completes
everything outstanding at once, and every sample issued after it the moment it arrives.
Whatever a backend does (raise, return garbage, hang, kill its thread) or the user does
(Ctrl-C), LoadGen gets every response it waits for, so the test always ends.

``batch`` brackets each backend call; :meth:`Ledger.overdue` names the oldest call that
has run longer than the bound, which the watchdog in :mod:`ckvision.harness.run` turns
into a failed run. ``observers`` are called with ``(samples, now_ns)`` for every
completion: the single place where completions and their time are observed (for progress
and latency histograms).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import mlperf_loadgen as lg
import numpy as np

__all__ = ["Ledger", "Observer"]

Observer = Callable[[int, int], None]  # (samples completed, time.monotonic_ns())


class Ledger:
    """Issued -> completed, for one LoadGen test."""

    def __init__(self, backend: str, *, top5_size: int = 0) -> None:
        self.backend = backend
        self.observers: list[Observer] = []
        self.completed = 0
        self.failures = 0
        self.first_error: str | None = None
        self.fatal: str | None = None  # why the run was aborted (None: not aborted)
        self.interrupted = False
        # qsl index -> the top-5 ImageNet classes of its latest response (-1: none yet)
        self.top5 = np.full((top5_size, 5), -1, dtype=np.int32)
        self._outstanding: dict[int, int] = {}  # LoadGen response id -> qsl index
        self._calls: dict[int, tuple[float, int]] = {}  # call number -> (start, samples)
        self._calls_made = 0
        self._lock = threading.Lock()

    # -- LoadGen side ----------------------------------------------------------------------
    def issue(self, samples: Sequence[Any]) -> bool:
        """Record ``samples`` as outstanding; ``False`` (and completed empty) once aborted."""
        with self._lock:
            if self.fatal is None:
                for s in samples:
                    self._outstanding[s.id] = s.index
                return True
        self._respond_empty([s.id for s in samples])
        return False

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def aborted(self) -> bool:
        return self.fatal is not None

    # -- worker side -----------------------------------------------------------------------
    @contextlib.contextmanager
    def call(self, samples: int) -> Iterator[int]:
        """Bracket one backend call of ``samples`` samples; yields its number."""
        with self._lock:
            self._calls_made += 1
            number = self._calls_made
            self._calls[number] = (time.monotonic(), samples)
        try:
            yield number
        finally:
            with self._lock:
                self._calls.pop(number, None)

    def complete(self, ids: Sequence[int], classes: np.ndarray, top5: np.ndarray | None) -> None:
        """Complete ``ids`` with their top-1 ``classes`` (float32, MLPerf's layout)."""
        with self._lock:
            index = [self._outstanding.pop(i, -1) for i in ids]
        keep = [j for j, qsl_index in enumerate(index) if qsl_index >= 0]
        if not keep:
            return
        response = np.ascontiguousarray(classes[keep], dtype=np.float32)
        if top5 is not None and len(self.top5):
            self.top5[[index[j] for j in keep], : top5.shape[1]] = top5[keep]
        base, step = response.ctypes.data, response.strides[0]
        lg.QuerySamplesComplete([
            lg.QuerySampleResponse(ids[j], base + n * step, step) for n, j in enumerate(keep)
        ])
        self._count(len(keep))

    def fail(self, ids: Sequence[int], err: BaseException | str) -> None:
        """Complete the outstanding ones of ``ids`` empty and count them as failed."""
        with self._lock:
            gone = [i for i in ids if self._outstanding.pop(i, -1) >= 0]
            if gone and self.fatal is None:
                self.failures += len(gone)
                if self.first_error is None:
                    self.first_error = str(err) or type(err).__name__
        self._respond_empty(gone)

    def abort(self, reason: str, *, interrupted: bool = False) -> bool:
        """Fail the run: complete every outstanding sample now, and every later one on
        arrival. Returns ``False`` if the run was already aborted (the first reason stays)."""
        with self._lock:
            first = self.fatal is None
            if first:
                self.fatal = reason
                self.interrupted = interrupted
            ids = list(self._outstanding)
            self._outstanding.clear()
        self._respond_empty(ids)
        return first

    def overdue(self, bound_s: float, now: float | None = None) -> tuple[int, int, float] | None:
        """``(call number, samples, seconds)`` of the oldest call running over ``bound_s``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            calls = list(self._calls.items())
        for number, (start, samples) in sorted(calls):
            if now - start > bound_s:
                return number, samples, now - start
        return None

    def _respond_empty(self, ids: Sequence[int]) -> None:
        if ids:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])
            self._count(len(ids))

    def _count(self, n: int) -> None:
        with self._lock:
            self.completed += n
        if self.observers:
            now = time.monotonic_ns()
            for observe in self.observers:
                observe(n, now)
