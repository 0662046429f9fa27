"""One LoadGen run: validate, warm up, write user.conf, test, parse logs, score accuracy.

LoadGen calls the SUT on the thread that started the test, and a Python exception that
escapes a callback leaves LoadGen in a state it cannot be destroyed from. So during the
test Ctrl-C does not raise: a watcher thread sees SIGINT, the SUT completes every
remaining sample without inference so LoadGen ends early, the handles are destroyed,
and only then is ``KeyboardInterrupt`` raised. A second Ctrl-C exits the process at once
(a Server test keeps its schedule and could otherwise run for minutes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg

from ckvision.accuracy.scoring import score_accuracy_log
from ckvision.backends.base import Backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import ConfigError, ModelError, RunError
from ckvision.harness.histogram import LatencyRecorder
from ckvision.harness.logs import ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG, parse_output_dir
from ckvision.harness.progress import report_progress
from ckvision.harness.qsl import SampleLibrary
from ckvision.harness.settings import build_test_settings, write_audit_config, write_user_conf
from ckvision.harness.sut import BaseSUT, make_sut

__all__ = ["RunResult", "run_benchmark", "USER_CONF"]

USER_CONF = "user.conf"
PROGRESS_EVERY_S = 1.0
_STALE = (DETAIL_LOG, SUMMARY_LOG, ACCURACY_LOG, "mlperf_log_trace.json")


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]  # parsed LoadGen logs, see ckvision.harness.logs
    accuracy: dict[str, Any] | None  # AccuracyOnly runs only
    output_dir: Path
    user_conf: Path
    failures: int
    duration_s: float
    latency: dict[str, Any] | None = None  # SUT-side HDR histogram summary (performance)


def run_benchmark(
    config: RunConfig,
    backend: Backend,
    dataset: PreprocessedDataset,
    output_dir: Path,
    *,
    model_name: str,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Run one LoadGen test of ``backend`` on ``dataset``; logs land in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    qsl = SampleLibrary.from_dataset(dataset, config)
    backend.load()
    _check_fit(config, backend, dataset, qsl)
    backend.warmup(qsl.first_batch(config.batch_size))
    user_conf = write_user_conf(config, model_name, output_dir / USER_CONF)
    audit = write_audit_config(config, output_dir)
    settings = build_test_settings(config, model_name, user_conf=user_conf)
    _clamp_sample_count(settings, qsl, log)
    for name in _STALE:
        with contextlib.suppress(FileNotFoundError):
            (output_dir / name).unlink()
    sut = make_sut(config, backend, qsl, log)
    recorder = sut.on_complete = LatencyRecorder()
    performance = config.mode is Mode.PERFORMANCE
    duration = _run_loadgen(sut, qsl, settings, _log_settings(config, output_dir), audit,
                            recorder, config.progress if performance else "off", log)
    latency = recorder.write(output_dir) if performance else None
    summary = parse_output_dir(output_dir)
    if sut.failures:
        raise RunError(f"{sut.failures} of {sut.completed} samples failed: {sut.first_error}")
    accuracy = None
    if config.mode is Mode.ACCURACY:
        accuracy = score_accuracy_log(output_dir / ACCURACY_LOG, qsl.labels, dataset=dataset.name)
    return RunResult(summary, accuracy, output_dir, user_conf, sut.failures, duration, latency)


def _check_fit(
    config: RunConfig, backend: Backend, dataset: PreprocessedDataset, qsl: SampleLibrary
) -> None:
    contract = backend.contract
    if dataset.preprocessing:
        dataset.check_matches(contract)
    expected = contract.input_shape(1)[1:]
    if qsl.sample_shape != expected:
        raise ModelError(
            f"model {contract.name} expects samples of shape {expected}, "
            f"but dataset {dataset.name} has {qsl.sample_shape}"
        )
    max_batch = backend.capabilities.max_batch
    batched = config.scenario is not Scenario.SINGLE_STREAM
    if max_batch and batched and config.batch_size > max_batch:
        raise ConfigError(
            f"CK_BATCH_SIZE={config.batch_size} is above the model's maximum batch {max_batch}"
        )


def _clamp_sample_count(settings: lg.TestSettings, qsl: SampleLibrary,
                        log: Callable[[str], None]) -> None:
    """A conf's performance sample count (e.g. mlperf.conf's 1024) cannot exceed the QSL."""
    if settings.performance_sample_count_override > qsl.size:
        log(f"note: performance sample count {settings.performance_sample_count_override} "
            f"from the LoadGen conf is above the {qsl.size} samples in the run; using {qsl.size}")
        settings.performance_sample_count_override = qsl.size


def _log_settings(config: RunConfig, output_dir: Path) -> lg.LogSettings:
    settings = lg.LogSettings()
    settings.log_output.outdir = str(output_dir)
    settings.log_output.copy_summary_to_stdout = config.verbose >= 2
    settings.enable_trace = config.verbose >= 3
    return settings


def _run_loadgen(sut: BaseSUT, qsl: SampleLibrary, settings: lg.TestSettings,
                 log_settings: lg.LogSettings, audit: Path,
                 recorder: LatencyRecorder, progress: str,
                 log: Callable[[str], None]) -> float:
    """Construct the LoadGen handles, run the test, destroy them whatever happens."""
    load_errors: list[BaseException] = []

    def load(indices: list[int]) -> None:
        try:
            qsl.load(indices)
        except Exception as err:  # must not escape into LoadGen; the samples then fail
            load_errors.append(err)
            sut.log(f"warning: loading {len(indices)} samples into RAM failed: {err}")

    sut_handle = lg.ConstructSUT(recorder.wrap_issue(sut.issue), sut.flush)
    try:
        qsl_handle = lg.ConstructQSL(qsl.size, qsl.performance_count, load, qsl.unload)
        try:
            with _interrupts_abort(sut):
                sut.start()
                try:
                    with report_progress(progress, sut, recorder, log,
                                         interval_s=PROGRESS_EVERY_S):
                        start = time.perf_counter()
                        lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings,
                                                    log_settings, str(audit))
                        return time.perf_counter() - start
                finally:
                    sut.stop()
        finally:
            lg.DestroyQSL(qsl_handle)
    finally:
        lg.DestroySUT(sut_handle)


@contextlib.contextmanager
def _interrupts_abort(sut: BaseSUT) -> Iterator[None]:
    """Turn Ctrl-C during the test into an abort of the SUT, raised after the test.

    Python runs signal handlers only on the main thread, which sits inside LoadGen for
    most of an Offline test; so the handler does nothing and a watcher thread reads the
    signal from ``signal.set_wakeup_fd``, which is written whichever thread got it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hits: list[int] = []

    def watch(read_fd: int) -> None:
        while data := os.read(read_fd, 64):
            for _ in range(data.count(signal.SIGINT)):
                hits.append(1)
                sut.aborted = True
                if len(hits) > 1:
                    sut.log("interrupted again: exiting without cleanup")
                    os._exit(130)
                sut.log("interrupted: completing the remaining samples without inference "
                        "(Ctrl-C again to exit at once)")

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    watcher = threading.Thread(target=watch, args=(read_fd,), name="ckvision-sigint",
                               daemon=True)
    previous_handler = signal.signal(signal.SIGINT, _ignore_signal)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        os.close(write_fd)  # the watcher reads end-of-file and returns
        watcher.join()
        os.close(read_fd)
    if hits:
        raise KeyboardInterrupt


def _ignore_signal(signum: int, frame: object) -> None:
    """The Python-level SIGINT handler during a test: the watcher thread does the work."""
