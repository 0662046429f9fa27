"""Top-1 / top-5 accuracy from LoadGen's ``mlperf_log_accuracy.json``.

The log has MLPerf's reference layout, so ``tools/accuracy-imagenet.py`` of
mlcommons/inference scores it with its default options: each entry is
``{"qsl_idx": i, "seq_id": ..., "data": "<hex>"}`` where ``data`` is the predicted
ImageNet class as one float32 (native byte order, as numpy's ``frombuffer`` reads it).
Top-1 is decoded exactly as the reference does: the first entry of each ``qsl_idx``
counts (later duplicates are ignored), ``int(data[0])`` is the class. An empty response
(a failed batch; the reference would crash on it) counts as wrong.

The top-5 are our own record, in ``ckvision_top5.json`` next to the log (MLPerf's layout
has no room for them): ``{"format": "ckvision-top5/1", "top5": {"<qsl_idx>": [c1..c5]}}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.errors import DataError, RunError

__all__ = ["score_accuracy_log", "score_entries", "format_accuracy", "read_top5", "TOP5_FILE"]

TOP5_FILE = "ckvision_top5.json"


def score_accuracy_log(
    path: Path, labels: np.ndarray, *, dataset: str = "", top5_path: Path | None = None
) -> dict[str, Any]:
    """Score ``mlperf_log_accuracy.json`` at ``path`` against ImageNet ``labels``.

    ``top5_path`` defaults to :data:`TOP5_FILE` next to the log; without it, top-5 is
    not reported (``None``).
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"LoadGen wrote no accuracy log at {path}") from None
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: unreadable accuracy log ({err})") from err
    if not isinstance(entries, list):
        raise RunError(f"{path}: accuracy log is not a JSON list")
    top5_path = path.parent / TOP5_FILE if top5_path is None else Path(top5_path)
    top5 = read_top5(top5_path) if top5_path.is_file() else None
    return score_entries(entries, labels, dataset=dataset, top5=top5)


def read_top5(path: Path) -> dict[int, list[int]]:
    """Our top-5 record: qsl index -> classes, best first."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != "ckvision-top5/1":
            raise ValueError(f"unknown format {data.get('format')!r}")
        return {int(k): [int(c) for c in v] for k, v in data["top5"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise RunError(f"{path}: unreadable top-5 record ({err})") from err


def score_entries(
    entries: list[dict[str, Any]],
    labels: np.ndarray,
    *,
    dataset: str = "",
    top5: dict[int, list[int]] | None = None,
) -> dict[str, Any]:
    """Score parsed accuracy-log entries; see the module docstring."""
    seen: dict[int, int | None] = {}  # qsl index -> top-1 class (None: empty response)
    for entry in entries:
        index = int(entry["qsl_idx"])
        if index in seen:
            continue
        if not 0 <= index < len(labels):
            raise DataError(f"accuracy log names sample {index}; the dataset has {len(labels)}")
        try:
            data = np.frombuffer(bytes.fromhex(entry.get("data", "")), dtype=np.float32)
        except ValueError as err:
            raise RunError(f"accuracy log entry for sample {index} is not float32 hex") from err
        seen[index] = int(data[0]) if len(data) else None
    good = good_top5 = 0
    for index, found in seen.items():
        label = int(labels[index])
        if found is not None and found == label:
            good += 1
        if top5 is not None and label in top5.get(index, [])[:5]:
            good_top5 += 1
    total = len(seen)
    return {
        "top1": 100.0 * good / total if total else 0.0,
        "top5": (100.0 * good_top5 / total if total else 0.0) if top5 is not None else None,
        "good": good,
        "good_top5": good_top5 if top5 is not None else None,
        "total": total,
        "dataset": dataset,
    }


def format_accuracy(result: dict[str, Any]) -> str:
    """``accuracy=75.200%, good=376, total=500`` and a ``top5=...`` line, as ck-mlperf prints."""
    line = f"accuracy={result['top1']:.3f}%, good={result['good']}, total={result['total']}"
    if result.get("top5") is None:
        return line
    return (
        f"{line}\ntop5={result['top5']:.3f}%, good={result['good_top5']}, total={result['total']}"
    )
