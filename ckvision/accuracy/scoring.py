"""Top-1 / top-5 accuracy from LoadGen's ``mlperf_log_accuracy.json``.

Each entry is ``{"qsl_idx": i, "seq_id": ..., "data": "<hex>"}`` where ``data`` is the
response bytes: the top-5 ImageNet classes as little-endian int32, best first. A sample
LoadGen logged more than once counts once; an empty response (a failed batch) is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.errors import DataError, RunError

__all__ = ["score_accuracy_log", "score_entries", "format_accuracy"]


def score_accuracy_log(
    path: Path, labels: np.ndarray, *, dataset: str = ""
) -> dict[str, Any]:
    """Score ``mlperf_log_accuracy.json`` at ``path`` against ImageNet ``labels``."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"LoadGen wrote no accuracy log at {path}") from None
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: unreadable accuracy log ({err})") from err
    if not isinstance(entries, list):
        raise RunError(f"{path}: accuracy log is not a JSON list")
    return score_entries(entries, labels, dataset=dataset)


def score_entries(
    entries: list[dict[str, Any]], labels: np.ndarray, *, dataset: str = ""
) -> dict[str, Any]:
    """Score parsed accuracy-log entries; see the module docstring."""
    seen: dict[int, np.ndarray] = {}
    for entry in entries:
        index = int(entry["qsl_idx"])
        if index in seen:
            continue
        if not 0 <= index < len(labels):
            raise DataError(f"accuracy log names sample {index}; the dataset has {len(labels)}")
        try:
            seen[index] = np.frombuffer(bytes.fromhex(entry.get("data", "")), dtype="<i4")
        except ValueError as err:
            raise RunError(f"accuracy log entry for sample {index} is not int32 hex") from err
    good = good_top5 = 0
    for index, classes in seen.items():
        label = int(labels[index])
        if len(classes) and int(classes[0]) == label:
            good += 1
        if label in classes[:5]:
            good_top5 += 1
    total = len(seen)
    return {
        "top1": 100.0 * good / total if total else 0.0,
        "top5": 100.0 * good_top5 / total if total else 0.0,
        "good": good,
        "good_top5": good_top5,
        "total": total,
        "dataset": dataset,
    }


def format_accuracy(result: dict[str, Any]) -> str:
    """``accuracy=75.200%, good=376, total=500`` and a ``top5=...`` line, as ck-mlperf prints."""
    return (
        f"accuracy={result['top1']:.3f}%, good={result['good']}, total={result['total']}\n"
        f"top5={result['top5']:.3f}%, good={result['good_top5']}, total={result['total']}"
    )
