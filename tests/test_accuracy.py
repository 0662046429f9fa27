"""Accuracy scoring: hand-computed cases, and the same verdict as MLPerf's reference tool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ckvision.accuracy import format_accuracy, score_accuracy_log, score_entries
from ckvision.accuracy.scoring import TOP5_FILE, read_top5
from ckvision.errors import DataError, RunError


def _entry(index: int, top1: int, seq: int | None = None) -> dict[str, object]:
    """An entry as our SUT writes it: the top-1 class as one float32 (MLPerf's layout)."""
    return {
        "seq_id": index if seq is None else seq,
        "qsl_idx": index,
        "data": np.asarray([top1], dtype=np.float32).tobytes().hex().upper(),
    }


LABELS = np.array([3, 1, 4, 1], dtype=np.int64)
TOP5 = {0: [3, 0, 0, 0, 0], 1: [1, 2, 3, 4, 5], 2: [4, 9, 9, 9, 9], 3: [7, 8, 9, 0, 1]}


def reference_accuracy(entries: list[dict[str, object]], labels: np.ndarray) -> str:
    """mlcommons/inference tools/accuracy-imagenet.py's decoding with its DEFAULT options
    (--dtype float32), re-implemented from reading it: first entry per qsl_idx counts,
    np.frombuffer(bytes.fromhex(data), np.float32), found = int(data[0])."""
    seen: set[int] = set()
    good = 0
    for j in entries:
        idx = int(j["qsl_idx"])  # type: ignore[call-overload]
        if idx in seen:
            continue
        seen.add(idx)
        data = np.frombuffer(bytes.fromhex(str(j["data"])), np.float32)
        if int(labels[idx]) == int(data[0]):
            good += 1
    return f"accuracy={100.0 * good / len(seen):.3f}%, good={good}, total={len(seen)}"


def test_three_of_four_is_75_percent() -> None:
    entries = [_entry(0, 3), _entry(1, 1), _entry(2, 4), _entry(3, 7)]  # label 1 is 5th of #3
    result = score_entries(entries, LABELS, dataset="toy", top5=TOP5)
    assert result == {
        "top1": 75.0,
        "top5": 100.0,
        "good": 3,
        "good_top5": 4,
        "total": 4,
        "dataset": "toy",
    }
    assert format_accuracy(result) == (
        "accuracy=75.000%, good=3, total=4\ntop5=100.000%, good=4, total=4"
    )
    assert format_accuracy(result).splitlines()[0] == reference_accuracy(entries, LABELS)


def test_without_top5_record_top5_is_not_reported() -> None:
    result = score_entries([_entry(0, 3)], LABELS)
    assert result["top5"] is None and result["good_top5"] is None
    assert format_accuracy(result) == "accuracy=100.000%, good=1, total=1"


def test_duplicates_count_once_first_wins_and_empty_responses_are_wrong() -> None:
    entries = [
        _entry(0, 3),
        _entry(0, 2, seq=5),  # logged twice: the first entry counts, as in the reference
        {"seq_id": 9, "qsl_idx": 1, "data": ""},  # a failed batch: empty response
    ]
    result = score_entries(entries, LABELS)
    assert (result["good"], result["total"]) == (1, 2)
    assert format_accuracy(result).splitlines()[0] == "accuracy=50.000%, good=1, total=2"
    assert reference_accuracy(entries[:2], LABELS) == "accuracy=100.000%, good=1, total=1"


def test_int32_top5_layout_is_not_what_we_write() -> None:
    """The old layout (int32 top-5) decodes to garbage as float32: it must not come back."""
    old = {"seq_id": 0, "qsl_idx": 0, "data": np.asarray([3, 0, 0, 0, 0], "<i4").tobytes().hex()}
    assert reference_accuracy([old], LABELS).startswith("accuracy=0.000%")
    assert score_entries([old], LABELS)["good"] == 0


def test_sample_outside_dataset_is_a_data_error() -> None:
    with pytest.raises(DataError, match="names sample 7; the dataset has 4"):
        score_entries([_entry(7, 1)], LABELS)


def test_log_file_and_top5_record(tmp_path: Path) -> None:
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([_entry(2, 4), _entry(3, 7)]))
    (tmp_path / TOP5_FILE).write_text(
        json.dumps({"format": "ckvision-top5/1", "top5": {"2": TOP5[2], "3": TOP5[3]}})
    )
    result = score_accuracy_log(log, LABELS)
    assert (result["good"], result["good_top5"], result["total"]) == (1, 2, 2)
    assert read_top5(tmp_path / TOP5_FILE) == {2: TOP5[2], 3: TOP5[3]}
    (tmp_path / TOP5_FILE).write_text('{"format": "other"}')
    with pytest.raises(RunError, match="unreadable top-5 record"):
        score_accuracy_log(log, LABELS)
    log.write_text("[{")
    with pytest.raises(RunError, match="unreadable accuracy log"):
        score_accuracy_log(log, LABELS)
    with pytest.raises(RunError, match="wrote no accuracy log"):
        score_accuracy_log(tmp_path / "missing.json", LABELS)


def test_no_entries_is_zero_not_a_crash() -> None:
    assert score_entries([], LABELS)["top1"] == 0.0


def test_edges_a_bug_would_move(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="names sample 4; the dataset has 4"):
        score_entries([_entry(4, 1)], LABELS)  # one past the end
    no_data = score_entries([{"seq_id": 0, "qsl_idx": 1}], LABELS)  # no "data": wrong
    assert (no_data["good"], no_data["total"]) == (0, 1)
    sixth = score_entries([_entry(1, 9)], LABELS, top5={1: [9, 8, 7, 6, 5, 1]})
    assert sixth["good_top5"] == 0  # only the first five count
    assert score_entries([], LABELS, top5={})["top5"] == 0.0
    with pytest.raises(RunError, match="^accuracy log entry for sample 0 is not float32 hex$"):
        score_entries([{"qsl_idx": 0, "data": "zz"}], LABELS)


def test_log_without_top5_record_and_explicit_record_path(tmp_path: Path) -> None:
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([_entry(2, 4)]))
    alone = score_accuracy_log(log, LABELS, dataset="toy")
    assert (alone["good"], alone["top5"], alone["dataset"]) == (1, None, "toy")
    elsewhere = tmp_path / "other" / "top5.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps({"format": "ckvision-top5/1", "top5": {"2": [0, 4]}}))
    assert score_accuracy_log(log, LABELS, top5_path=elsewhere)["good_top5"] == 1
    (tmp_path / TOP5_FILE).write_text('{"format": "ckvision-top5/2", "top5": {}}')
    with pytest.raises(
        RunError,
        match=r"unreadable top-5 record \(unknown format "
        r"'ckvision-top5/2'\)$",
    ):
        score_accuracy_log(log, LABELS)
    log.write_text('{"not": "a list"}')
    with pytest.raises(RunError, match="accuracy log is not a JSON list$"):
        score_accuracy_log(log, LABELS)


def test_a_sample_missing_from_the_top5_record_is_not_top5() -> None:
    result = score_entries([_entry(0, 3), _entry(1, 2)], LABELS, top5={0: [3]})
    assert (result["good"], result["good_top5"]) == (1, 1)
