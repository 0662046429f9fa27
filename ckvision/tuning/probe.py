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
    "ACCEL_BATCHES",
    "ACCEL_WORKERS",
    "spread",
    "close_all",
]

BATCHES = (1, 2, 4, 8, 16)
# An accelerator (Capabilities.accelerator): its throughput keeps rising far past a CPU's
# batches (EfficientNet-Lite0 on an H200: about 10x from batch 16 to 256), and its layouts
# are runners on streams of their own, not a split of the host's cores.
ACCEL_BATCHES = (1, 4, 16, 64, 256)  # (the run tries the tuned one's half: CK_ADAPTIVE_BATCH)
ACCEL_WORKERS = (1, 2, 4)


@dataclass(frozen=True, order=True)
class Layout:
    workers: int
    threads: int
    batch: int
    streams: int = 0  # GPU streams the workers share (CK_CUDA_STREAMS); 0 = one each

    def describe(self) -> str:
        text = f"{self.workers} workers x {self.threads} threads x batch {self.batch}"
        return text + (f" on {self.streams} shared GPU stream(s)" if self.streams else "")


@dataclass(frozen=True)
class Measurement:
    layout: Layout
    samples_per_s: float

    def as_record(self) -> dict[str, float | int]:
        fields = {k: v for k, v in asdict(self.layout).items() if k != "streams" or v}
        return {**fields, "samples_per_s": round(self.samples_per_s, 2)}


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def candidate_layouts(
    cores: int,
    max_batch: int = 0,
    batches: tuple[int, ...] | None = None,
    accelerator: bool = False,
    stream_sharing: bool = False,
) -> list[Layout]:
    """Every split of ``cores`` into workers x threads, at each batch the model allows; on
    an accelerator, :data:`ACCEL_WORKERS` runners (the host's cores all theirs, for the
    gathers and copies) at each of :data:`ACCEL_BATCHES`, with ``stream_sharing`` each
    count above one also on one shared stream."""
    if accelerator:
        splits = [(w, cores, 0) for w in ACCEL_WORKERS]
        if stream_sharing:
            splits += [(w, cores, 1) for w in ACCEL_WORKERS if w > 1]
        batches = ACCEL_BATCHES if batches is None else batches
    else:
        splits = [(w, cores // w, 0) for w in range(1, cores + 1) if cores % w == 0]
        batches = BATCHES if batches is None else batches
    sizes = [b for b in batches if not max_batch or b <= max_batch] or [1]
    return [Layout(w, t, b, s) for w, t, s in splits for b in sizes]


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
    one batch holds them all, repeated in turn. ``gather``: each batch of more than one
    sample is made of random rows, as our SUT forms batches from LoadGen's random sample
    order: copied by the worker into its own buffer (on its time, in series with its
    calls), or, for a backend that :attr:`~Backend.gathers_rows`, taken by the backend
    itself (``predict_rows``) from the samples in its :meth:`~Backend.host_memory`,
    as the SUT hands them over.
    """
    size = layout.batch
    if len(samples) >= size:
        batches = [samples[k : k + size] for k in range(0, len(samples) - size + 1, size)]
    else:
        batches = [np.ascontiguousarray(samples[np.arange(size) % len(samples)])]
    gather = gather and size > 1
    source: np.ndarray | None = None
    if gather and backend.gathers_rows:
        source = backend.host_memory(samples.shape, samples.dtype)
        source[...] = samples
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
        own = gather and source is None
        buffer = np.empty((size, *samples.shape[1:]), samples.dtype) if own else None

        def call() -> np.ndarray:
            if source is not None:
                return backend.predict_rows(source, rng.integers(0, len(samples), size))
            if buffer is None:
                return backend.predict(batches[k % len(batches)])
            return backend.predict(
                gather_rows(samples, rng.integers(0, len(samples), size), buffer)
            )

        try:
            call()  # untimed: this thread's first call
        except Exception as err:  # reported after the join, never swallowed
            errors.append(err)
        start.wait()
        try:
            while not errors and time.perf_counter() < clock[1]:
                out = call()
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
