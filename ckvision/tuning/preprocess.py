"""The JPEG-in probe: how many preprocessing threads (``CK_PREPROCESS_THREADS``).

With ``CK_INPUT_FORMAT=jpeg`` the batches form inside the measured path, so the engine's
thread count matters as much as the backend's. When the user left it unset, the probe
times the run's engine on the dataset's own encoded files at a few thread counts
(:func:`thread_candidates`: 1, 2, 4, ... up to the usable cores, and the cores), each for
an equal short slice, batches of the run's size, and keeps the fewest threads within
:data:`NEAR_BEST` of the fastest (threads it does not need are left to the backend).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ckvision.data.encoded import EncodedDataset, make_preprocessor

__all__ = ["thread_candidates", "tune_preprocess_threads", "NEAR_BEST"]

NEAR_BEST = 0.05  # a thread count this close to the fastest is as good; the fewest wins
_SAMPLES = 64  # distinct encoded files the probe reads (the first of the dataset)


def thread_candidates(cores: int) -> list[int]:
    """1, 2, 4, ... up to ``cores``, and ``cores`` itself."""
    out, n = [], 1
    while n < cores:
        out.append(n)
        n *= 2
    return [*out, max(1, cores)]


def _rate(
    dataset: EncodedDataset, blobs: Sequence[bytes], batch: int, threads: int, seconds: float
) -> float:
    """Images/s of the run's engine at ``threads`` threads on batches of ``batch``."""
    engine = make_preprocessor(
        dataset.spec,
        dataset.engine,
        max_batch=batch,
        threads=threads,
        device=dataset.device,
    )
    names = list(dataset.files[: len(blobs)])
    try:
        engine.prepare(1)
        engine(blobs[:batch], names[:batch])  # untimed: builds the pipeline, warms the pool
        done, k = 0, 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or done == 0:
            part = [(k + i) % len(blobs) for i in range(batch)]
            engine([blobs[i] for i in part], [names[i] for i in part])
            done += batch
            k += batch
        return done / max(elapsed, 1e-9)
    finally:
        engine.close()


def tune_preprocess_threads(
    dataset_dir: Path,
    contract: Any,
    engine: str,
    device: str,
    batch: int,
    cores: int,
    measured: dict[str, Any],
    budget_s: float,
) -> dict[str, Any]:
    """The chosen thread count and what the probe saw (cached in ``measured``)."""
    dataset = EncodedDataset.open(dataset_dir, contract, engine, device=device)
    try:
        candidates = thread_candidates(cores)
        keys = {t: f"preprocess.{dataset.engine}.{device}.b{batch}.t{t}" for t in candidates}
        todo = [t for t in candidates if keys[t] not in measured]
        if todo:
            blobs = [dataset.read(i) for i in range(min(_SAMPLES, dataset.size))]
            for threads in todo:
                seconds = budget_s / len(todo)
                measured[keys[threads]] = round(_rate(dataset, blobs, batch, threads, seconds), 2)
        rates = {t: float(measured[keys[t]]) for t in candidates}
    finally:
        dataset.close()
    best = max(rates.values())
    chosen = min(t for t, r in rates.items() if r >= best * (1 - NEAR_BEST))
    return {
        "engine": dataset.engine,
        "batch": batch,
        "threads": chosen,
        "images_per_s": rates[chosen],
        "candidates": [{"threads": t, "images_per_s": r} for t, r in rates.items()],
        "from_cache": not todo,
    }
