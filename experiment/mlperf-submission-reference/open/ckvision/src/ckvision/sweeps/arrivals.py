"""Equal-spaced arrivals: an open-loop load at a fixed QPS, measured like LoadGen's Server.

LoadGen's Server scenario draws Poisson arrivals and has no equal-spaced mode, so this
driver issues sample ``i`` at ``t0 + i / qps`` into the same layout our Server SUT uses
(``workers`` threads sharing one backend, batches of up to ``batch``), and measures each
sample's latency from its scheduled time, as LoadGen does. Like the cloud reference's
``linear`` scan it runs outside LoadGen; its trials are recorded in ``results.json``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ckvision.backends.base import Backend

__all__ = ["EqualSpacedResult", "run_equal_spaced"]


@dataclass(frozen=True)
class EqualSpacedResult:
    target_qps: float
    qps: float  # samples completed / (last completion - first scheduled time)
    latencies_s: np.ndarray
    failures: int


def run_equal_spaced(
    backend: Backend,
    images: np.ndarray,
    qps: float,
    duration_s: float,
    *,
    workers: int = 1,
    batch: int = 1,
) -> EqualSpacedResult:
    """Issue ``qps * duration_s`` samples evenly spaced; every one completes."""
    count = max(1, int(qps * duration_s))
    interval = 1.0 / qps
    pending: deque[tuple[int, float]] = deque()
    cond = threading.Condition()
    latencies = np.zeros(count)
    done = [0.0]
    failures: list[BaseException] = []
    closed = [False]

    def work() -> None:
        while True:
            with cond:
                while not pending and not closed[0]:
                    cond.wait()
                if not pending:
                    return
                items = [pending.popleft() for _ in range(min(batch, len(pending)))]
            rows = np.stack([images[i % len(images)] for i, _ in items])
            try:
                backend.predict(rows)
            except Exception as err:  # counted; the search treats the trial as failed
                failures.append(err)
            now = time.perf_counter()
            for i, scheduled in items:
                latencies[i] = now - scheduled
            done[0] = max(done[0], now)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    start = time.perf_counter() + 0.01
    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with cond:
            pending.append((i, scheduled))
            cond.notify()
    with cond:
        closed[0] = True
        cond.notify_all()
    for thread in threads:
        thread.join()
    elapsed = max(done[0] - start, 1e-9)
    return EqualSpacedResult(qps, count / elapsed, latencies, len(failures))
