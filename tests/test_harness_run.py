"""run_benchmark: failures, validation, compliance, progress and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, TinyRun, build_tiny_onnx

import ckvision.harness.run as run_module
from ckvision.backends import BackendOptions, create_backend
from ckvision.backends.null import NullBackend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import ConfigError, ModelError, RunError
from ckvision.harness import run_benchmark
from ckvision.harness.logs import parse_detail
from ckvision.models.contract import ModelContract


class _FailsOnSecondBatch(NullBackend):
    """Null backend whose second ``predict`` after warm-up raises."""

    calls = 0

    def warmup(self, batch: np.ndarray, iterations: int = 3) -> None:
        pass

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("device lost")
        return super().predict(batch)


@pytest.mark.parametrize("scenario", list(Scenario))
def test_failed_batch_completes_every_sample_then_raises(
    scenario: Scenario,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    backend = _FailsOnSecondBatch(Path("none"), tiny_contract, BackendOptions())
    config = quick_config(scenario=scenario, mode=Mode.ACCURACY, batch_size=4, multistreamness=4)
    lines: list[str] = []
    with pytest.raises(RunError, match=r"^(\d+) of 40 samples failed: device lost$") as info:
        tiny_run(config, backend, tmp_path, log=lines.append)
    failed = int(str(info.value).split()[0])
    assert not (tmp_path / "mlperf_log_accuracy.json").exists()  # set aside: not a result
    assert not (tmp_path / "mlperf_log_summary.txt").exists()
    entries = json.loads((tmp_path / "mlperf_log_accuracy.json.failed-run").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(SAMPLES))  # each exactly once
    assert sum(1 for e in entries if e["data"] == "") == failed  # the failed call, only it
    # one backend call failed: its samples, and no others (Server batches may be partial)
    if scenario is Scenario.SERVER:
        assert 1 <= failed <= 4
    else:
        assert failed == (1 if scenario is Scenario.SINGLE_STREAM else 4)
    detail = (tmp_path / "mlperf_log_detail.txt.failed-run").read_text()
    assert parse_detail(detail)["errors"] == 0  # LoadGen itself ended cleanly


def test_batch_above_model_maximum_is_a_config_error(
    tmp_path: Path,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
) -> None:
    model = build_tiny_onnx(tmp_path / "b4.onnx", batch=4)
    backend = create_backend("onnxruntime", model, tiny_contract)
    config = RunConfig(scenario=Scenario.OFFLINE, batch_size=8)
    with pytest.raises(ConfigError, match="CK_BATCH_SIZE=8 is above the model's maximum batch 4"):
        tiny_run(config, backend, tmp_path / "out")


def test_dataset_for_another_contract_is_a_model_error(
    tmp_path: Path,
    tiny_dataset: PreprocessedDataset,
) -> None:
    other = ModelContract(name="big", image_size=32, resize_size=32, num_classes=10)
    backend = create_backend("null", Path("none"), other)
    with pytest.raises(ModelError, match="does not match dataset tiny"):
        run_benchmark(RunConfig(), backend, tiny_dataset, tmp_path, model_name="big")


def test_compliance_test04_is_read_by_loadgen(
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    config = quick_config(
        scenario=Scenario.SINGLE_STREAM, mode=Mode.PERFORMANCE, compliance_test="TEST04"
    )
    backend = create_backend("null", Path("none"), tiny_contract)
    result = tiny_run(config, backend, tmp_path)
    detail = (tmp_path / "mlperf_log_detail.txt").read_text()
    assert "Found Audit Config file" in detail
    assert '"key": "effective_performance_issue_same", "value": true' in detail
    assert (tmp_path / "audit.config").is_file() and result.summary["result_query_count"] == 32


def test_progress_lines_when_verbose(
    monkeypatch: pytest.MonkeyPatch,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(run_module, "PROGRESS_EVERY_S", 0.02)
    config = quick_config(
        scenario=Scenario.SERVER,
        mode=Mode.PERFORMANCE,
        verbose=1,
        target_qps=500.0,
        count_override=100,
        min_duration_s=0.1,
    )
    lines: list[str] = []
    tiny_run(
        config, create_backend("null", Path("none"), tiny_contract), tmp_path, log=lines.append
    )
    assert any(line.startswith("progress: ") for line in lines)


class _InterruptsOnThirdCall(NullBackend):
    calls = 0

    def warmup(self, batch: np.ndarray, iterations: int = 3) -> None:
        pass

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 3:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.001)  # a real backend leaves the GIL to the watcher thread
        return super().predict(batch)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario", list(Scenario))
def test_ctrl_c_raises_after_loadgen_is_done(
    scenario: Scenario,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    backend = _InterruptsOnThirdCall(Path("none"), tiny_contract, BackendOptions())
    config = quick_config(
        scenario=scenario, mode=Mode.PERFORMANCE, count_override=2000, batch_size=2
    )
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        tiny_run(config, backend, tmp_path / "a", log=lines.append)
    assert any(line.startswith("interrupted") for line in lines)
    assert backend.calls < 50  # the rest was completed without inference
    # while the interrupted run unwinds, a second Ctrl-C exits with the line (no traceback)
    from ckvision.harness.run import _exit_at_once

    assert signal.getsignal(signal.SIGINT) is _exit_at_once
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # LoadGen is left in a usable state: the next run works.
    again = tiny_run(
        quick_config(scenario=scenario, mode=Mode.PERFORMANCE),
        create_backend("null", Path("none"), tiny_contract),
        tmp_path / "b",
    )
    # Offline: one query of qps * min duration * 1.1 = 110 samples; else 32 queries of one
    # (MultiStream: of 8)
    assert again.failures == 0
    assert again.completed == {Scenario.OFFLINE: 110, Scenario.MULTI_STREAM: 256}.get(scenario, 32)


def test_a_conf_sample_count_above_the_qsl_is_clamped_with_a_note(
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    conf = tmp_path / "mlperf.conf"
    conf.write_text("*.SingleStream.performance_sample_count_override = 1024\n")
    lines: list[str] = []
    result = tiny_run(
        quick_config(mode=Mode.PERFORMANCE, conf_file=conf),
        create_backend("null", Path("none"), tiny_contract),
        tmp_path / "out",
        log=lines.append,
    )
    assert (
        lines
        == [
            "note: performance sample count 1024 from the LoadGen conf is above the "
            f"{SAMPLES} samples in the run; using {SAMPLES}",
            "note: CK_LOADGEN_TARGET_QPS=2000.0 does not apply to SingleStream; ignored",
        ][::-1]
    )
    assert result.summary["performance_sample_count"] == SAMPLES
