"""The JPEG-in pipeline probe: how many batches to form ahead (``CK_PREPROCESS_PREFETCH``).

With JPEG input the SUT's workers form each batch (decode, resize, crop, normalise) and
then infer it; ``CK_PREPROCESS_PREFETCH=N`` lets each worker form up to N batches ahead
on a thread of its own (:mod:`ckvision.harness.sut`). Whether that pays depends on the
machine: on a few shared cores the two stages compete for them, with a GPU (or spare
cores) they overlap. So the probe times the pipeline itself, as the SUT runs it: the
run's layout (``workers`` threads sharing one backend session, batches of the run's
size), the run's engine and preprocessing threads, the dataset's own encoded files, and
each depth of :data:`DEPTHS` in alternating rounds (0 1 2 0 1 2), each keeping the median
of its rounds. The fewest batches ahead within :data:`NEAR_BEST` of the fastest wins
(a batch formed ahead holds memory and a thread for nothing when it does not pay).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.backends.base import Backend
from ckvision.data.encoded import EncodedDataset

__all__ = ["DEPTHS", "NEAR_BEST", "ROUNDS", "choose_depth", "measure_pipeline", "tune_prefetch"]

DEPTHS = (0, 1, 2)  # batches formed ahead per worker
NEAR_BEST = 0.03  # a depth this close to the fastest is as good; the fewest wins
ROUNDS = 2  # rounds per depth, in turns
_SAMPLES = 64  # distinct encoded files the probe reads (the first of the dataset)


def measure_pipeline(
    backend: Backend,
    form: Callable[[Sequence[int]], np.ndarray],
    count: int,
    workers: int,
    batch: int,
    depth: int,
    seconds: float,
    after: Callable[[np.ndarray], object] | None = None,
) -> float:
    """Images/s of ``workers`` threads that each form batches of ``batch`` of the
    ``count`` samples (``form(indices)``) and infer them, ``depth`` batches formed ahead
    on a thread of the worker's own (0: in series), with ``after`` on each output."""
    counts = [0] * workers
    errors: list[BaseException] = []
    clock = [0.0, 0.0]  # start, deadline: set once every worker has made its first call

    def go() -> None:
        clock[0] = time.perf_counter()
        clock[1] = clock[0] + seconds

    start = threading.Barrier(workers, action=go)

    def work(i: int) -> None:
        k = i * count // workers

        def take() -> list[int]:
            nonlocal k
            part = [(k + j) % count for j in range(batch)]
            k += batch
            return part

        former = ThreadPoolExecutor(1) if depth else None
        ahead: deque[Future[np.ndarray]] = deque()
        try:
            backend.predict(form(take()))  # untimed: this thread's first call
            start.wait()
            while not errors and time.perf_counter() < clock[1]:
                if former is None:
                    batch_in = form(take())
                else:
                    while len(ahead) <= depth:
                        ahead.append(former.submit(form, take()))
                    batch_in = ahead.popleft().result()
                out = backend.predict(batch_in)
                if after is not None:
                    after(out)
                counts[i] += batch
        except threading.BrokenBarrierError:
            pass  # another worker failed before the start; its error is reported
        except Exception as err:  # reported after the join, never swallowed
            errors.append(err)
            start.abort()
        finally:
            if former is not None:
                former.shutdown(wait=True, cancel_futures=True)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    elapsed = max(time.perf_counter() - clock[0], 1e-9) if clock[0] else 1e-9
    return sum(counts) / elapsed


def choose_depth(rates: dict[int, float]) -> int:
    """The fewest batches ahead whose rate is within :data:`NEAR_BEST` of the fastest."""
    best = max(rates.values())
    return min(d for d, r in rates.items() if r >= best * (1 - NEAR_BEST))


def tune_prefetch(
    dataset_dir: Path,
    contract: Any,
    engine: str,
    device: str,
    preprocess_threads: int,
    backend: Backend,
    layout: tuple[int, int, int],
    measured: dict[str, Any],
    budget_s: float,
    after: Callable[[np.ndarray], object] | None = None,
) -> dict[str, Any]:
    """The chosen depth and what the probe saw (cached in ``measured``); ``layout`` is the
    run's (workers, threads, batch), ``backend`` a session with its threads."""
    workers, threads, batch = layout
    dataset = EncodedDataset.open(
        dataset_dir, contract, engine, threads=preprocess_threads, device=device
    )
    try:
        prefix = (
            f"prefetch.{dataset.engine}.{device}.p{preprocess_threads}"
            f".w{workers}.t{threads}.b{batch}"
        )
        keys = {d: f"{prefix}.d{d}" for d in DEPTHS}
        todo = [d for d in DEPTHS if keys[d] not in measured]
        if todo:
            count = min(_SAMPLES, dataset.size)
            blobs = [dataset.read(i) for i in range(count)]
            names = list(dataset.files[:count])
            engine_ = dataset.preprocessor(batch)
            engine_.prepare(workers)

            def form(rows: Sequence[int]) -> np.ndarray:
                return dataset.model_input(
                    engine_([blobs[r] for r in rows], [names[r] for r in rows])
                )

            rounds: dict[int, list[float]] = {d: [] for d in todo}
            share = budget_s / (ROUNDS * len(todo))
            for _round in range(ROUNDS):
                for depth in todo:
                    rounds[depth].append(
                        measure_pipeline(backend, form, count, workers, batch, depth, share, after)
                    )
            for depth, seen in rounds.items():
                measured[keys[depth]] = round(float(np.median(seen)), 2)
        rates = {d: float(measured[keys[d]]) for d in DEPTHS}
    finally:
        dataset.close()
    chosen = choose_depth(rates)
    return {
        "engine": dataset.engine,
        "depth": chosen,
        "images_per_s": rates[chosen],
        "candidates": [{"depth": d, "images_per_s": r} for d, r in rates.items()],
        "from_cache": not todo,
    }
