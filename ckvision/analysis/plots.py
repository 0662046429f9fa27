"""Plots of recorded runs: matplotlib, rendered to PNG (bytes for the HTML report, files for
``ckvision results --plot``); no display needed."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ckvision.errors import DataError

__all__ = ["line_plot", "bar_plot", "percentile_plot", "plot_throughput"]


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.0))


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def line_plot(
    series: Sequence[tuple[str, pd.DataFrame]],
    x: str,
    ys: Sequence[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
) -> bytes:
    """One line per (label, frame) and y column, markers at the points."""
    fig, ax = _figure()
    for label, frame in series:
        data = frame.dropna(subset=[x]).sort_values(x)
        for y in ys:
            if y in data and data[y].notna().any():
                name = f"{label} {y}" if len(ys) > 1 or label else y
                ax.plot(
                    data[x].astype(float), data[y].astype(float), marker="o", label=name.strip()
                )
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def bar_plot(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str,
    reference: float | None = None,
) -> bytes:
    fig, ax = _figure()
    bars = ax.bar(range(len(values)), values)
    ax.bar_label(bars, fmt="%.2f")
    ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=20)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return _png(fig)


def percentile_plot(series: Sequence[tuple[str, pd.DataFrame]], *, title: str) -> bytes:
    """Latency against percentile, HdrHistogram style: the x axis is 1/(1-percentile) on a
    log scale, so the tail (p90, p99, p99.9) gets as much room as the median."""
    fig, ax = _figure()
    for label, frame in series:
        ax.plot(frame["inverse_tail"], frame["latency_ms"], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")  # SingleStream's milliseconds next to an Offline run's seconds
    ticks = [(1.0, "0%"), (2.0, "50%"), (10.0, "90%"), (100.0, "99%"), (1000.0, "99.9%")]
    ax.set_xticks([t for t, _ in ticks], [name for _, name in ticks])
    ax.set_title(title)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency, ms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_throughput(table: pd.DataFrame, path: Path) -> Path:
    """Bar chart of samples/s per performance run, labelled by entry and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perf = table[table["mode"] == "PerformanceOnly"].dropna(subset=["samples/s"])
    if perf.empty:
        raise DataError("no performance runs to plot; record a PerformanceOnly run first")
    labels = [f"{r.entry}\n{r.scenario} b{r.batch}" for r in perf.itertuples()]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(perf)), 4.5))
    bars = ax.bar(range(len(perf)), perf["samples/s"].astype(float))
    ax.bar_label(bars, fmt="%.1f")
    ax.set_xticks(range(len(perf)), labels, fontsize=7)
    ax.set_ylabel("samples per second (LoadGen)")
    ax.set_title("Throughput by run")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
