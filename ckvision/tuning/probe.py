"""The short probe: time the backend under each concurrency layout on the real model.

A layout is what our Offline/Server SUT runs: ``workers`` threads sharing one backend
session with ``threads`` intra-op threads each, taking batches of ``batch``. Every
worker first runs one untimed call on its own thread, then all run until the slice ends,
each call followed by what the SUT does with a batch's output (the top-1 and the value
check: on a cache the call has just flushed it costs the most at batch 1), and the
layout's rate is the samples they completed divided by the time. :mod:`ckvision.tuning`
gives each candidate an equal slice of half its budget, then measures the two fastest
again in turns and keeps the median of each. The same probe measures one batch's latency
on the SingleStream layout, from which the expected latency LoadGen needs is set.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from ckvision.backends.base import Backend
from ckvision.harness.qsl import gather_rows

__all__ = [
    "Layout",
    "Measurement",
    "candidate_layouts",
    "measure_layout",
    "measure_latency",
    "usable_cores",
    "harness_cost_s",
    "output_work",
    "BATCHES",
    "spread",
    "close_all",
]

BATCHES = (1, 2, 4, 8, 16)


@dataclass(frozen=True, order=True)
class Layout:
    workers: int
    threads: int
    batch: int

    def describe(self) -> str:
        return f"{self.workers} workers x {self.threads} threads x batch {self.batch}"


@dataclass(frozen=True)
class Measurement:
    layout: Layout
    samples_per_s: float

    def as_record(self) -> dict[str, float | int]:
        return {**asdict(self.layout), "samples_per_s": round(self.samples_per_s, 2)}


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def candidate_layouts(
    cores: int, max_batch: int = 0, batches: tuple[int, ...] = BATCHES
) -> list[Layout]:
    """Every split of ``cores`` into workers x threads, at each batch the model allows."""
    splits = [(w, cores // w) for w in range(1, cores + 1) if cores % w == 0]
    sizes = [b for b in batches if not max_batch or b <= max_batch] or [1]
    return [Layout(w, t, b) for w, t in splits for b in sizes]


def measure_layout(
    backend: Backend,
    samples: np.ndarray,
    layout: Layout,
    seconds: float,
    after: Callable[[np.ndarray], object] | None = None,
    gather: bool = False,
) -> Measurement:
    """Samples/s of ``layout.workers`` threads calling ``backend.predict`` on batches, and
    ``after`` on each output (what the harness does with it; nothing for a raw figure).

    With at least a batch of ``samples``, each worker walks their consecutive slices (no
    copies), from its own offset, the way a loop over a dataset reads it; with fewer, the
    one batch holds them all, repeated in turn. ``gather``: each worker instead copies
    every batch of more than one sample from random rows into its own buffer, as our SUT
    forms batches from LoadGen's random sample order (on the worker's time, in series
    with its calls).
    """
    size = layout.batch
    if len(samples) >= size:
        batches = [samples[k : k + size] for k in range(0, len(samples) - size + 1, size)]
    else:
        batches = [np.ascontiguousarray(samples[np.arange(size) % len(samples)])]
    gather = gather and size > 1
    counts = [0] * layout.workers
    errors: list[BaseException] = []
    clock = [0.0, 0.0]  # start, deadline: set once every worker has made its first call

    def go() -> None:
        clock[0] = time.perf_counter()
        clock[1] = clock[0] + seconds

    start = threading.Barrier(layout.workers, action=go)

    def work(i: int) -> None:
        k = i * len(batches) // layout.workers
        rng = np.random.default_rng(i)
        buffer = np.empty((size, *samples.shape[1:]), samples.dtype) if gather else None

        def batch() -> np.ndarray:
            if buffer is None:
                return batches[k % len(batches)]
            return gather_rows(samples, rng.integers(0, len(samples), size), buffer)

        try:
            backend.predict(batch())  # untimed: this thread's first call
        except Exception as err:  # reported after the join, never swallowed
            errors.append(err)
        start.wait()
        try:
            while not errors and time.perf_counter() < clock[1]:
                out = backend.predict(batch())
                if after is not None:
                    after(out)
                k += 1
                counts[i] += size
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(layout.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - clock[0]
    if errors:
        raise errors[0]
    return Measurement(layout, sum(counts) / max(elapsed, 1e-9))


def measure_latency(
    backend: Backend,
    batch: np.ndarray,
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median seconds of one ``predict(batch)`` call, over ``seconds`` (at least 5 calls)."""
    backend.predict(batch)
    times: list[float] = []
    end = clock() + seconds
    while clock() < end or len(times) < 5:
        t0 = clock()
        backend.predict(batch)
        times.append(clock() - t0)
    return float(np.median(times))


def output_work(backend: Backend) -> Callable[[np.ndarray], None]:
    """What our SUT does with each output of ``backend`` in a performance run."""
    from ckvision.harness.outputs import check_values, top1

    contract, name = backend.contract, backend.name

    def work(out: np.ndarray) -> None:
        top1(out, len(out), contract, name)
        check_values(out, contract, name)

    return work


def harness_cost_s(batch: int, classes: int, seconds: float = 0.1) -> float:
    """Seconds per sample of what our SUT does around ``predict`` in a performance run (the
    top-1 and the check of the values, the responses).

    It runs under the GIL, so it adds to the backend's time whatever the layout: an
    Offline run of a fast model (or the null backend) is bounded by it, and the expected
    QPS must be too, or LoadGen issues far more samples than the run needs.
    """
    import mlperf_loadgen as lg

    from ckvision.harness.outputs import check_values, top1
    from ckvision.models.contract import ModelContract

    contract = ModelContract(name="cost", image_size=1, resize_size=1, num_classes=classes)
    logits = np.zeros((batch, classes), dtype=np.float32)
    ids = list(range(batch))
    best = float("inf")
    for _ in range(5):  # the minimum of five slices: the cost, not the neighbours' noise
        calls = 0
        begin = time.perf_counter()
        end = begin + seconds / 5
        while time.perf_counter() < end or calls < 3:
            top = top1(logits, batch, contract, "cost")
            check_values(logits, contract, "cost")
            pending = dict.fromkeys(ids, 0)
            address = top.__array_interface__["data"][0]
            [lg.QuerySampleResponse(i, address, 4) for i in ids if pending.pop(i) == 0]
            calls += 1
        best = min(best, (time.perf_counter() - begin) / (calls * batch))
    return best


def spread(values: list[float]) -> float:
    """(max - min) / median of repeated measurements of one thing (0 = they agree)."""
    middle = float(np.median(values))
    return (max(values) - min(values)) / middle if middle > 0 else 0.0


def close_all(sessions: Iterable[Backend]) -> None:
    """Close every session at once (a Triton server takes seconds to stop)."""
    todo = list(sessions)
    if todo:
        with ThreadPoolExecutor(len(todo)) as pool:
            list(pool.map(lambda session: session.close(), todo))
