"""Whatever the backend does, every issued sample is completed exactly once and the run
fails with one line: raise, wrong shape, fewer rows, wrong class count, NaN, hang, a
dying worker thread. Through real LoadGen, in accuracy mode (its log lists each sample)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, TinyRun

from ckvision.backends import BackendOptions
from ckvision.backends.null import NullBackend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import RunError
from ckvision.harness.logs import parse_detail
from ckvision.models.contract import ModelContract


class _Faulty(NullBackend):
    """The null backend, whose second call after warm-up misbehaves as ``fault`` says."""

    fault = "none"
    release = threading.Event()

    def warmup(self, batch: np.ndarray, iterations: int = 3) -> None:
        pass

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls = getattr(self, "calls", 0) + 1
        out = np.asarray(super().predict(batch))
        if self.calls != 2:
            return out
        if self.fault == "fewer rows":
            return out[:-1]
        if self.fault == "more classes":
            return np.zeros((len(batch), out.shape[1] + 1), np.float32)
        if self.fault == "nan":
            bad = out.copy()
            bad[-1, 3] = np.nan
            return bad
        if self.fault == "values raise":  # after the response: the run must still fail
            return out.view(_MinRaises)
        if self.fault == "not an array":
            return [0] * len(batch)  # type: ignore[return-value]
        if self.fault == "hang":
            self.release.wait(30)
            return out
        if self.fault == "thread dies":
            raise SystemExit("worker killed")
        raise AssertionError(self.fault)


class _MinRaises(np.ndarray):
    def min(self, *args: object, **kwargs: object) -> np.ndarray:  # type: ignore[override]
        raise RuntimeError("boom")


FAULTS = [  # {n}: the batch size, {less}: one row fewer, {who}: the thread that infers
    (
        "fewer rows",
        r"^backend null, output 'logits': returned shape \({less}, 10\) for a batch "
        r"of {n}; expected \({n}, 10\)$",
    ),
    (
        "more classes",
        r"^backend null, output 'logits': returned 11 classes; the contract says 10 "
        r"\(10 \+ label offset 0\)$",
    ),
    ("nan", r"^backend null, output 'logits': row {less} of the batch holds NaN or infinity$"),
    ("values raise", r"^backend null: checking a batch's output failed: RuntimeError: boom$"),
    ("not an array", r"^backend null, output 'logits': returned list, not a numpy array$"),
    ("thread dies", r"^backend null: {who} died: SystemExit: worker killed$"),
    (
        "hang",
        r"^backend null: call 2 \({n} samples\) has run 0\.\d s, over the 0\.3 s bound "
        r"\(CK_BATCH_TIMEOUT_S / --batch-timeout-s\); the run failed$",
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("fault", "message"), FAULTS, ids=[f for f, _m in FAULTS])
@pytest.mark.parametrize(
    "scenario", [Scenario.OFFLINE, Scenario.MULTI_STREAM, Scenario.SINGLE_STREAM]
)
def test_a_misbehaving_backend_fails_the_run_with_one_line(
    scenario: Scenario,
    fault: str,
    message: str,
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    if scenario is Scenario.SINGLE_STREAM and fault == "hang":
        pytest.skip("a hang on LoadGen's own thread ends the process: see the next test")
    n = 1 if scenario is Scenario.SINGLE_STREAM else 4
    who = (
        "LoadGen's issuing thread"
        if scenario is Scenario.SINGLE_STREAM
        else "worker ckvision-worker-0"
    )
    message = message.format(n=n, less=n - 1, who=who)
    backend = _Faulty(Path("none"), tiny_contract, BackendOptions())
    backend.fault = fault
    backend.release = threading.Event()
    config = quick_config(
        scenario=scenario, mode=Mode.ACCURACY, batch_size=4, multistreamness=4, batch_timeout_s=0.3
    )
    started = time.monotonic()
    try:
        with pytest.raises(RunError, match=message) as info:
            tiny_run(config, backend, tmp_path, log=lambda _line: None)
    finally:
        backend.release.set()
    assert "\n" not in str(info.value)
    assert time.monotonic() - started < 20  # the watchdog acted, nothing waited 30 s
    # LoadGen got every response exactly once, and finished cleanly
    assert not (tmp_path / "mlperf_log_accuracy.json").exists()  # set aside: not a result
    assert not (tmp_path / "mlperf_log_summary.txt").exists()
    entries = json.loads((tmp_path / "mlperf_log_accuracy.json.failed-run").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(SAMPLES))
    detail = (tmp_path / "mlperf_log_detail.txt.failed-run").read_text()
    assert parse_detail(detail)["errors"] == 0  # LoadGen itself ended cleanly


def test_no_log_of_a_failed_run_is_scored_as_a_result(
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    """A failed run raises before any accuracy is computed or top-5 record is written."""
    backend = _Faulty(Path("none"), tiny_contract, BackendOptions())
    backend.fault = "nan"
    with pytest.raises(RunError):
        tiny_run(
            quick_config(scenario=Scenario.OFFLINE, batch_size=4),
            backend,
            tmp_path,
            log=lambda _line: None,
        )
    assert not (tmp_path / "ckvision_top5.json").exists()


_NEVER_HANGS = """
import sys, threading, numpy as np
from pathlib import Path
import ckvision.harness.run as run
from ckvision.backends import BackendOptions
from ckvision.backends.null import NullBackend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.models.contract import ModelContract

