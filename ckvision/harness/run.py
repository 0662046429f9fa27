"""One LoadGen run: validate, warm up, write user.conf, test, parse logs, score accuracy.

Completion is owned by the :class:`~ckvision.harness.ledger.Ledger` (every issued sample
is completed exactly once, whatever the backend does). Two guards abort the run through
it, so LoadGen always gets its responses and the test ends:

* the watchdog: a backend call running longer than ``config.batch_timeout_s``
  (``CK_BATCH_TIMEOUT_S``), or no worker left alive with samples outstanding, fails the
  run with one line naming the backend and the call;
* Ctrl-C: Python runs signal handlers only on the main thread, which sits inside LoadGen,
  so a watcher thread reads SIGINT from ``signal.set_wakeup_fd`` and aborts the ledger;
  ``KeyboardInterrupt`` is raised once the LoadGen handles are destroyed. A second
  Ctrl-C exits at once.

If LoadGen does not return within ``ABORT_GRACE_S`` of an abort (a long Server schedule
keeps issuing), the process exits with the one line: it never hangs.

Every completion passes through ``ledger.observers`` (see :func:`run_benchmark`'s
``observers``): the one place to watch per-sample progress and timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from ckvision.accuracy.scoring import TOP5_FILE, score_accuracy_log
from ckvision.backends.base import Backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.data.encoded import EncodedDataset
from ckvision.errors import ConfigError, ModelError, RunError
from ckvision.fsutil import atomic_write_text
from ckvision.harness.histogram import HDR_FILE, HGRM_FILE, LatencyRecorder
from ckvision.harness.ledger import NO_CLASS, Ledger, Observer
from ckvision.harness.logs import ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG, parse_output_dir
from ckvision.harness.progress import report_progress
from ckvision.harness.qsl import SampleLibrary
from ckvision.harness.settings import build_test_settings, write_audit_config, write_user_conf
from ckvision.harness.sut import SUT, make_sut

__all__ = ["RunResult", "run_benchmark", "USER_CONF", "ABORT_GRACE_S"]

USER_CONF = "user.conf"
PROGRESS_EVERY_S = 1.0
ABORT_GRACE_S = 5.0  # after an abort, LoadGen gets this long to return
_STALE = (
    DETAIL_LOG,
    SUMMARY_LOG,
    ACCURACY_LOG,
    TOP5_FILE,
    "mlperf_log_trace.json",
    HGRM_FILE,
    HDR_FILE,
    *(name + ".failed-run" for name in (SUMMARY_LOG, DETAIL_LOG, ACCURACY_LOG)),
)


@dataclass(frozen=True)
class RunResult:
    """The typed record of one run: what LoadGen measured, as it measured it.

    ``latency_*_ns`` are LoadGen's own metric for the scenario: per query for MultiStream
    (a query is ``samples_per_query`` samples), per sample elsewhere.
    """

    scenario: Scenario
    mode: Mode
    summary: dict[str, Any]  # the parsed LoadGen logs, see ckvision.harness.logs
    accuracy: dict[str, Any] | None  # AccuracyOnly runs only
    output_dir: Path
    user_conf: Path
    failures: int
    completed: int
    duration_s: float
    valid: bool | None = None  # LoadGen's verdict (None in AccuracyOnly)
    samples_per_second: float | None = None
    latency_ns: dict[str, float] = field(default_factory=dict)  # "p50", "p90", "p99", "mean"
    latency: dict[str, Any] | None = None  # SUT-side HDR histogram summary (performance)
    adaptive: dict[str, Any] | None = None  # CK_ADAPTIVE_BATCH: what the run tried, settled on
    prefetch: dict[str, int] | None = None  # CK_PREPROCESS_PREFETCH: depth, most batches ahead

    @classmethod
    def from_run(cls, config: RunConfig, summary: dict[str, Any], **rest: Any) -> RunResult:
        latency = {}  # the logs' latency_* are the scenario's metric (see harness.logs)
        for name in ("p50", "p90", "p95", "p97", "p99", "p99_9", "mean"):
            if f"latency_{name}_ns" in summary:
                latency[name] = float(summary[f"latency_{name}_ns"])
        validity = summary.get("result_validity")
        qps = summary.get("samples_per_second")
        return cls(
            scenario=config.scenario,
            mode=config.mode,
            summary=summary,
            valid=None if validity is None else validity == "VALID",
            samples_per_second=None if qps is None else float(qps),
            latency_ns=latency,
            **rest,
        )


def run_benchmark(
    config: RunConfig,
    backend: Backend,
    dataset: PreprocessedDataset | EncodedDataset,
    output_dir: Path,
    *,
    model_name: str,
    log: Callable[[str], None] = print,
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Run one LoadGen test of ``backend`` on ``dataset``; logs land in ``output_dir``.

    ``observers`` are called ``observe(latencies_ns, ok)`` on every completion (see
    :mod:`ckvision.harness.ledger`): the hook for live progress and latency histograms.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for note in config.inapplicable():
        log(note)
    backend.load()
    qsl = _library(dataset, config, backend)
    _check_fit(config, backend, dataset, qsl)
    backend.warmup(qsl.first_batch(config.batch_size))
    user_conf = write_user_conf(config, model_name, output_dir / USER_CONF)
    audit = write_audit_config(config, output_dir)
    settings = build_test_settings(config, model_name, user_conf=user_conf)
    _clamp_sample_count(settings, qsl, log)
    for name in _STALE:
        with contextlib.suppress(FileNotFoundError):
            (output_dir / name).unlink()
    ledger = Ledger(backend.name, top5_size=qsl.size if config.mode is Mode.ACCURACY else 0)
    ledger.observers.extend(observers)
    performance = config.mode is Mode.PERFORMANCE
    recorder = LatencyRecorder()
    ledger.observers.append(recorder.observe)
    sut = make_sut(config, backend, qsl, ledger)
    for size in sut.chooser.reachable if sut.chooser else []:
        if size != config.batch_size:  # the tuned size is warm already
            backend.warmup(qsl.first_batch(size))  # a first call at a new size is slow
    duration = _run_loadgen(
        sut,
        qsl,
        settings,
        _log_settings(config, output_dir),
        audit,
        config,
        log,
        recorder,
        config.progress if performance else "off",
    )
    if ledger.fatal is not None or ledger.failures:
        _set_aside(output_dir)  # LoadGen ended "normally": its logs must not look like a result
        if ledger.interrupted:
            raise KeyboardInterrupt
        if ledger.fatal is not None:
            raise RunError(ledger.fatal)
        raise RunError(
            f"{ledger.failures} of {ledger.completed} samples failed: {ledger.first_error}"
        )
    latency = recorder.write(output_dir, ledger.breakdown()) if performance else None
    summary = parse_output_dir(output_dir)
    accuracy = None
    if config.mode is Mode.ACCURACY:
        _write_top5(output_dir / TOP5_FILE, ledger.top5)
        accuracy = score_accuracy_log(
            output_dir / ACCURACY_LOG,
            qsl.labels,
            dataset=dataset.name,
            top5_path=output_dir / TOP5_FILE,
        )
    return RunResult.from_run(
        config,
        summary,
        accuracy=accuracy,
        output_dir=output_dir,
        user_conf=user_conf,
        failures=ledger.failures,
        completed=ledger.completed,
        duration_s=duration,
        latency=latency,
        adaptive=sut.chooser.record() if sut.chooser else None,
        prefetch=sut.prefetch_record,
    )


def _library(
    dataset: PreprocessedDataset | EncodedDataset, config: RunConfig, backend: Backend
) -> SampleLibrary:
    """The QSL of ``dataset``: its pixels, or its encoded files (JPEG-in mode)."""
    if getattr(backend, "takes_encoded", False) and not isinstance(dataset, EncodedDataset):
        raise ConfigError(
            f"backend {backend.name}: the served model takes encoded files (the JPEG-in "
            "ensemble); run it with CK_INPUT_FORMAT=jpeg"
        )
    if isinstance(dataset, EncodedDataset):
        from ckvision.harness.encoded import EncodedSampleLibrary

        return EncodedSampleLibrary(
            dataset, config, passthrough=bool(getattr(backend, "takes_encoded", False))
        )
    return SampleLibrary.from_dataset(dataset, config, backend.host_memory)


FAILED_SUFFIX = ".failed-run"


def _set_aside(output_dir: Path) -> None:
    """Rename the logs of a failed run to ``<name>.failed-run`` (kept for diagnosis)."""
    for name in (SUMMARY_LOG, DETAIL_LOG, ACCURACY_LOG):
        with contextlib.suppress(FileNotFoundError):
            (output_dir / name).replace(output_dir / (name + FAILED_SUFFIX))


def _write_top5(path: Path, top5: np.ndarray) -> None:
    """Our own record of each sample's top-5 classes (MLPerf's log holds the top-1)."""
    done = np.flatnonzero(top5[:, 0] != NO_CLASS) if len(top5) else np.empty(0, np.intp)
    rows = {str(int(i)): [int(c) for c in top5[i] if c != NO_CLASS] for i in done}
    atomic_write_text(path, json.dumps({"format": "ckvision-top5/1", "top5": rows}) + "\n")


def _check_fit(
    config: RunConfig,
    backend: Backend,
    dataset: PreprocessedDataset | EncodedDataset,
    qsl: SampleLibrary,
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


def _clamp_sample_count(
    settings: lg.TestSettings, qsl: SampleLibrary, log: Callable[[str], None]
) -> None:
    """A conf's performance sample count (e.g. mlperf.conf's 1024) cannot exceed the QSL."""
    if settings.performance_sample_count_override > qsl.size:
        log(
            f"note: performance sample count {settings.performance_sample_count_override} "
            f"from the LoadGen conf is above the {qsl.size} samples in the run; using {qsl.size}"
        )
        settings.performance_sample_count_override = qsl.size


def _log_settings(config: RunConfig, output_dir: Path) -> lg.LogSettings:
    settings = lg.LogSettings()
    settings.log_output.outdir = str(output_dir)
    settings.log_output.copy_summary_to_stdout = config.verbose >= 2
    settings.enable_trace = config.verbose >= 3
    return settings


def _run_loadgen(
    sut: SUT,
    qsl: SampleLibrary,
    settings: lg.TestSettings,
    log_settings: lg.LogSettings,
    audit: Path,
    config: RunConfig,
    log: Callable[[str], None],
    recorder: LatencyRecorder,
    progress: str,
) -> float:
    """Construct the LoadGen handles, run the test, destroy them whatever happens."""
    ledger = sut.ledger

    def load(indices: list[int]) -> None:
        try:
            qsl.load(indices)
        except Exception as err:  # must not escape into LoadGen; the run fails instead
            ledger.abort(f"loading {len(indices)} samples into RAM failed: {err}")

    sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
    try:
        qsl_handle = lg.ConstructQSL(qsl.size, qsl.performance_count, load, qsl.unload)
        try:
            with _interrupts_abort(ledger, log), _watchdog(sut, config, log, log_settings):
                sut.start()
                try:
                    with report_progress(
                        progress, ledger, recorder, log, interval_s=PROGRESS_EVERY_S
                    ):
                        start = time.perf_counter()
                        lg.StartTestWithLogSettings(
                            sut_handle, qsl_handle, settings, log_settings, str(audit)
                        )
                        return time.perf_counter() - start
                finally:
                    stuck = sut.stop(timeout_s=1.0 if ledger.aborted else None)
                    if stuck:
                        log(
                            f"warning: {', '.join(stuck)} still inside backend "
                            f"{sut.backend.name}; left behind"
                        )
        finally:
            lg.DestroyQSL(qsl_handle)
    finally:
        lg.DestroySUT(sut_handle)


@contextlib.contextmanager
def _watchdog(
    sut: SUT, config: RunConfig, log: Callable[[str], None], log_settings: lg.LogSettings
) -> Iterator[None]:
    """Abort the run when a backend call overruns or every worker has died; exit the
    process when LoadGen has not returned ``ABORT_GRACE_S`` after an abort (a Server
    schedule keeps issuing), its logs set aside first like any failed run's."""
    ledger, bound = sut.ledger, config.batch_timeout_s
    stop = threading.Event()

    def watch() -> None:
        aborted_at: float | None = None
        while not stop.wait(min(0.25, bound / 4)):
            late = ledger.overdue(bound)
            if late is not None:
                number, samples, seconds = late
                ledger.abort(
                    f"backend {sut.backend.name}: call {number} ({samples} samples) has run "
                    f"{seconds:.1f} s, over the {bound:g} s bound (CK_BATCH_TIMEOUT_S / "
                    "--batch-timeout-s); the run failed"
                )
            elif ledger.outstanding and not sut.alive() and not stop.is_set():
                ledger.abort(
                    f"backend {sut.backend.name}: every worker thread has died with "
                    f"{ledger.outstanding} samples outstanding; the run failed"
                )
            if ledger.aborted and aborted_at is None:
                aborted_at = time.monotonic()
            if aborted_at is not None and time.monotonic() - aborted_at > ABORT_GRACE_S:
                _set_aside(Path(log_settings.log_output.outdir))
                print(
                    f"ckvision: error: {ledger.fatal} (LoadGen did not stop within "
                    f"{ABORT_GRACE_S:g} s; exiting)",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(130 if ledger.interrupted else 1)

    thread = threading.Thread(target=watch, name="ckvision-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _interrupts_abort(ledger: Ledger, log: Callable[[str], None]) -> Iterator[None]:
    """Turn Ctrl-C during the test into an abort of the ledger (raised after the test).

    Python runs signal handlers only on the main thread, which sits inside LoadGen for
    most of a test; so the handler does nothing and a watcher thread reads the signal
    from ``signal.set_wakeup_fd``, which is written whichever thread got it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hits: list[int] = []

    def watch(read_fd: int) -> None:
        while data := os.read(read_fd, 64):
            for _ in range(data.count(signal.SIGINT)):
                hits.append(1)
                if len(hits) > 1:
                    log("interrupted again: exiting without cleanup")
                    os._exit(130)
                log(
                    "interrupted: completing the remaining samples without inference "
                    "(Ctrl-C again to exit at once)"
                )
                ledger.abort("interrupted (Ctrl-C)", interrupted=True)

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    watcher = threading.Thread(target=watch, args=(read_fd,), name="ckvision-sigint", daemon=True)
    previous_handler = signal.signal(signal.SIGINT, _ignore_signal)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        # after an interrupt, the next Ctrl-C (while the run unwinds) exits with the line,
        # never a KeyboardInterrupt traceback from wherever the main thread happens to be
        signal.signal(signal.SIGINT, _exit_at_once if hits else previous_handler)
        os.close(write_fd)  # the watcher reads end-of-file and returns
        watcher.join()
        os.close(read_fd)


def _exit_at_once(signum: int, frame: object) -> None:
    """SIGINT after an interrupted test: the promised line, then exit."""
    print("ckvision: interrupted again: exiting without cleanup", file=sys.stderr, flush=True)
    os._exit(130)


def _ignore_signal(signum: int, frame: object) -> None:
    """The Python-level SIGINT handler during a test: the watcher thread does the work."""
