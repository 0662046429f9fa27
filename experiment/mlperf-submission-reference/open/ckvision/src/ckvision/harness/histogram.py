"""Per-sample latency inside our SUT, saved as an HDR histogram next to the LoadGen logs.

The SUT-side latency of a sample is the time from LoadGen handing it to our ``issue``
callback to our ``QuerySamplesComplete`` for it. (LoadGen's own latencies, measured from
the scheduled issue time, stay the headline figures in ``loadgen.*``.) Recording is one
list append per sample; the histogram is built once, after the test, so it costs the
measured run almost nothing. Files: ``latency.hgrm`` (the standard percentile
distribution text, values in ms) and ``latency.hdr`` (the compressed base64 form that
``HdrHistogram.decode`` and the other HdrHistogram ports read).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.fsutil import atomic_write_text

__all__ = ["LatencyRecorder", "HGRM_FILE", "HDR_FILE", "PERCENTILES"]

HGRM_FILE = "latency.hgrm"
HDR_FILE = "latency.hdr"
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
_HIGHEST_US = 3600 * 1_000_000  # one hour
_DIGITS = 3


class LatencyRecorder:
    """Every completed sample's SUT-side latency; a :class:`~ckvision.harness.ledger.Ledger`
    observer (``ledger.observers.append(recorder.observe)``); thread-safe."""

    def __init__(self) -> None:
        self._latencies_ns: list[int] = []
        self._window: list[int] = []
        self._lock = threading.Lock()

    def observe(self, latencies_ns: list[int], ok: bool) -> None:
        """The ledger completed samples with these latencies (``ok``: not completed empty)."""
        if ok:
            with self._lock:
                self._latencies_ns.extend(latencies_ns)
                self._window.extend(latencies_ns)

    def take_window(self) -> list[int]:
        """Latencies (ns) completed since the last call."""
        with self._lock:
            window, self._window = self._window, []
        return window

    @property
    def count(self) -> int:
        return len(self._latencies_ns)

    def summary(self) -> dict[str, Any]:
        """Count, mean, max and percentiles (ns) of every recorded latency."""
        values = np.asarray(self._latencies_ns, dtype=np.int64)
        if values.size == 0:
            return {"count": 0}
        out: dict[str, Any] = {
            "count": int(values.size),
            "mean_ns": float(values.mean()),
            "min_ns": int(values.min()),
            "max_ns": int(values.max()),
        }
        for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
            out[f"p{p:g}_ns"] = int(v)
        return out

    def write(self, output_dir: Path, breakdown: dict[str, float] | None = None) -> dict[str, Any]:
        """Write ``latency.hgrm`` and ``latency.hdr``; return the summary plus file names."""
        from hdrh.histogram import HdrHistogram

        histogram = HdrHistogram(1, _HIGHEST_US, _DIGITS)
        micros = np.clip(np.asarray(self._latencies_ns, dtype=np.int64) // 1000, 1, _HIGHEST_US)
        for value, count in zip(*np.unique(micros, return_counts=True), strict=True):
            histogram.record_value(int(value), int(count))
        text = io.BytesIO()
        if histogram.get_total_count():
            histogram.output_percentile_distribution(text, 1000)  # microseconds -> ms
        output_dir = Path(output_dir)
        atomic_write_text(output_dir / HGRM_FILE, text.getvalue().decode("ascii"))
        atomic_write_text(output_dir / HDR_FILE, histogram.encode().decode("ascii") + "\n")
        summary = self.summary()
        summary["breakdown"] = breakdown
        summary.update({"source": "sut", "unit_recorded": "us", "hgrm": HGRM_FILE, "hdr": HDR_FILE})
        return summary