class Hangs(NullBackend):
    calls = 0
    def warmup(self, batch, iterations=3):
        pass
    def predict(self, batch):
        self.calls += 1
        if self.calls == 5:
            threading.Event().wait()  # forever
        return super().predict(batch)

run.ABORT_GRACE_S = 1.0
dataset = PreprocessedDataset.open(Path(sys.argv[1]))
contract = ModelContract(name="tiny", image_size=16, resize_size=16, num_classes=10)
config = RunConfig(scenario=Scenario(sys.argv[3]), mode=Mode.PERFORMANCE, target_qps=200.0,
                   min_duration_s=600.0, batch_timeout_s=0.5)
run.run_benchmark(config, Hangs(Path("none"), contract, BackendOptions()), dataset,
                  Path(sys.argv[2]), model_name="tiny", log=lambda _line: None)
print("returned")
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario", [Scenario.SERVER, Scenario.SINGLE_STREAM])
def test_a_run_that_cannot_stop_exits_with_one_line(
    scenario: Scenario, tiny_dataset: PreprocessedDataset, tmp_path: Path
) -> None:
    """A Server schedule of 10 minutes keeps LoadGen issuing after the watchdog's abort; a
    SingleStream backend hung on LoadGen's own thread keeps it there: either way the
    process exits with the one line ABORT_GRACE_S later instead of running on."""
    import subprocess
    import sys

    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _NEVER_HANGS,
            str(tiny_dataset.path),
            str(tmp_path / "out"),
            scenario.value,
        ],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "returned" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"ckvision: error: backend null: call \d+ \(1 samples\) has run 0\.\d s, "
        r"over the 0\.5 s bound .*the run failed \(LoadGen did not stop within "
        r"1 s; exiting\)",
        last,
    ), last
    assert time.monotonic() - started < 40
    # its logs are set aside like any failed run's: nothing under a result's name
    out = tmp_path / "out"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json"):
        assert not (out / name).exists(), name
    assert (out / "mlperf_log_detail.txt.failed-run").is_file()


def test_observers_see_every_completion_once(
    tiny_contract: ModelContract,
    tiny_run: TinyRun,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    """The one hook for progress and histograms: every sample, with its latency."""
    seen: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def observe(latencies_ns: list[int], ok: bool) -> None:
        with lock:
            seen.extend((latency, ok) for latency in latencies_ns)

    backend = _Faulty(Path("none"), tiny_contract, BackendOptions())
    backend.fault = "fewer rows"
    config = quick_config(scenario=Scenario.OFFLINE, mode=Mode.ACCURACY, batch_size=4)
    with pytest.raises(RunError):
        tiny_run(config, backend, tmp_path, log=lambda _line: None, observers=[observe])
    assert len(seen) == SAMPLES
    assert sum(1 for _latency, ok in seen if ok) == 4  # the one good call before the bad one
    assert all(0 <= latency < 10**10 for latency, _ok in seen)
