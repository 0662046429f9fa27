"""The harness gathers batches straight into a backend's staging buffer, one per thread.

A CPU backend (the tiny model in numpy) hands each worker a buffer of its own, the way
the pytorch backend hands out the pinned input of a CUDA runner bound to the thread.
What a bug would break: accuracy (a batch gathered into one buffer but read from
another), a thread reading another thread's buffer, a buffer never handed back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, tiny_logits

from ckvision.backends.base import Backend, BackendOptions, Capabilities
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.harness import run_benchmark
from ckvision.models.contract import ModelContract

pytestmark = pytest.mark.timeout(60)


class StagingBackend(Backend):
    name = "staging-test"

    def __init__(self, contract: ModelContract) -> None:
        super().__init__(Path("tiny.numpy"), contract, BackendOptions())
        self.local = threading.local()
        self.lock = threading.Lock()
        self.open = 0
        self.staged_batches = 0
        self.foreign = 0
        self.handed: list[np.ndarray] = []

    def load(self) -> None:
        pass

    def close(self) -> None:
        pass

    def version(self) -> dict[str, str]:
        return {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(device="cpu", max_batch=0)

    @contextlib.contextmanager
    def staging(self, batch_size: int) -> Iterator[np.ndarray | None]:
        buffer = np.full(self.contract.input_shape(batch_size), np.nan, np.float32)
        self.local.buffer = buffer
        with self.lock:
            self.open += 1
            self.handed.append(buffer)
        try:
            yield buffer
        finally:
            self.local.buffer = None
            with self.lock:
                self.open -= 1

    def predict(self, batch: np.ndarray) -> np.ndarray:
        mine = getattr(self.local, "buffer", None)
        if mine is not None and np.shares_memory(batch, mine):
            with self.lock:
                self.staged_batches += 1
        elif any(np.shares_memory(batch, other) for other in self.handed):
            with self.lock:
                self.foreign += 1  # another thread's buffer
        return tiny_logits(np.asarray(batch))


@pytest.mark.parametrize("scenario", [Scenario.OFFLINE, Scenario.SERVER])
def test_batches_are_gathered_into_the_threads_staging_buffer(
    scenario: Scenario,
    tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    backend = StagingBackend(tiny_contract)
    config = quick_config(scenario=scenario, mode=Mode.ACCURACY, batch_size=8, workers=2)
    result = run_benchmark(
        config, backend, tiny_dataset, tmp_path, model_name="tiny", log=lambda _line: None
    )
    assert result.accuracy is not None
    assert (result.accuracy["good"], result.accuracy["total"]) == (30, SAMPLES)
    assert backend.staged_batches > 0
    assert backend.foreign == 0
    assert backend.open == 0  # every worker handed its buffer back


def test_default_backend_has_no_staging(tiny_contract: ModelContract) -> None:
    class Plain(StagingBackend):
        staging = Backend.staging

    with Plain(tiny_contract).staging(8) as buffer:
        assert buffer is None
