"""Systems under test, one per LoadGen scenario.

Every issued sample is completed, even when its batch fails: the failure is counted,
the first error is kept, and the sample is completed with an empty response; the run
raises afterwards (see :mod:`ckvision.harness.run`). A sample's response is its top-5
ImageNet classes as int32; the array stays alive until ``QuerySamplesComplete`` returns.

LoadGen calls ``issue`` on the thread that started the test, for every scenario, so
SingleStream and MultiStream infer right there (lowest latency) while Offline and
Server only enqueue and let worker threads batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from ckvision.backends.base import Backend
from ckvision.config import RunConfig, Scenario
from ckvision.harness.qsl import SampleLibrary

__all__ = ["BaseSUT", "SingleStreamSUT", "MultiStreamSUT", "OfflineSUT", "ServerSUT",
           "make_sut", "top_k"]

TOP_K = 5


class _Aborted(Exception):
    """The run was interrupted: complete the sample without inference."""


def top_k(logits: np.ndarray, k: int = TOP_K, offset: int = 0) -> np.ndarray:
    """Indices of the ``k`` largest logits per row, best first, minus ``offset``, as int32.

    ``k`` rounds of a row-wise argmax: a few microseconds per sample whatever the values
    (``np.argpartition`` slows down a hundredfold on rows of equal values).
    """
    batch, classes = logits.shape
    k = min(k, classes)
    top = np.empty((batch, k), dtype=np.int32)
    if k == 1:
        top[:, 0] = logits.argmax(axis=1)
    else:
        work = np.array(logits, dtype=np.float32)
        rows = np.arange(batch)
        for j in range(k):
            best = work.argmax(axis=1)
            top[:, j] = best
            work[rows, best] = -np.inf
    if offset:
        top -= offset
    return top


class BaseSUT:
    """Runs batches on a backend and completes their samples; counts what failed."""

    def __init__(
        self, backend: Backend, qsl: SampleLibrary, config: RunConfig,
        log: Callable[[str], None] = print,
    ) -> None:
        self.backend = backend
        self.qsl = qsl
        self.batch_size = config.batch_size
        self.label_offset = backend.contract.label_offset
        self.log = log
        self.completed = 0
        self.failures = 0
        self.first_error: BaseException | None = None
        self.aborted = False  # set on Ctrl-C: complete the rest without inference
        self._lock = threading.Lock()

    # LoadGen callbacks; they must never raise (an exception escaping into LoadGen
    # leaves it in a state it cannot be destroyed from).
    def issue(self, samples: Sequence[Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """LoadGen has issued its last query."""

    def start(self) -> None:
        """Start worker threads (none for synchronous SUTs)."""

    def stop(self) -> None:
        """Stop and join worker threads."""

    def _run(self, samples: Sequence[Any], buffer: np.ndarray | None = None) -> None:
        ids = [s.id for s in samples]
        try:
            if self.aborted:
                raise _Aborted
            batch = self.qsl.gather(self.qsl.rows([s.index for s in samples]), buffer)
            top = top_k(self.backend.predict(batch), TOP_K, self.label_offset)
        except Exception as err:  # completed empty, counted, raised after the test
            self._fail(ids, err)
            return
        self._complete(ids, top)

    def _complete(self, ids: list[int], top: np.ndarray) -> None:
        base, step = top.ctypes.data, top.strides[0]
        addresses = range(base, base + len(ids) * step, step)
        lg.QuerySamplesComplete(
            [lg.QuerySampleResponse(i, a, step) for i, a in zip(ids, addresses, strict=True)]
        )
        with self._lock:
            self.completed += len(ids)

    def _fail(self, ids: list[int], err: BaseException) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])
        with self._lock:
            self.completed += len(ids)
            if isinstance(err, _Aborted):
                return
            self.failures += len(ids)
            first = self.first_error is None
            if first:
                self.first_error = err
        if first:
            self.log(f"warning: a batch of {len(ids)} failed (completing it empty): {err}")


class SingleStreamSUT(BaseSUT):
    """One sample per query, inferred in the issue callback from a RAM view (no copy)."""

    def issue(self, samples: Sequence[Any]) -> None:
        if len(samples) != 1:
            self._run(samples)
            return
        sample = samples[0]
        try:
            if self.aborted:
                raise _Aborted
            logits = self.backend.predict(self.qsl.one(sample.index))
            top = top_k(logits, TOP_K, self.label_offset)
        except Exception as err:  # completed empty, counted, raised after the test
            self._fail([sample.id], err)
            return
        self._complete([sample.id], top)


class MultiStreamSUT(BaseSUT):
    """One query of K samples, inferred in batches of ``batch_size`` in the issue callback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffer = np.empty((self.batch_size, *self.qsl.sample_shape), self.qsl.dtype)

    def issue(self, samples: Sequence[Any]) -> None:
        step = self.batch_size
        for start in range(0, len(samples), step):
            self._run(samples[start : start + step], self._buffer)


