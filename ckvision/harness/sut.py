"""The system under test: worker threads that batch samples, infer, and complete them.

LoadGen calls ``issue`` on its own thread; ``issue`` records the samples in the
:class:`~ckvision.harness.ledger.Ledger` and queues them; ``workers`` threads take
batches and infer. How long a batch may wait to fill differs: Server waits up to
``server_batch_timeout_us``, measured from the arrival of the batch's oldest sample
(:class:`BatchQueue`); elsewhere nothing waits (:class:`ImmediateQueue`). Offline's one
query is queued in runs of consecutive RAM rows (:meth:`SampleLibrary.in_row_order`), so
most of its batches are views of RAM rather than gathered copies.

SingleStream is the exception: its one sample per query is inferred right in ``issue``
(a hand-off to a worker costs two thread wake-ups per query, tens of microseconds, all
of it in the published latency). The ledger and the watchdog work the same; only a
backend that hangs there leaves LoadGen's thread stuck, so that run ends by the
watchdog's exit (one line, ``ABORT_GRACE_S`` after the abort) rather than by an
exception (see :mod:`ckvision.harness.run`).

A batch that raises, or returns something the output contract rejects, is completed
empty through the ledger and counted; a contract violation or a dying worker aborts the
run (the ledger completes everything outstanding at once). The response goes to LoadGen
as soon as the output's shape is checked and its top-1 known; the values are checked
right after, on every batch (a bad one fails the run: see :mod:`ckvision.harness.outputs`).
A sample's response is its top-1 ImageNet class as float32, the layout of MLPerf's
reference (so ``tools/accuracy-imagenet.py`` scores our log with its default options); the top-5 are
kept in ``ledger.top5`` for our own record.

JPEG input with ``CK_PREPROCESS_PREFETCH=N`` (N > 0): each worker hands forming its
batches (the preprocessing) to a thread of its own and keeps up to N batches formed or
forming ahead of the one it infers, so the next batch's decode and resize overlap this
one's inference. The samples, batches and answers are those of N = 0 (the batches form
in the order they are taken); ``SUT.prefetch_record`` says how many were ahead at most.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ckvision.backends.base import Backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.harness.adaptive import NEIGHBOURS, PHASE_S, BatchChooser
from ckvision.harness.ledger import Ledger
from ckvision.harness.outputs import TOP_K, OutputContractError, check_values, top1, top_k
from ckvision.harness.qsl import SampleLibrary

__all__ = [
    "SUT",
    "BatchQueue",
    "ImmediateQueue",
    "ROW_ORDER_MIN_BYTES",
    "batches_are_views",
    "make_sut",
    "top_k",
]


# Row order saves a copy per sample (its bytes) and costs a visit of the query's scattered
# sample objects out of their order (LoadGen's and ours: about 1.5 us a sample). Measured
# on 2 vCPU, Offline, batch 8, alternating runs, views/rows: 3 KB samples 0.84 (1 or 2
# workers; MLPerf's TEST04 failed on it), 12 KB 0.99-1.04, 24 KB 1.11-1.15, 48 KB 1.20,
# 192 KB 1.65; an ImageNet sample is 147 KB (uint8) to 588 KB (float32).
ROW_ORDER_MIN_BYTES = 16 * 1024


def batches_are_views(
    scenario: Scenario, gathers_rows: bool, encoded: bool, sample_bytes: int
) -> bool:
    """Whether the SUT forms a run's batches mostly as views of consecutive RAM rows (True:
    Offline's one query of samples of at least :data:`ROW_ORDER_MIN_BYTES`, queued in row
    order) or of LoadGen's random rows (False: copied on the host, taken by a backend
    that :attr:`~Backend.gathers_rows` itself, or preprocessed from encoded files as the
    batch forms). The auto-tuner's probe times batches formed the same way: a probe of
    gathered batches predicted a quarter of what an Offline run of the null backend
    reached in row order, and LoadGen, told to expect that, issued too few samples for
    the minimum duration (INVALID)."""
    return (
        scenario is Scenario.OFFLINE
        and not gathers_rows
        and not encoded
        and sample_bytes >= ROW_ORDER_MIN_BYTES
    )


class BatchQueue:
    """Samples waiting for a worker, each with its arrival time.

    ``take(n, wait_s)`` returns a batch as soon as ``n`` samples wait, or when the oldest
    waiting sample has waited ``wait_s``, or at once after :meth:`flush` (LoadGen issued
    its last query) or :meth:`close`. A queue serves one test: flushing state never leaks
    into the next.
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._items: deque[tuple[float, Any]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._flushing = False
        self._clock = clock

    def put(self, samples: Sequence[Any]) -> None:
        now = self._clock()
        with self._cond:
            self._items.extend((now, s) for s in samples)
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            self._flushing = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)

    def take(self, n: int, wait_s: float, block: bool = True) -> list[Any] | None:
        """Up to ``n`` samples; ``None`` once closed and empty. ``block=False``: ``[]``
        at once when no batch is ready yet."""
        with self._cond:
            while True:
                if self._items:
                    if len(self._items) >= n or wait_s <= 0 or self._flushing or self._closed:
                        break
                    left = self._items[0][0] + wait_s - self._clock()
                    if left <= 0:
                        break
                    if not block:
                        return []
                    self._cond.wait(left)
                elif self._closed:
                    return None
                elif not block:
                    return []
                else:
                    self._cond.wait()
            pop = self._items.popleft
            return [pop()[1] for _ in range(min(n, len(self._items)))]


