"""CK experiment entries -> one pandas DataFrame, one row per run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ckvision.experiments.entries import RecordedRun, Warn, find_entries, iter_runs

__all__ = ["load_experiments", "run_row", "run_precision"]


def _flatten(prefix: str, data: Any, out: dict[str, Any]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(data, list):
        out[prefix] = ",".join(str(v) for v in data)
    else:
        out[prefix] = data


def run_row(run: RecordedRun) -> dict[str, Any]:
    """One flat row: ``entry``, ``tags``, then ``loadgen.*``, ``accuracy.*``, ``config.*`` ..."""
    record = {k: v for k, v in run.record.items() if k != "logs"}
    row: dict[str, Any] = {
        "entry": run.entry,
        "tags": ",".join(run.tags),
        "point": run.point,
        "repetition": run.repetition,
        "path": str(run.path),
    }
    _flatten("", record, row)
    row["precision"] = run_precision(record)[0]
    return row


_PRECISIONS = ("fp32", "fp16", "int8")


def run_precision(record: dict[str, Any]) -> tuple[str, str]:
    """(precision, calibration method or "-") of a recorded run's model."""
    model = record.get("model") or {}
    precision = model.get("precision") or next(
        (t for t in model.get("tags", []) if t in _PRECISIONS),
        (record.get("config") or {}).get("precision") or "fp32",
    )
    method = (model.get("quantization") or {}).get("method") or "-"
    return str(precision), str(method)


def load_experiments(
    paths: Sequence[Path] = (), tags: Sequence[str] = (), warn: Warn | None = None
) -> pd.DataFrame:
    """Load any set of experiment entries (default: all of ``$CK_REPOS/local``).

    A corrupt or malformed point is skipped with one warning naming its file
    (see :func:`ckvision.experiments.entries.iter_runs`); the rest load.
    """
    rows = [run_row(run) for run in iter_runs(find_entries(paths, tags, warn), warn)]
    return pd.DataFrame(rows)
