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

When the auto-tuner chose the layout, the inference probe's near-best layouts (within
:data:`LAYOUT_NEAR` of its best, at most :data:`LAYOUT_CANDIDATES`) are first timed
*as a pipeline* with one batch ahead, and the fastest is the run's: for inference alone
they are as good, but a larger batch spreads the preprocessing over the engine's threads
(seen with Pillow: 1 x 2 threads x batch 4 was inference's best and the pipeline's worst).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.backends.base import Backend
from ckvision.data.encoded import EncodedDataset

__all__ = [
    "DEPTHS",
    "NEAR_BEST",
    "ROUNDS",
    "LAYOUT_NEAR",
    "LAYOUT_CANDIDATES",
    "choose_depth",
    "pipeline_layouts",
    "measure_pipeline",
    "tune_prefetch",
]

DEPTHS = (0, 1, 2)  # batches formed ahead per worker
NEAR_BEST = 0.03  # a depth this close to the fastest is as good; the fewest wins
ROUNDS = 2  # rounds per depth, in turns
LAYOUT_NEAR = 0.10  # inference layouts this close to the best are screened as pipelines
LAYOUT_CANDIDATES = 4  # at most this many of them
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
    backend: Callable[[int], Backend],
    layouts: Sequence[tuple[int, int, int]],
    measured: dict[str, Any],
    budget_s: float,
    after: Callable[[Backend], Callable[[np.ndarray], object]] | None = None,
) -> dict[str, Any]:
    """The pipeline's layout and depth, and what the probe saw (cached in ``measured``).

    ``layouts``: the (workers, threads, batch) the run may take, the inference probe's
    best first. With more than one, each is timed with one batch ahead (half the budget)
    and the fastest kept: inference alone does not say which layout feeds the pipeline
    best (a larger batch spreads over the engine's threads). Then every depth at that
    layout, in rounds (the other half). ``backend(threads)``: a session with those threads;
    ``after(backend)``: what the SUT does with each output."""
    dataset = EncodedDataset.open(
        dataset_dir, contract, engine, threads=preprocess_threads, device=device
    )
    engine_name = dataset.engine

    def key(layout: tuple[int, int, int], depth: int | str) -> str:
        workers, threads, batch = layout
        return (
            f"prefetch.{engine_name}.{device}.p{preprocess_threads}"
            f".w{workers}.t{threads}.b{batch}.d{depth}"
        )

    try:
        count = min(_SAMPLES, dataset.size)
        names = list(dataset.files[:count])
        formed: list[Callable[[Sequence[int]], np.ndarray]] = []  # made once, when needed

        def form() -> Callable[[Sequence[int]], np.ndarray]:
            if not formed:
                blobs = [dataset.read(i) for i in range(count)]
                run_engine = dataset.preprocessor(max(lay[2] for lay in layouts))
                run_engine.prepare(max(lay[0] for lay in layouts))
                formed.append(
                    lambda rows: dataset.model_input(
                        run_engine([blobs[r] for r in rows], [names[r] for r in rows])
                    )
                )
            return formed[0]

        def rate(layout: tuple[int, int, int], depth: int, seconds: float) -> float:
            session = backend(layout[1])
            workers, _threads, batch = layout
            work = None if after is None else after(session)
            return measure_pipeline(session, form(), count, workers, batch, depth, seconds, work)

        # the screen (one batch ahead, one short slice each) only ranks the layouts; the
        # depths at the chosen one are measured afresh, every depth alike
        screen = list(dict.fromkeys((lay[0], lay[1], lay[2]) for lay in layouts))
        screen_todo = [
            lay for lay in screen if len(screen) > 1 and key(lay, "screen") not in measured
        ]
        for lay in screen_todo:
            measured[key(lay, "screen")] = round(rate(lay, 1, budget_s / 2 / len(screen_todo)), 2)
        layout = max(screen, key=lambda lay: float(measured.get(key(lay, "screen"), 0.0)))
        depth_budget = budget_s / 2 if len(screen) > 1 else budget_s
        todo = [d for d in DEPTHS if key(layout, d) not in measured]
        rounds: dict[int, list[float]] = {d: [] for d in todo}
        for _round in range(ROUNDS):
            for depth in todo:
                rounds[depth].append(rate(layout, depth, depth_budget / (ROUNDS * len(todo))))
        for depth, seen in rounds.items():
            measured[key(layout, depth)] = round(float(np.median(seen)), 2)
        rates = {d: float(measured[key(layout, d)]) for d in DEPTHS}
    finally:
        dataset.close()
    chosen = choose_depth(rates)
    workers, threads, batch = layout
    return {
        "engine": engine_name,
        "layout": {"workers": workers, "threads": threads, "batch": batch},
        "screened": [
            {
                "workers": w,
                "threads": t,
                "batch": b,
                "images_per_s": measured[key((w, t, b), "screen")],
            }
            for w, t, b in screen
            if len(screen) > 1
        ],
        "depth": chosen,
        "images_per_s": rates[chosen],
        "candidates": [{"depth": d, "images_per_s": r} for d, r in rates.items()],
        "from_cache": not (screen_todo or todo),
    }


def pipeline_layouts(
    chosen: tuple[int, int, int], candidates: Sequence[Mapping[str, Any]]
) -> list[tuple[int, int, int]]:
    """The layouts the pipeline probe screens: ``chosen`` (the inference probe's best)
    first, then the other ``candidates`` (its records: workers, threads, batch,
    samples_per_s) within :data:`LAYOUT_NEAR` of the best rate, fastest first, at most
    :data:`LAYOUT_CANDIDATES` in all. No candidates (a layout given): ``chosen`` only."""
    if not candidates:
        return [chosen]
    best = max(float(c["samples_per_s"]) for c in candidates)
    near = sorted(
        (c for c in candidates if float(c["samples_per_s"]) >= best * (1 - LAYOUT_NEAR)),
        key=lambda c: -float(c["samples_per_s"]),
    )
    out = [chosen]
    for c in near:
        layout = (int(c["workers"]), int(c["threads"]), int(c["batch"]))
        if layout not in out:
            out.append(layout)
    return out[:LAYOUT_CANDIDATES]
