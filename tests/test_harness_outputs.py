"""The backend output contract (pure checks, no LoadGen): every way an output can be wrong
is one exact line, and a right one decodes to ImageNet classes with the label offset."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ckvision.harness.ledger import Ledger
from ckvision.harness.outputs import OutputContractError, decode, top_k
from ckvision.models.contract import ModelContract

SCORES = ModelContract(name="m", num_classes=4, label_offset=1, output_name="probs")
ARGMAX = replace(SCORES, output_name="ArgMax:0", output_kind="argmax")
WHERE = "backend b, output"


def test_scores_decode_to_classes_minus_the_offset() -> None:
    out = np.array([[0.0, 0.1, 0.7, 0.2, 0.0], [0.9, 0.0, 0.05, 0.05, 0.0]], np.float32)
    classes, top = decode(out, 2, SCORES, "b")
    assert classes.dtype == np.float32 and classes.tolist() == [1.0, -1.0]  # -1: background
    assert top.tolist() == [[1, 2, 0, -1, 3], [-1, 1, 2, 0, 3]]


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_argmax_decodes_to_classes_minus_the_offset(shape: tuple[int, ...]) -> None:
    out = np.array([4, 0, 2], np.int64).reshape(shape)
    classes, top = decode(out, 3, ARGMAX, "b")
    assert classes.tolist() == [3.0, -1.0, 1.0] and top.tolist() == [[3], [-1], [1]]
    assert classes.dtype == np.float32 and top.dtype == np.int32  # MLPerf's / our layouts


BAD = [
    (SCORES, [[0.0] * 5], 2, "'probs': returned shape (1, 5) for a batch of 2; expected (2, 5)"),
    (
        SCORES,
        np.zeros((2, 4), np.float32),
        2,
        "'probs': returned 4 classes; the contract says 5 (4 + label offset 1)",
    ),
    (SCORES, np.zeros((2, 5), np.int64), 2, "'probs': scores have dtype int64; expected floats"),
    (
        SCORES,
        np.zeros((2, 5, 1), np.float32),
        2,
        "'probs': returned shape (2, 5, 1) for a batch of 2; expected (2, 5)",
    ),
    (
        SCORES,
        np.array([[0, 0, 0, 0, 0], [0, 0, np.inf, 0, 0]], np.float32),
        2,
        "'probs': row 1 of the batch holds NaN or infinity",
    ),
    (
        SCORES,
        np.array([[0, 0, 0, 0, -np.inf]], np.float32),
        1,
        "'probs': row 0 of the batch holds NaN or infinity",
    ),
    (SCORES, (1, 2), 1, "'probs': returned tuple, not a numpy array"),
    (
        ARGMAX,
        np.array([1, 2], np.int64),
        3,
        "'ArgMax:0': ArgMax output has shape (2,) for a batch of 3; expected (3,)",
    ),
    (
        ARGMAX,
        np.array([[1, 2]], np.int64),
        1,
        "'ArgMax:0': ArgMax output has shape (1, 2) for a batch of 1; expected (1,)",
    ),
    (
        ARGMAX,
        np.array([1.0, 2.0]),
        2,
        "'ArgMax:0': ArgMax output has dtype float64; expected integer class ids",
    ),
    (ARGMAX, np.array([0, 5], np.int32), 2, "'ArgMax:0': ArgMax output holds 0..5, outside 0..4"),
    (ARGMAX, np.array([-1, 4], np.int32), 2, "'ArgMax:0': ArgMax output holds -1..4, outside 0..4"),
]


@pytest.mark.parametrize(("contract", "out", "n", "message"), BAD)
def test_a_wrong_output_is_one_exact_line(
    contract: ModelContract, out: object, n: int, message: str
) -> None:
    if isinstance(out, list):
        out = np.asarray(out, np.float32)
    with pytest.raises(OutputContractError) as info:
        decode(out, n, contract, "b")
    assert str(info.value) == f"{WHERE} {message}"


def test_edges_that_are_right() -> None:
    decode(np.array([0, 4], np.uint8), 2, ARGMAX, "b")  # unsigned ids, both ends of the range
    big = np.full((1, 5), np.finfo(np.float32).max, np.float32)
    assert decode(big, 1, SCORES, "b")[0].tolist() == [-1.0]  # huge but finite: fine


def test_top_k_is_ordered_and_offset() -> None:
    scores = np.array([[0.1, 0.9, 0.3, 0.5, 0.0, 0.2, 0.4]], np.float32)
    assert top_k(scores).tolist() == [[1, 3, 6, 2, 5]]
    assert top_k(scores, 2, offset=1).tolist() == [[0, 2]]
    assert top_k(scores[:, :3]).tolist() == [[1, 2, 0]]
    rows = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], np.float32)
    assert top_k(rows, 1).tolist() == [[1], [0]]  # per row, not over the whole batch


def test_the_watchdog_sees_only_calls_over_the_bound() -> None:
    ledger = Ledger("b")
    first = ledger.begin(4)
    second = ledger.begin(2)
    (_, started), (_, later) = sorted(ledger._calls.items())
    assert ledger.overdue(1.0, now=started[0] + 1.0) is None  # exactly at the bound: not over
    number, samples, seconds = ledger.overdue(1.0, now=started[0] + 1.5) or (0, 0, 0.0)
    assert (number, samples) == (first, 4) and seconds == pytest.approx(1.5)
    ledger.end(first)
    assert ledger.overdue(1.0, now=later[0] + 1.5)[:2] == (second, 2)  # type: ignore[index]
    ledger.end(second)
    ledger.end(second)  # twice is harmless
    assert ledger.overdue(0.0, now=later[0] + 100) is None
