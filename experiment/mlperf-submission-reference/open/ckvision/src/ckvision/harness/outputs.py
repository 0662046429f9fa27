"""The backend output contract, checked before anything is scored.

A backend returns, for a batch of ``n`` samples, the model output the contract names:
scores of shape ``(n, num_classes + label_offset)`` (finite), or for an ArgMax output
(``output_kind == "argmax"``) the winning output index per sample, shape ``(n,)`` or
``(n, 1)``, integers in range. Anything else is an :class:`OutputContractError` (one
line, naming the backend, the output and what was wrong), and nothing out of bounds is
ever read. An ImageNet class is the output index minus the contract's label offset (a
1001-class model's index 0 is "background").

The harness checks in two steps around the response, so LoadGen's clock stops as soon as
the top-1 is known: :func:`top1` (what decides which values are read) before it,
:func:`check_values` (finite scores) right after it, on every batch; a failure of either
fails the run. :func:`decode` does both and the top-k at once.
"""

from __future__ import annotations

import numpy as np

from ckvision.errors import BackendError
from ckvision.models.contract import ModelContract

__all__ = ["OutputContractError", "check_values", "decode", "top1", "top_k", "TOP_K"]

TOP_K = 5


class OutputContractError(BackendError):
    """A backend's output does not match the model contract."""


def decode(
    out: object, n: int, contract: ModelContract, backend: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(top-1 classes as float32 (n,), top-k classes as int32 (n, k))`` of a checked output
    (:func:`top1`, :func:`check_values` and :func:`top_k` in one call)."""
    classes = top1(out, n, contract, backend)
    assert isinstance(out, np.ndarray)  # top1 checked it
    check_values(out, contract, backend)
    if contract.output_kind == "argmax":
        return classes, classes.astype(np.int32)[:, None]
    return classes, top_k(out, TOP_K, contract.label_offset)


def top1(out: object, n: int, contract: ModelContract, backend: str) -> np.ndarray:
    """The top-1 ImageNet classes of ``out`` as float32 ``(n,)``, MLPerf's response layout.

    Checks everything that decides which values are read (type, shape, dtype, and the range
    of ArgMax ids) and reads nothing out of bounds; whether scores are finite is
    :func:`check_values`, which the harness runs on every batch right after LoadGen has its
    responses (the failed check fails the run all the same, and the response is not held
    up by it).
    """
    if not isinstance(out, np.ndarray):
        raise OutputContractError(
            f"{_where(contract, backend)}: returned {type(out).__name__}, not a numpy array"
        )
    width = contract.num_classes + contract.label_offset
    if contract.output_kind == "argmax":
        return _decode_argmax(out, n, width, contract, backend)
    if out.ndim != 2 or out.shape[0] != n:
        raise OutputContractError(
            f"{_where(contract, backend)}: returned shape {out.shape} for a batch of {n}; "
            f"expected ({n}, {width})"
        )
    if out.shape[1] != width:
        raise OutputContractError(
            f"{_where(contract, backend)}: returned {out.shape[1]} classes; the contract says "
            f"{width} ({contract.num_classes} + label offset {contract.label_offset})"
        )
    if out.dtype.kind != "f":
        raise OutputContractError(
            f"{_where(contract, backend)}: scores have dtype {out.dtype}; expected floats"
        )
    best: np.ndarray = out.argmax(axis=1).astype(np.float32)
    if contract.label_offset:
        best -= contract.label_offset
    return best


def check_values(out: np.ndarray, contract: ModelContract, backend: str) -> None:
    """Scores must be finite (ArgMax ids were range-checked by :func:`top1`)."""
    if contract.output_kind == "argmax":
        return
    # min and max are NaN if any value is, and infinite if any is: two cheap reductions
    if not (np.isfinite(out.min()) and np.isfinite(out.max())):
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise OutputContractError(
            f"{_where(contract, backend)}: row {bad} of the batch holds NaN or infinity"
        )


def _decode_argmax(
    out: np.ndarray, n: int, width: int, contract: ModelContract, backend: str
) -> np.ndarray:
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1 or len(out) != n:
        raise OutputContractError(
            f"{_where(contract, backend)}: ArgMax output has shape {out.shape} for a batch of "
            f"{n}; expected ({n},)"
        )
    if out.dtype.kind not in "iu":
        raise OutputContractError(
            f"{_where(contract, backend)}: ArgMax output has dtype {out.dtype}; expected "
            "integer class ids"
        )
    low, high = int(out.min()), int(out.max())
    if low < 0 or high >= width:
        raise OutputContractError(
            f"{_where(contract, backend)}: ArgMax output holds {low}..{high}, outside "
            f"0..{width - 1}"
        )
    return (out.astype(np.int32) - contract.label_offset).astype(np.float32)


def _where(contract: ModelContract, backend: str) -> str:
    return f"backend {backend}, output {contract.output_name!r}"


def top_k(scores: np.ndarray, k: int = TOP_K, offset: int = 0) -> np.ndarray:
    """Indices of the ``k`` largest scores per row, best first, minus ``offset``, as int32.

    ``k`` rounds of a row-wise argmax: a few microseconds per sample whatever the values
    (``np.argpartition`` slows down a hundredfold on rows of equal values).
    """
    batch, classes = scores.shape
    k = min(k, classes)
    top = np.empty((batch, k), dtype=np.int32)
    if k == 1:
        top[:, 0] = scores.argmax(axis=1)
    else:
        work = np.array(scores, dtype=np.float32)
        rows = np.arange(batch)
        for j in range(k):
            best = work.argmax(axis=1)
            top[:, j] = best
            work[rows, best] = -np.inf
    if offset:
        top -= offset
    return top
