"""The one owner of "every sample LoadGen issued is completed exactly once".

Every SUT goes through a :class:`Ledger`: ``issue`` records each sample LoadGen handed
over; ``complete`` / ``fail`` complete the ones still outstanding (a sample completed
twice is impossible: completion pops it under the lock first); ``abort`` completes
everything outstanding at once, and every sample issued after it the moment it arrives.
Whatever a backend does (raise, return garbage, hang, kill its thread) or the user does
(Ctrl-C), LoadGen gets every response it waits for, so the test always ends.

``begin`` / ``end`` bracket each batch (its backend call and its responses);
:meth:`Ledger.overdue` names the oldest call that has run longer than the bound, which
the watchdog in :mod:`ckvision.harness.run` turns into a failed run. ``observers`` are
called as ``observe(latencies_ns, ok)`` for every completion: the single place where
completions and their latency (issue to completion, per sample, ``time.monotonic_ns``)
are observed, e.g. for live progress and latency histograms; ``ok`` is ``False`` for
samples completed empty (failed or aborted). LoadGen's own latencies stay the published
figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import mlperf_loadgen as lg
import numpy as np

__all__ = ["Ledger", "Observer", "NO_CLASS"]

NO_CLASS = np.iinfo(np.int32).min

Observer = Callable[[list[int], bool], None]  # (latency_ns of each sample, completed ok)


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
        # qsl index -> the top-5 ImageNet classes of its latest response (NO_CLASS: none;
        # -1 is a real answer: "background" of a model with label offset 1)
        self.top5 = np.full((top5_size, 5), NO_CLASS, dtype=np.int32)
        # LoadGen response id -> (qsl index, time.monotonic_ns() at issue)
        self._outstanding: dict[int, tuple[int, int]] = {}
        self._calls: dict[int, tuple[float, int]] = {}  # call number -> (start, samples)
        self._calls_made = 0
        # sums over completed samples of: queue wait, batch formation, inference, response
        self._stages = [0, 0, 0, 0]
        self._staged = 0
        self._lock = threading.Lock()

    # -- LoadGen side ----------------------------------------------------------------------
    def issue(self, samples: Sequence[Any]) -> bool:
        """Record ``samples`` as outstanding; ``False`` (and completed empty) once aborted."""
        now = time.monotonic_ns()
        with self._lock:
            if self.fatal is None:
                for s in samples:
                    self._outstanding[s.id] = (s.index, now)
                return True
        self._respond_empty([s.id for s in samples], [now] * len(samples))
        return False

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def aborted(self) -> bool:
        return self.fatal is not None

    # -- worker side -----------------------------------------------------------------------
    def begin(self, samples: int) -> int:
        """A batch of ``samples`` samples goes to the backend; returns its number (for
        :meth:`end`, once the batch is answered or failed)."""
        with self._lock:
            self._calls_made += 1
            number = self._calls_made
            self._calls[number] = (time.monotonic(), samples)
        return number

    def end(self, number: int) -> None:
        with self._lock:
            self._calls.pop(number, None)

    def complete(
        self,
        ids: Sequence[int],
        classes: np.ndarray,
        stamps: tuple[int, int, int] | None = None,
    ) -> list[int]:
        """Complete ``ids`` with their top-1 ``classes`` (float32, MLPerf's layout); returns
        the positions in ``ids`` of the samples completed here (not aborted meanwhile).

        ``stamps``: ``time.monotonic_ns()`` when the batch was taken from the queue, formed
        and inferred; they feed :meth:`breakdown`.
        """
        with self._lock:
            issued = [self._outstanding.pop(i, None) for i in ids]
        kept = [(j, entry[1]) for j, entry in enumerate(issued) if entry is not None]
        keep = [j for j, _t in kept]
        if not keep:
            return keep
        if len(keep) == len(ids):  # the usual case: nothing was aborted meanwhile
            response = np.ascontiguousarray(classes, dtype=np.float32)
        else:
            response = np.ascontiguousarray(classes[keep], dtype=np.float32)
        # the address without ``ndarray.ctypes`` (a Python-level object: ~30 us per call
        # on a cache the backend's call has just flushed, on the response's critical path)
        base, step = response.__array_interface__["data"][0], response.strides[0]
        lg.QuerySamplesComplete(
            [lg.QuerySampleResponse(ids[j], base + n * step, step) for n, j in enumerate(keep)]
        )
        now = time.monotonic_ns()
        issued_ns = [t for _j, t in kept]
        if stamps is not None:
            self._stage(issued_ns, stamps, now)
        self._count(issued_ns, ok=True, now=now)
        return keep

    @property
    def keeps_top5(self) -> bool:
        """Whether :meth:`keep_top5` records anything (accuracy runs)."""
        return len(self.top5) > 0

    def keep_top5(self, indices: Sequence[int], top5: np.ndarray) -> None:
        """Record the top-5 classes of QSL samples ``indices`` (our own accuracy record)."""
        if len(self.top5) and len(indices):
            self.top5[np.asarray(indices, dtype=np.intp), : top5.shape[1]] = top5

    def _stage(self, issued_ns: list[int], stamps: tuple[int, int, int], now: int) -> None:
        taken, formed, inferred = stamps
        n = len(issued_ns)
        with self._lock:
            self._stages[0] += n * taken - sum(issued_ns)
            self._stages[1] += n * (formed - taken)
            self._stages[2] += n * (inferred - formed)
            self._stages[3] += n * (now - inferred)
            self._staged += n

    def breakdown(self) -> dict[str, float] | None:
        """Mean ms per sample spent in each stage inside our SUT (None: nothing timed)."""
        if not self._staged:
            return None
        names = ("queue_wait_ms", "batch_formation_ms", "inference_ms", "response_ms")
        return {
            name: total / self._staged / 1e6
            for name, total in zip(names, self._stages, strict=True)
        }

    @property
    def issued(self) -> int:
        """Samples issued so far (completed + outstanding)."""
        return self.completed + len(self._outstanding)

    def fail(self, ids: Sequence[int], err: BaseException | str) -> None:
        """Complete the outstanding ones of ``ids`` empty and count them as failed."""
        with self._lock:
            popped = [(i, self._outstanding.pop(i, None)) for i in ids]
            gone = [(i, entry[1]) for i, entry in popped if entry is not None]
            if gone and self.fatal is None:
                self.failures += len(gone)
                if self.first_error is None:
                    self.first_error = str(err) or type(err).__name__
        self._respond_empty([i for i, _t in gone], [t for _i, t in gone])

    def abort(self, reason: str, *, interrupted: bool = False) -> bool:
        """Fail the run: complete every outstanding sample now, and every later one on
        arrival. Returns ``False`` if the run was already aborted (the first reason stays)."""
        with self._lock:
            first = self.fatal is None
            if first:
                self.fatal = reason
                self.interrupted = interrupted
            gone = list(self._outstanding.items())
            self._outstanding.clear()
        self._respond_empty([i for i, _e in gone], [e[1] for _i, e in gone])
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

    def _respond_empty(self, ids: Sequence[int], issued_ns: list[int]) -> None:
        if ids:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])
            self._count(issued_ns, ok=False)

    def _count(self, issued_ns: list[int], *, ok: bool, now: int | None = None) -> None:
        with self._lock:
            self.completed += len(issued_ns)
        if self.observers:
            now = time.monotonic_ns() if now is None else now
            latencies = [now - t for t in issued_ns]
            for observe in self.observers:
                observe(latencies, ok)
