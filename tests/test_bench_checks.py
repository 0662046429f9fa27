"""The benchmarks' one verdict printer (``benchmarks/bench_common.print_checks``): a row for
information never reads PASS, a target no round could judge is a miss, and the exit status
says whether every target held."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_common import print_checks  # noqa: E402 - the benchmarks' sibling module

pytestmark = pytest.mark.timeout(30)


def _lines(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    return {line.split("  ")[1].strip(): line for line in capsys.readouterr().out.splitlines()}


def test_info_rows_carry_no_verdict_and_targets_do(capsys: pytest.CaptureFixture[str]) -> None:
    status = print_checks(
        [
            ("worst round", 0.968, None, True),
            ("median", 1.016, 0.97, True),
            ("p90 ratio", 1.015, 1.03, False),
            ("null samples/s", 224_099.0, 100_000.0, True),
        ]
    )
    lines = _lines(capsys)
    assert status == 0
    assert lines["worst round"].endswith("0.968  (info)")  # 0.968 < 0.97: never "PASS"
    assert "PASS" not in lines["worst round"] and "MISS" not in lines["worst round"]
    assert lines["median"].endswith("1.016  target >= 0.97  PASS")
    assert lines["p90 ratio"].endswith("1.015  target <= 1.03  PASS")
    assert lines["null samples/s"].endswith("224,099  target >= 100000  PASS")


def test_a_miss_and_a_target_no_round_judged_fail_the_script(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert print_checks([("p90 ratio", 1.031, 1.03, False), ("info", 0.5, None, True)]) == 2
    assert _lines(capsys)["p90 ratio"].endswith("MISS")
    assert print_checks([("still rounds", float("nan"), 0.97, True)]) == 2
    assert _lines(capsys)["still rounds"].endswith("nan  target >= 0.97  NOT JUDGED")
