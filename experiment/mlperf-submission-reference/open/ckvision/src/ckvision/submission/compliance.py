"""Our TEST01 / TEST04 verification, with the verdicts of MLPerf's compliance scripts.

MLPerf's ``compliance/TEST01/run_verification.py`` and ``compliance/TEST04/...`` are
run in the tests on the same logs and must agree (pass and fail). The rules, read
from mlcommons/inference (not copied):

* TEST01 accuracy: every logged output of the compliance run whose sample is in the
  accuracy run's log must equal it (compared as the log's data type; ours is float32);
  at least one must match.
* TEST01 performance (detail logs): both runs VALID, same scenario, the compliance
  score within 10 % of the performance run's (20 % for SingleStream <= 0.2 ms,
  MultiStream <= 1.6 ms). Score: Offline samples/s, SingleStream / MultiStream the
  early-stopping latency estimate, Server completed samples/s.
* TEST04 performance (summary logs): both VALID, and the run that repeats one sample
  not more than 10 % faster (20 % under the same small-latency rule, applied to the
  SingleStream / MultiStream rate 1e9 / latency, as MLPerf's script does).

Each writes the ``verify_*.txt`` text the checker reads (a ``TEST PASS`` line).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Verdict",
    "verify_test01_accuracy",
    "verify_test01_performance",
    "verify_test04_performance",
    "mllog_values",
]

_PREFIX = ":::MLLOG "
_DETAIL_SCORE = {
    "Offline": "result_samples_per_second",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Server": "result_completed_samples_per_sec",
}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str  # the verify_*.txt content


def mllog_values(text: str) -> dict[str, Any]:
    """Every ``:::MLLOG`` key of a detail log -> its (last) value; cut lines are skipped."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith(_PREFIX):
            try:
                event = json.loads(line[len(_PREFIX) :])
            except ValueError:
                continue
            if isinstance(event, dict) and "key" in event:
                out[str(event["key"])] = event.get("value")
    return out


def _threshold(scenario: str, ref_score: float) -> float:
    small = (scenario == "SingleStream" and ref_score <= 200000) or (
        scenario == "MultiStream" and ref_score <= 1600000
    )
    return 0.20 if small else 0.10


def _entries(text: str, what: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{what} is not valid JSON ({err})") from err
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and "qsl_idx" in e and "data" in e for e in data
    ):
        raise ValueError(f"{what} is not a LoadGen accuracy log")
    return data


def _first(hex_text: str, dtype: np.dtype[Any]) -> np.ndarray:
    raw = bytes.fromhex(hex_text)
    return np.frombuffer(raw[: len(raw) - len(raw) % dtype.itemsize], dtype)


def verify_test01_accuracy(
    accuracy_log: str, compliance_log: str, dtype: str = "float32"
) -> Verdict:
    """Compare the outputs a TEST01 run logged with the accuracy run's (texts of the logs)."""
    kind = np.dtype(dtype)
    reference = _entries(accuracy_log, "the accuracy run's mlperf_log_accuracy.json")
    test = _entries(compliance_log, "the TEST01 run's mlperf_log_accuracy.json")
    results: dict[int, str] = {}
    duplicates = acc_mismatch = matched = mismatched = missing = 0
    for entry in reference:
        idx, data = int(entry["qsl_idx"]), str(entry["data"])
        if idx in results:
            duplicates += 1
            acc_mismatch += results[idx] != data
        else:
            results[idx] = data
    for entry in test:
        idx, data = int(entry["qsl_idx"]), str(entry["data"])
        if idx in results:
            matched += 1
            mine, theirs = _first(data, kind), _first(results[idx], kind)
            if mine.size == 0 or theirs.size == 0:
                mismatched += mine.size != theirs.size
            elif mine[0] != theirs[0]:
                mismatched += 1
        else:
            missing += 1
        results[idx] = data  # as MLPerf's script: a repeated sample compares with the last
    passed = mismatched == 0 and matched > 0
    lines = [
        "Verifying accuracy (ckvision, the rules of MLPerf's TEST01 verify_accuracy.py).",
        f"num_acc_log_entries = {len(reference)}",
        f"num_acc_log_duplicate_keys = {duplicates}",
        f"num_acc_log_data_mismatch = {acc_mismatch}",
        f"num_perf_log_entries = {len(test)}",
        f"num_perf_log_qsl_idx_match = {matched}",
        f"num_perf_log_data_mismatch = {mismatched}",
        f"num_missing_qsl_idxs = {missing}",
        "TEST PASS" if passed else "TEST FAIL",
    ]
    return Verdict(passed, "\n".join(lines) + "\n")


