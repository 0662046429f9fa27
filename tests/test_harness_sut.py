"""Every scenario's SUT through real LoadGen, in both modes, on the tiny ONNX model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SAMPLES, TinyRun, TinyTruth
from test_accuracy import reference_accuracy

from ckvision.accuracy import format_accuracy
from ckvision.backends import BackendOptions, create_backend
from ckvision.backends.base import Backend, Capabilities
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.harness.sut import BatchQueue, top_k
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
    scenario: Scenario,
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    tiny_truth: TinyTruth,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    config = quick_config(scenario=scenario, mode=Mode.ACCURACY, **SETTINGS[scenario])
    result = tiny_run(
        config, _backend(tiny_onnx_model, tiny_contract), tmp_path, log=lambda _line: None
    )
    assert result.accuracy is not None
    assert result.accuracy["top1"] == pytest.approx(75.0)
    assert (result.accuracy["good"], result.accuracy["total"]) == (30, SAMPLES)
    assert result.accuracy["top5"] == pytest.approx(tiny_truth.top5)
    # MLPerf's tools/accuracy-imagenet.py, default options, reads the same from LoadGen's log
    entries = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
    ours = format_accuracy(result.accuracy).splitlines()[0]
    assert (
        reference_accuracy(entries, tiny_truth.labels)
        == ours
        == (f"accuracy=75.000%, good=30, total={SAMPLES}")
    )
    assert result.failures == 0
    assert result.summary["mode"] == "AccuracyOnly"
    assert result.summary["scenario"] == scenario.value


@pytest.mark.parametrize("scenario", list(Scenario))
def test_performance_mode(
    scenario: Scenario,
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    config = quick_config(scenario=scenario, mode=Mode.PERFORMANCE, **SETTINGS[scenario])
    result = tiny_run(
        config, _backend(tiny_onnx_model, tiny_contract), tmp_path, log=lambda _line: None
    )
    summary = result.summary
    assert summary["scenario"] == scenario.value and summary["mode"] == "PerformanceOnly"
    assert result.valid is (summary["result_validity"] == "VALID")
    expected_queries = 1 if scenario is Scenario.OFFLINE else 32
    assert summary["result_query_count"] == expected_queries
    per_query = 4 if scenario is Scenario.MULTI_STREAM else 1
    samples = 110 if scenario is Scenario.OFFLINE else 32 * per_query  # 2000 QPS * 0.05 s * 1.1
    assert result.completed == samples and result.failures == 0
    assert result.accuracy is None and result.duration_s > 0
    if scenario is not Scenario.OFFLINE:
        # LoadGen's own metric: per query for MultiStream, per sample elsewhere
        assert result.latency_ns["p90"] == summary["latency_p90_ns"]
        if scenario is Scenario.MULTI_STREAM:  # a query of 4 takes longer than its samples
            assert summary["latency_p90_ns"] == summary["query_latency_p90_ns"]
            assert summary["sample_latency_p50_ns"] <= summary["latency_p50_ns"]
        assert 0 < result.latency_ns["p50"] <= result.latency_ns["p90"]
        assert result.latency_ns["p90"] <= result.latency_ns["p99"]
    lines = result.user_conf.read_text().splitlines()[1:]
    assert "tiny." + scenario.value + ".min_query_count = 32" in lines
    assert "tiny." + scenario.value + ".min_duration = 50" in lines


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
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    backend = _Recorder(tiny_contract)
    config = quick_config(
        scenario=Scenario.SERVER,
        mode=Mode.PERFORMANCE,
        batch_size=8,
        server_batch_timeout_us=20_000,
        target_qps=4000.0,
        count_override=400,
    )
    tiny_run(config, backend, tmp_path, log=print)
    sizes = backend.sizes[3:]  # after warm-up
    assert max(sizes) <= 8
    assert sum(sizes) == 400 and max(sizes) > 1  # at 4000 QPS a 20 ms wait fills batches


def test_offline_uses_full_batches(
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    backend = _Recorder(tiny_contract)
    config = quick_config(
        scenario=Scenario.OFFLINE, mode=Mode.PERFORMANCE, batch_size=16, count_override=160
    )
    tiny_run(config, backend, tmp_path)
    assert backend.sizes[-10:] == [16] * 10 and sum(backend.sizes[3:]) == 160


def test_top_k_is_ordered_and_offset() -> None:
    logits = np.array([[0.1, 0.9, 0.3, 0.7, 0.0, 0.5, 0.2], [1, 1, 1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(top_k(logits), [[1, 3, 5, 2, 6], [0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(top_k(logits, 2, offset=1), [[0, 2], [-1, 0]])
    assert top_k(logits[:, :3]).shape == (2, 3)
    assert top_k(logits, 1).dtype == np.int32


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batch_closes_when_its_oldest_sample_has_waited_the_timeout() -> None:
    """Measured from the oldest sample's arrival, not from when a worker came to take."""
    clock = _Clock()
    queue = BatchQueue(clock)
    queue.put(["a"])
    clock.now += 0.004
    queue.put(["b"])
    clock.now += 0.0005  # the oldest has waited 4.5 ms
    started = time.monotonic()
    assert queue.take(8, wait_s=0.004) == ["a", "b"]  # due already: no wait at all
    assert time.monotonic() - started < 0.5


