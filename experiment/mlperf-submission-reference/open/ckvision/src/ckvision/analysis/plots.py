"""Plots of recorded runs (matplotlib, written to PNG; no display needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ckvision.errors import DataError

__all__ = ["plot_throughput"]


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