class _BatchQueue:
    """Samples waiting for a worker; ``take`` returns up to ``n``, waiting for a batch to fill."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._flushing = False

    def put(self, samples: Sequence[Any]) -> None:
        with self._cond:
            self._items.extend(samples)
            if len(samples) == 1:
                self._cond.notify()
            else:
                self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            self._flushing = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, n: int, wait_s: float) -> list[Any] | None:
        """Up to ``n`` samples; ``None`` once closed and empty."""
        with self._cond:
            while True:
                while not self._items:
                    if self._closed:
                        return None
                    self._cond.wait()
                if len(self._items) < n and wait_s > 0:
                    deadline = time.monotonic() + wait_s
                    while len(self._items) < n and not (self._flushing or self._closed):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                count = min(n, len(self._items))
                if count:
                    pop = self._items.popleft
                    return [pop() for _ in range(count)]


class _QueuedSUT(BaseSUT):
    """Issue only enqueues; ``workers`` threads take batches and complete them."""

    wait_s = 0.0

    def __init__(self, backend: Backend, qsl: SampleLibrary, config: RunConfig,
                 log: Callable[[str], None] = print) -> None:
        super().__init__(backend, qsl, config, log)
        self._queue = _BatchQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"ckvision-worker-{i}", daemon=True)
            for i in range(config.workers)
        ]

    def issue(self, samples: Sequence[Any]) -> None:
        self._queue.put(samples)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._queue.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _work(self) -> None:
        shape = (self.batch_size, *self.qsl.sample_shape)
        with self.backend.staging(self.batch_size) as staged:  # e.g. pinned: one copy less
            buffer = staged
            if buffer is None or buffer.shape != shape or buffer.dtype != self.qsl.dtype:
                buffer = np.empty(shape, self.qsl.dtype) if self.batch_size > 1 else None
            take, size, wait_s = self._queue.take, self.batch_size, self.wait_s
            while (samples := take(size, wait_s)) is not None:
                self._run(samples, buffer)


class OfflineSUT(_QueuedSUT):
    """All samples arrive in one query; workers take full batches at once."""


class ServerSUT(_QueuedSUT):
    """Dynamic batching: wait at most ``server_batch_timeout_us`` for a batch to fill."""

    def __init__(self, backend: Backend, qsl: SampleLibrary, config: RunConfig,
                 log: Callable[[str], None] = print) -> None:
        super().__init__(backend, qsl, config, log)
        self.wait_s = config.server_batch_timeout_us / 1e6

    def flush(self) -> None:
        self._queue.flush()


_SUTS: dict[Scenario, type[BaseSUT]] = {
    Scenario.SINGLE_STREAM: SingleStreamSUT,
    Scenario.MULTI_STREAM: MultiStreamSUT,
    Scenario.OFFLINE: OfflineSUT,
    Scenario.SERVER: ServerSUT,
}


def make_sut(config: RunConfig, backend: Backend, qsl: SampleLibrary,
             log: Callable[[str], None] = print) -> BaseSUT:
    """The SUT for ``config.scenario``."""
    return _SUTS[config.scenario](backend, qsl, config, log)
