"""The report's plots: matplotlib figures rendered to PNG bytes (no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pandas as pd

__all__ = ["line_plot", "bar_plot"]


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
