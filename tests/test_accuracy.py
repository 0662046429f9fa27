"""Accuracy scoring, with hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ckvision.accuracy import format_accuracy, score_accuracy_log, score_entries
from ckvision.errors import DataError, RunError


def _entry(index: int, classes: list[int]) -> dict[str, object]:
    return {"seq_id": index, "qsl_idx": index,
            "data": np.asarray(classes, dtype="<i4").tobytes().hex().upper()}


LABELS = np.array([3, 1, 4, 1], dtype=np.int64)


def test_three_of_four_is_75_percent() -> None:
    entries = [
        _entry(0, [3, 0, 0, 0, 0]),  # right
        _entry(1, [1, 2, 3, 4, 5]),  # right
        _entry(2, [4, 9, 9, 9, 9]),  # right
        _entry(3, [7, 8, 9, 0, 1]),  # label 1 is 5th: top-5 only
    ]
    result = score_entries(entries, LABELS, dataset="toy")
    assert result == {"top1": 75.0, "top5": 100.0, "good": 3, "good_top5": 4, "total": 4,
                      "dataset": "toy"}
    assert format_accuracy(result) == (
        "accuracy=75.000%, good=3, total=4\ntop5=100.000%, good=4, total=4"
    )


def test_duplicates_count_once_and_empty_responses_are_wrong() -> None:
    entries = [
        _entry(0, [3, 1, 1, 1, 1]),
        _entry(0, [3, 1, 1, 1, 1]),  # LoadGen logged it twice
        {"seq_id": 9, "qsl_idx": 1, "data": ""},  # a failed batch: empty response
    ]
    result = score_entries(entries, LABELS)
    assert (result["good"], result["good_top5"], result["total"]) == (1, 1, 2)
    assert format_accuracy(result).splitlines()[0] == "accuracy=50.000%, good=1, total=2"


def test_example_format_from_ck_mlperf() -> None:
    result = {"top1": 75.2, "top5": 92.4, "good": 376, "good_top5": 462, "total": 500}
    assert format_accuracy(result) == (
        "accuracy=75.200%, good=376, total=500\ntop5=92.400%, good=462, total=500"
    )


def test_sample_outside_dataset_is_a_data_error() -> None:
    with pytest.raises(DataError, match="names sample 7; the dataset has 4"):
        score_entries([_entry(7, [1])], LABELS)


def test_log_file(tmp_path: Path) -> None:
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([_entry(2, [4, 0, 0, 0, 0])]))
    assert score_accuracy_log(log, LABELS)["top1"] == 100.0
    log.write_text("[{")
    with pytest.raises(RunError, match="unreadable accuracy log"):
        score_accuracy_log(log, LABELS)
    with pytest.raises(RunError, match="wrote no accuracy log"):
        score_accuracy_log(tmp_path / "missing.json", LABELS)


def test_no_entries_is_zero_not_a_crash() -> None:
    assert score_entries([], LABELS)["top1"] == 0.0