def test_full_batch_flush_and_close() -> None:
    clock = _Clock()
    queue = BatchQueue(clock)
    queue.put(list(range(10)))
    assert queue.take(4, wait_s=3600) == [0, 1, 2, 3]  # full: at once
    assert queue.take(4, wait_s=3600) == [4, 5, 6, 7]
    queue.flush()  # LoadGen issued its last query: nothing waits to fill any more
    assert queue.take(4, wait_s=3600) == [8, 9]
    queue.close()
    assert queue.take(4, wait_s=3600) is None
    fresh = BatchQueue(clock)  # flushing state belongs to one test
    fresh.put(["x"])
    taker: list[object] = []
    thread = threading.Thread(target=lambda: taker.append(fresh.take(2, wait_s=3600)))
    thread.start()
    thread.join(0.2)
    assert thread.is_alive() and taker == []  # waits: not flushing, not due, not full
    fresh.put(["y"])
    thread.join(5)
    assert taker == [["x", "y"]]


def test_partial_batch_waits_until_due() -> None:
    queue = BatchQueue()
    queue.put(["a"])
    started = time.monotonic()
    assert queue.take(4, wait_s=0.05) == ["a"]
    assert time.monotonic() - started >= 0.04


@pytest.mark.parametrize(
    ("scenario", "side", "row_order"),
    [(Scenario.OFFLINE, 48, True), (Scenario.SERVER, 48, False), (Scenario.OFFLINE, 2, False)],
)
def test_offline_queues_its_query_in_row_order(
    scenario: Scenario, side: int, row_order: bool, tiny_contract: ModelContract
) -> None:
    """Offline's one query of samples of ROW_ORDER_MIN_BYTES or more (27 KB here) is
    queued in runs of consecutive RAM rows (its batches are then views, not gathered
    copies), each sample with its own response id; other scenarios, and samples too small
    for a copy to cost more than visiting the query out of order (48 bytes), keep
    LoadGen's order."""
    from types import SimpleNamespace

    from ckvision.harness.ledger import Ledger
    from ckvision.harness.qsl import SampleLibrary
    from ckvision.harness.sut import make_sut

    images = np.zeros((8, 3, side, side), np.float32)
    qsl = SampleLibrary(images, np.arange(8), RunConfig())
    qsl.load(range(1, 8, 2))  # indices 1, 3, 5, 7 in RAM rows 0-3
    config = RunConfig(scenario=scenario, batch_size=4, workers=1)
    sut = make_sut(config, _Recorder(tiny_contract), qsl, Ledger("b"))
    indices = [7, 3, 3, 1, 5, 7, 1, 5]
    sut.issue([SimpleNamespace(id=100 + k, index=i) for k, i in enumerate(indices)])
    queued = [(s.id, s.index) for s in sut.queue.take(8, 0.0) or []]
    assert sut.row_order is row_order
    if row_order:
        assert queued == [(103, 1), (101, 3), (104, 5), (100, 7)] + [
            (106, 1), (102, 3), (107, 5), (105, 7)
        ]  # fmt: skip
    else:
        assert queued == [(100 + k, i) for k, i in enumerate(indices)]