def verify_test01_performance(reference_detail: str, test_detail: str) -> Verdict:
    """TEST01's performance check on the two detail logs."""
    lines = [
        "Verifying performance (ckvision, the rules of MLPerf's TEST01 verify_performance.py)."
    ]
    scores: list[tuple[str, float]] = []
    for name, text in (("reference", reference_detail), ("test", test_detail)):
        values = mllog_values(text)
        scenario = str(values.get("effective_scenario", ""))
        if scenario not in _DETAIL_SCORE or _DETAIL_SCORE[scenario] not in values:
            return Verdict(False, "\n".join([*lines, f"TEST FAIL: no result in the {name} log"]))
        if values.get("result_validity") != "VALID":
            return Verdict(
                False, "\n".join([*lines, f"TEST FAIL: Invalid results in the {name} log"]) + "\n"
            )
        scores.append((scenario, float(values[_DETAIL_SCORE[scenario]])))
    (ref_scenario, ref), (test_scenario, test) = scores
    if ref_scenario != test_scenario:
        lines.append("TEST FAIL: Test and reference scenarios do not match!")
        return Verdict(False, "\n".join(lines) + "\n")
    threshold = _threshold(ref_scenario, ref)
    passed = ref * (1 - threshold) <= test <= ref * (1 + threshold)
    lines += [
        f"Reference score = {ref}",
        f"Test score = {test}",
        f"Allowed: within {threshold:.0%} of the reference",
        "TEST PASS" if passed else "TEST FAIL: Test score invalid",
    ]
    return Verdict(passed, "\n".join(lines) + "\n")


_SUMMARY_SCORE = {
    "Offline": re.compile(r"^Samples per second\s*:\s*(\S+)"),
    "Server": re.compile(r"^Completed samples per second\s*:\s*(\S+)"),
    "SingleStream": re.compile(
        r"Early stopping (?:90th|90\.0th|99\.9th) percentile estimate\s*:\s*(\S+)"
    ),
    "MultiStream": re.compile(r"Early stopping (?:99th|99\.0th) percentile estimate\s*:\s*(\S+)"),
}


def _summary_score(text: str) -> tuple[str, float | None, bool]:
    scenario, score, valid = "", None, True
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Scenario") and ":" in line:
            scenario = line.split(":", 1)[1].strip()
            continue
        pattern = _SUMMARY_SCORE.get(scenario)
        match = pattern.search(line) if pattern else None
        if match and score is None:
            value = float(match.group(1))
            score = 1e9 / value if scenario in ("SingleStream", "MultiStream") else value
        if line.startswith("Result is") and line.split(":", 1)[-1].strip() == "INVALID":
            valid = False
    return scenario, score, valid


def verify_test04_performance(reference_summary: str, test_summary: str) -> Verdict:
    """TEST04's check on the two summary logs: the repeated-sample run is not faster."""
    lines = [
        "Verifying performance (ckvision, the rules of MLPerf's TEST04 verify_performance.py)."
    ]
    ref_scenario, ref, ref_valid = _summary_score(reference_summary)
    test_scenario, test, test_valid = _summary_score(test_summary)
    if not ref_valid:
        return Verdict(
            False, "\n".join([*lines, "TEST FAIL: Reference results are invalid"]) + "\n"
        )
    if not test_valid:
        return Verdict(False, "\n".join([*lines, "TEST FAIL: Test results are invalid"]) + "\n")
    if ref_scenario != test_scenario or ref is None or test is None:
        lines.append("TEST FAIL: Test and reference scenarios do not match, or have no score")
        return Verdict(False, "\n".join(lines) + "\n")
    threshold = _threshold(ref_scenario, ref)
    passed = test < ref * (1 + threshold)
    lines += [
        f"reference score = {ref}",
        f"test score = {test}",
        f"Allowed: less than {1 + threshold:.2f} x the reference",
        "TEST PASS" if passed else "TEST FAIL: Test score invalid",
    ]
    return Verdict(passed, "\n".join(lines) + "\n")