class ImmediateQueue:
    """The queue for batches that never wait to fill (every scenario but Server).

    ``queue.SimpleQueue`` hands a sample to a blocked worker with one semaphore release
    (a :class:`BatchQueue` condition costs tens of microseconds more per SingleStream
    query); ``take`` returns what is there, up to ``n``, blocking only for the first.
    """

    _CLOSED = object()

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False

    def put(self, samples: Sequence[Any]) -> None:
        put = self._queue.put
        for sample in samples:
            put(sample)

    def flush(self) -> None:
        """Nothing waits to fill here."""

    def close(self) -> None:
        self._closed = True
        self._queue.put(self._CLOSED)

    def __len__(self) -> int:
        return self._queue.qsize()

    def take(self, n: int, wait_s: float = 0.0, block: bool = True) -> list[Any] | None:
        """Up to ``n`` samples (at least one); ``None`` once closed and empty.
        ``block=False``: ``[]`` at once when nothing waits."""
        del wait_s
        try:
            first = self._queue.get(block)
        except queue.Empty:
            return []
        if first is self._CLOSED:
            self._queue.put(first)  # the next worker sees it too
            return None
        batch = [first]
        get = self._queue.get_nowait
        while len(batch) < n:
            try:
                item = get()
            except queue.Empty:
                break
            if item is self._CLOSED:
                self._queue.put(item)
                break
            batch.append(item)
        return batch


