"""The harness keeps LoadGen's samples in the backend's own host memory, and a backend that
takes rows to its device itself gets rows, never a batch gathered on the host.

A CPU backend (the tiny model in numpy) hands out its memory and gathers rows itself, the
way the pytorch backend on CUDA hands out page-locked memory and copies rows straight to
the GPU. What a bug would break: accuracy (a row read from the wrong place), the copy the
design exists to avoid (a host gather before every batch), the RAM held in plain memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SAMPLES, TinyRun, tiny_logits

from ckvision.backends.base import Backend, BackendOptions, Capabilities
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.models.contract import ModelContract

pytestmark = pytest.mark.timeout(60)


class RowsBackend(Backend):
    name = "rows-test"

    def __init__(self, contract: ModelContract, gathers: bool = True) -> None:
        super().__init__(Path("tiny.numpy"), contract, BackendOptions())
        self.gathers = gathers
        self.lock = threading.Lock()
        self.handed: list[np.ndarray] = []
        self.row_batches = 0
        self.host_batches = 0  # predict() of more than one sample outside our memory
        self.batches = 0  # predict() of more than one sample

    def load(self) -> None:
        pass

    def warmup(self, batch: np.ndarray, iterations: int = 3) -> None:
        pass  # counted from the test on

    def close(self) -> None:
        pass

    def version(self) -> dict[str, str]:
        return {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(device="cpu", max_batch=0)

    def host_memory(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        array = np.full(shape, np.nan, dtype)  # anything not loaded into it shows up as NaN
        with self.lock:
            self.handed.append(array)
        return array

    @property
    def gathers_rows(self) -> bool:
        return self.gathers

    def predict_rows(self, source: np.ndarray, rows: np.ndarray) -> np.ndarray:
        assert any(source is mine for mine in self.handed), "rows of memory we never gave"
        with self.lock:
            self.row_batches += 1
        return tiny_logits(source[rows])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) > 1:
            with self.lock:
                self.batches += 1
                self.host_batches += not any(np.shares_memory(batch, m) for m in self.handed)
        return tiny_logits(np.asarray(batch))


@pytest.mark.parametrize("scenario", [Scenario.OFFLINE, Scenario.SERVER, Scenario.SINGLE_STREAM])
def test_rows_go_to_the_backend_from_its_own_memory(
    scenario: Scenario,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    backend = RowsBackend(tiny_contract)
    config = quick_config(scenario=scenario, mode=Mode.ACCURACY, batch_size=8, workers=2)
    result = tiny_run(config, backend, tmp_path, log=lambda _line: None)
    assert result.accuracy is not None
    assert (result.accuracy["good"], result.accuracy["total"]) == (30, SAMPLES)
    assert backend.handed, "LoadGen's samples were not loaded into the backend's memory"
    assert backend.host_batches == 0  # no batch was gathered on the host
    if scenario is Scenario.SINGLE_STREAM:
        assert backend.row_batches == 0  # one sample: a view of that memory, no rows call
    else:
        assert backend.row_batches > 0


@pytest.mark.parametrize("row_order", [True, False])
def test_a_backend_that_does_not_gather_gets_batches(
    row_order: bool,
    monkeypatch: pytest.MonkeyPatch,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    import ckvision.harness.sut as sut

    # the tiny samples (3 KB) stay in LoadGen's order; as if they were images, row order
    monkeypatch.setattr(sut, "ROW_ORDER_MIN_BYTES", 0 if row_order else sut.ROW_ORDER_MIN_BYTES)
    backend = RowsBackend(tiny_contract, gathers=False)
    config = quick_config(scenario=Scenario.OFFLINE, mode=Mode.ACCURACY, batch_size=8)
    result = tiny_run(config, backend, tmp_path, log=lambda _line: None)
    assert result.accuracy is not None and result.accuracy["good"] == 30
    assert backend.row_batches == 0 and backend.batches > 0  # batches, never rows
    # Offline's one query in row order: its batches are views of the backend's memory, as
    # a loop over a dataset reads them; in LoadGen's order, copies gathered on the host
    assert (backend.host_batches == 0) is row_order


def test_default_backend_memory_and_rows(tiny_contract: ModelContract) -> None:
    class Plain(RowsBackend):
        host_memory = Backend.host_memory
        gathers_rows = Backend.gathers_rows
        predict_rows = Backend.predict_rows

    plain = Plain(tiny_contract)
    memory = plain.host_memory((4, 3, 2, 2), np.float32)
    assert memory.shape == (4, 3, 2, 2) and memory.dtype == np.float32
    assert plain.gathers_rows is False
    source = np.random.default_rng(0).standard_normal((5, *tiny_contract.input_shape(1)[1:]))
    source = source.astype(np.float32)
    np.testing.assert_array_equal(
        plain.predict_rows(source, np.array([3, 0, 3])), tiny_logits(source[[3, 0, 3]])
    )
