"""Every scenario's SUT through real LoadGen, in both modes, on the tiny ONNX model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SAMPLES, TinyTruth

from ckvision.backends import BackendOptions, create_backend
from ckvision.backends.base import Backend, Capabilities
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.harness import run_benchmark
from ckvision.harness.sut import top_k
from ckvision.models.contract import ModelContract

SETTINGS: dict[Scenario, dict[str, Any]] = {
    Scenario.SINGLE_STREAM: {},
    Scenario.MULTI_STREAM: {"multistreamness": 4, "batch_size": 3},
    Scenario.OFFLINE: {"batch_size": 8, "workers": 2},
    Scenario.SERVER: {"batch_size": 4, "server_batch_timeout_us": 500},
}


def _backend(model: Path, contract: ModelContract) -> Backend:
    return create_backend("onnxruntime", model, contract, BackendOptions(threads=1))


@pytest.mark.parametrize("scenario", list(Scenario))
def test_accuracy_mode_is_exact(
    scenario: Scenario, tiny_onnx_model: Path, tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset, tiny_truth: TinyTruth,
    quick_config: Callable[..., RunConfig], tmp_path: Path,
) -> None:
    config = quick_config(scenario=scenario, mode=Mode.ACCURACY, **SETTINGS[scenario])
    result = run_benchmark(config, _backend(tiny_onnx_model, tiny_contract), tiny_dataset,
                           tmp_path, model_name="tiny", log=lambda _line: None)
    assert result.accuracy is not None
    assert result.accuracy["top1"] == pytest.approx(75.0)
    assert (result.accuracy["good"], result.accuracy["total"]) == (30, SAMPLES)
    assert result.accuracy["top5"] == pytest.approx(tiny_truth.top5)
    assert result.failures == 0
    assert result.summary["mode"] == "AccuracyOnly"
    assert result.summary["scenario"] == scenario.value


@pytest.mark.parametrize("scenario", list(Scenario))
def test_performance_mode(
    scenario: Scenario, tiny_onnx_model: Path, tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset, quick_config: Callable[..., RunConfig], tmp_path: Path,
) -> None:
    config = quick_config(scenario=scenario, mode=Mode.PERFORMANCE, **SETTINGS[scenario])
    result = run_benchmark(config, _backend(tiny_onnx_model, tiny_contract), tiny_dataset,
                           tmp_path, model_name="tiny", log=lambda _line: None)
    summary = result.summary
    assert summary["scenario"] == scenario.value and summary["mode"] == "PerformanceOnly"
    assert summary["result_validity"] in ("VALID", "INVALID")
    assert summary["latency_p90_ns"] > 0
    expected_queries = 1 if scenario is Scenario.OFFLINE else 32
    assert summary["result_query_count"] == expected_queries
    assert result.accuracy is None and result.duration_s > 0
    assert result.user_conf.read_text().count("tiny.") >= 4


class _Recorder(Backend):
    """Returns fixed logits; records the batch sizes it was given."""

    def __init__(self, contract: ModelContract) -> None:
        super().__init__(Path("none"), contract, BackendOptions())
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def load(self) -> None: ...

    def close(self) -> None: ...

    def version(self) -> dict[str, str]:
        return {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(device="none", max_batch=0)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.sizes.append(len(batch))
        return np.tile(np.arange(self.contract.num_classes, dtype=np.float32), (len(batch), 1))


def test_server_batches_dynamically(
    tiny_contract: ModelContract, tiny_dataset: PreprocessedDataset,
    quick_config: Callable[..., RunConfig], tmp_path: Path,
) -> None:
    backend = _Recorder(tiny_contract)
    config = quick_config(scenario=Scenario.SERVER, mode=Mode.PERFORMANCE, batch_size=8,
                          server_batch_timeout_us=20_000, target_qps=4000.0, count_override=400)
    run_benchmark(config, backend, tiny_dataset, tmp_path, model_name="tiny", log=print)
    sizes = backend.sizes[1:]  # after warm-up
    assert max(sizes) <= 8
    assert sum(sizes) >= 400 and max(sizes) > 1  # at 4000 QPS a 20 ms wait fills batches


def test_offline_uses_full_batches(
    tiny_contract: ModelContract, tiny_dataset: PreprocessedDataset,
    quick_config: Callable[..., RunConfig], tmp_path: Path,
) -> None:
    backend = _Recorder(tiny_contract)
    config = quick_config(scenario=Scenario.OFFLINE, mode=Mode.PERFORMANCE, batch_size=16,
                          count_override=160)
    run_benchmark(config, backend, tiny_dataset, tmp_path, model_name="tiny")
    assert backend.sizes[-10:] == [16] * 10 and sum(backend.sizes[3:]) == 160


def test_top_k_is_ordered_and_offset() -> None:
    logits = np.array([[0.1, 0.9, 0.3, 0.7, 0.0, 0.5, 0.2], [1, 1, 1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(top_k(logits), [[1, 3, 5, 2, 6], [0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(top_k(logits, 2, offset=1), [[0, 2], [-1, 0]])
    assert top_k(logits[:, :3]).shape == (2, 3)
    assert top_k(logits, 1).dtype == np.int32