class SUT:
    """Issue queues; ``workers`` threads take batches, infer, and complete them."""

    def __init__(
        self, backend: Backend, qsl: SampleLibrary, config: RunConfig, ledger: Ledger
    ) -> None:
        self.backend = backend
        self.qsl = qsl
        self.ledger = ledger
        self.batch_size = config.batch_size
        self.wait_s = (
            config.server_batch_timeout_us / 1e6 if config.scenario is Scenario.SERVER else 0.0
        )
        self.queue: BatchQueue | ImmediateQueue = (
            BatchQueue() if config.scenario is Scenario.SERVER else ImmediateQueue()
        )
        self.inline = config.scenario is Scenario.SINGLE_STREAM
        # rows go to the device without a host gather (never encoded ones: they are
        # preprocessed on the host as the batch forms)
        self.direct = backend.gathers_rows and not qsl.encoded
        # Offline's one query is queued in runs of consecutive RAM rows: most batches are
        # then views of RAM, as raw's loop over a dataset reads it, not gathered copies
        self.row_order = batches_are_views(
            config.scenario, backend.gathers_rows, qsl.encoded, qsl.sample_bytes
        )
        # CK_ADAPTIVE_BATCH: an Offline performance run settles its batch size in the run
        self.chooser = (
            BatchChooser(
                config.batch_size,
                max_batch=_max_batch(backend),
                phase_samples=max(
                    4 * config.batch_size * config.workers,
                    int((config.target_qps or 0.0) / 1.3 * PHASE_S),
                ),
                neighbours=NEIGHBOURS[config.adaptive_batch],
            )
            if config.adaptive_batch != "off"
            and config.scenario is Scenario.OFFLINE
            and config.mode is Mode.PERFORMANCE
            else None
        )
        # CK_PREPROCESS_PREFETCH: batches formed ahead per worker (JPEG input only: a
        # preprocessed cache forms a batch with one copy, nothing worth overlapping)
        self.prefetch = config.preprocess_prefetch if qsl.encoded and not self.inline else 0
        self.most_ahead = 0  # the most batches one worker had formed or forming ahead
        self._empty = np.empty(0, qsl.dtype)  # the batch beside rows (never predicted)
        self._threads = (
            []
            if self.inline
            else [
                threading.Thread(target=self._work, name=f"ckvision-worker-{i}", daemon=True)
                for i in range(config.workers)
            ]
        )

    # LoadGen callbacks: they never raise (an exception escaping into LoadGen leaves it
    # in a state it cannot be destroyed from).
    def issue(self, samples: Sequence[Any]) -> None:
        try:
            if not self.ledger.issue(samples):
                return
            if self.inline:
                self._run(samples, None)
            elif self.row_order and len(samples) > 1:
                order = self.qsl.in_row_order([s.index for s in samples])
                self.queue.put([samples[i] for i in order.tolist()])
            else:
                self.queue.put(samples)
        except BaseException as err:  # noqa: BLE001 - nothing may escape into LoadGen
            self.ledger.abort(
                f"backend {self.backend.name}: LoadGen's issuing thread died: "
                f"{type(err).__name__}: {err}"
            )

    def flush(self) -> None:
        """LoadGen has issued its last query: no batch waits to fill any more."""
        self.queue.flush()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        """Whether anything can still infer (LoadGen's own thread, when inline)."""
        return self.inline or any(t.is_alive() for t in self._threads)

    def stop(self, timeout_s: float | None = None) -> list[str]:
        """Close the queue and join the workers; names the ones still stuck in a call."""
        self.queue.close()
        stuck = []
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout_s)
                if thread.is_alive():
                    stuck.append(thread.name)
        return stuck

    @property
    def prefetch_record(self) -> dict[str, int] | None:
        """What the run's prefetching did (``None``: it did not prefetch)."""
        if not self.prefetch:
            return None
        return {"depth": self.prefetch, "most_ahead": self.most_ahead}

    def _work(self) -> None:
        if self.prefetch:
            self._work_ahead()
            return
        chooser = self.chooser
        largest = self.batch_size if chooser is None else chooser.largest
        shape = (largest, *self.qsl.sample_shape)
        host_gather = largest > 1 and not self.direct
        buffer = np.empty(shape, self.qsl.dtype) if host_gather else None
        try:
            if chooser is None:
                while (samples := self.queue.take(self.batch_size, self.wait_s)) is not None:
                    self._run(samples, buffer)
                return
            while True:
                size = chooser.current
                samples = self.queue.take(size, self.wait_s)
                if samples is None:
                    break
                self._run(samples, buffer)
                if len(samples) == size:  # a short batch at the end says nothing
                    chooser.completed(len(samples), size)
        except BaseException as err:  # noqa: BLE001 - the thread dies; its samples may not
            self.ledger.abort(
                f"backend {self.backend.name}: worker {threading.current_thread().name} "
                f"died: {type(err).__name__}: {err}"
            )

    def _work_ahead(self) -> None:
        """:meth:`_work` with up to ``prefetch`` batches formed ahead on a thread of this
        worker's own; every batch taken is run (or failed) in the order it was taken."""
        chooser = self.chooser
        name = threading.current_thread().name
        former = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-form")
        pending: deque[tuple[Sequence[Any], Future[_Formed], int]] = deque()
        closed = False
        try:
            while pending or not closed:
                while not closed and len(pending) <= self.prefetch:
                    size = self.batch_size if chooser is None else chooser.current
                    taken = self.queue.take(size, self.wait_s, block=not pending)
                    if taken is None:
                        closed = True
                    elif not taken:
                        break  # nothing ready: infer what is formed meanwhile
                    else:
                        pending.append((taken, former.submit(self._form, taken, None), size))
                if not pending:
                    continue
                self.most_ahead = max(self.most_ahead, len(pending) - 1)
                samples, formed, size = pending.popleft()
                self._run(samples, None, formed.result)
                if chooser is not None and len(samples) == size:
                    chooser.completed(len(samples), size)
        except BaseException as err:  # noqa: BLE001 - the thread dies; its samples may not
            for samples, _formed, _size in pending:
                self.ledger.fail([s.id for s in samples], "a worker died")
            self.ledger.abort(
                f"backend {self.backend.name}: worker {name} died: {type(err).__name__}: {err}"
            )
        finally:
            former.shutdown(wait=True)

    def _form(self, samples: Sequence[Any], buffer: np.ndarray | None) -> _Formed:
        """The batch of ``samples`` (or its rows, for a backend that gathers them), with
        the times it was taken and formed."""
        taken = time.monotonic_ns()
        batch, rows = self._empty, None
        if len(samples) == 1:
            batch = self.qsl.one(samples[0].index)  # a view of RAM, no copy
        elif self.direct:  # the backend takes the rows to its device itself
            rows = self.qsl.rows([s.index for s in samples])
        else:
            batch = self.qsl.gather(self.qsl.rows([s.index for s in samples]), buffer)
        return batch, rows, taken, time.monotonic_ns()

    def _run(
        self,
        samples: Sequence[Any],
        buffer: np.ndarray | None,
        formed_ahead: Callable[[], _Formed] | None = None,
    ) -> None:
        ids = [s.id for s in samples]
        if self.ledger.aborted:
            self.ledger.fail(ids, "aborted")
            return
        backend = self.backend
        # the watchdog's bracket closes after the responses: between the backend's return
        # and LoadGen's QuerySamplesComplete there is nothing but the top-1
        call = self.ledger.begin(len(ids))
        try:
            try:
                batch, rows, taken, formed = (
                    self._form(samples, buffer) if formed_ahead is None else formed_ahead()
                )
                out = (
                    backend.predict(batch)
                    if rows is None
                    else backend.predict_rows(self.qsl.ram, rows)
                )
                inferred = time.monotonic_ns()
                classes = top1(out, len(ids), backend.contract, backend.name)
            except OutputContractError as err:
                self.ledger.fail(ids, err)
                self.ledger.abort(str(err))
                return
            except Exception as err:  # completed empty, counted, raised after the test
                self.ledger.fail(ids, err)
                return
            except BaseException as err:
                self.ledger.fail(ids, err)
                raise
            kept = self.ledger.complete(ids, classes, (taken, formed, inferred))
        finally:
            self.ledger.end(call)
        # LoadGen has its responses; the rest of the checks still run on every batch, and
        # anything they find fails the whole run (its results never stand).
        try:
            check_values(out, backend.contract, backend.name)
            if self.ledger.keeps_top5 and kept:
                offset = backend.contract.label_offset
                top = (
                    classes[kept].astype(np.int32)[:, None]
                    if backend.contract.output_kind == "argmax"
                    else top_k(out[kept], TOP_K, offset)
                )
                self.ledger.keep_top5([samples[j].index for j in kept], top)
        except Exception as err:  # noqa: BLE001 - after completion only an abort can report it
            self.ledger.abort(
                str(err)
                if isinstance(err, OutputContractError)
                else (
                    f"backend {backend.name}: checking a batch's output failed: "
                    f"{type(err).__name__}: {err}"
                )
            )


_Formed = tuple[np.ndarray, np.ndarray | None, int, int]  # batch, rows, taken, formed


def _max_batch(backend: Backend) -> int:
    """The largest batch the backend and its model take (0 = no limit)."""
    limits = [b for b in (backend.capabilities.max_batch, backend.contract.max_batch) if b > 0]
    return min(limits) if limits else 0


def make_sut(config: RunConfig, backend: Backend, qsl: SampleLibrary, ledger: Ledger) -> SUT:
    """The SUT for ``config`` (one kind for every scenario; see the module docstring)."""
    return SUT(backend, qsl, config, ledger)
