"""Live progress during a performance run: one report per second, like aibench's.

Each report: elapsed seconds, completed / issued samples, the rate over the last second
and the p50 / p99 of the SUT-side latencies completed in that second. Off a TTY (CK
output, CI logs) it is one plain line per second; on a TTY one line rewritten in place.
``CK_PROGRESS=off`` (``--quiet``) turns it off.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import numpy as np

from ckvision.harness.histogram import LatencyRecorder

__all__ = ["report_progress", "format_progress", "PROGRESS_MODES"]

PROGRESS_MODES = ("auto", "plain", "live", "off")
INTERVAL_S = 1.0


def format_progress(
    elapsed: float, completed: int, issued: int, rate: float, window_ns: list[int]
) -> str:
    if window_ns:
        p50, p99 = (v / 1e6 for v in np.percentile(window_ns, (50, 99)))
        lat = f"p50={p50:.2f} ms p99={p99:.2f} ms"
    else:
        lat = "p50=- p99=-"
    return (
        f"progress: {elapsed:5.0f} s  completed={completed} issued={issued}  "
        f"rate={rate:.1f}/s  {lat} (last 1 s)"
    )


@contextlib.contextmanager
def report_progress(
    mode: str,
    ledger: Any,
    recorder: LatencyRecorder,
    log: Callable[[str], None] = print,
    stream: TextIO | None = None,
    interval_s: float = INTERVAL_S,
) -> Iterator[None]:
    """Report every ``interval_s`` while the body runs; ``mode`` is one of PROGRESS_MODES.

    Plain lines go to ``log``; the live line is rewritten on ``stream`` (stdout).
    """
    out = stream if stream is not None else sys.stdout
    if mode == "auto":
        mode = "live" if out.isatty() else "plain"
    if mode == "off":
        yield
        return
    stop = threading.Event()
    start = last_t = time.perf_counter()
    state = {"last": 0, "lines": 0}
    write: Callable[[str], None]
    if mode == "live":

        def write(line: str) -> None:
            out.write("\r" + line.ljust(100))
            out.flush()
    else:
        write = log

    def loop() -> None:
        nonlocal last_t
        while not stop.wait(interval_s):
            now = time.perf_counter()
            done = ledger.completed
            rate = (done - state["last"]) / max(now - last_t, 1e-9)
            state["last"], last_t = done, now
            write(format_progress(now - start, done, ledger.issued, rate, recorder.take_window()))
            state["lines"] += 1

    thread = threading.Thread(target=loop, name="ckvision-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if mode == "live" and state["lines"]:
            out.write("\n")
            out.flush()
