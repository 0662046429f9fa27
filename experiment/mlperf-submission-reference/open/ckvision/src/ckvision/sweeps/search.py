"""The whole peak search: accuracy check, then each bound for each arrival process.

Stages as in MLPerf's cloud reference: (1) accuracy on the first 500 images (the whole
set if smaller), an Offline AccuracyOnly point; (2) ``linear`` (equal-spaced) scans;
(3) ``exponential`` (Poisson, LoadGen Server) scans, each trial a recorded point. One
``===RESULT`` line per bound and arrival, one ``===FINAL_RESULT`` line, and
``results.json`` with ``check_accuracy``, ``results.{linear|exponential}.{bound}``
(bound in seconds, as the reference) and ``scan``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.ck.tool import CkCommandError
from ckvision.errors import RunError
from ckvision.fsutil import atomic_write_json
from ckvision.sweeps.peak import PeakResult, Trial, failed_checks, search_peak, trial_record
from ckvision.sweeps.points import CkPointRunner, Point, PointResult

__all__ = ["run_peak_search", "ACCURACY_IMAGES", "ARRIVALS", "RESULTS_FILE"]

ACCURACY_IMAGES = 500
ARRIVALS = ("linear", "exponential")
RESULTS_FILE = "results.json"


def _accuracy_point(runner: CkPointRunner, log: Callable[[str], None]) -> PointResult:
    env = {"CK_LOADGEN_SCENARIO": "Offline", "CK_LOADGEN_MODE": "AccuracyOnly"}
    try:
        return runner.run(
            Point(
                "accuracy",
                f"first {ACCURACY_IMAGES} images",
                {**env, "CK_LOADGEN_DATASET_SIZE": str(ACCURACY_IMAGES)},
            )
        )
    except (CkCommandError, RunError):
        log(
            f"peak: the accuracy run on {ACCURACY_IMAGES} images failed (a smaller dataset?); "
            "trying the whole dataset"
        )
        return runner.run(
            Point("accuracy", "whole dataset", {**env, "CK_LOADGEN_DATASET_SIZE": "0"})
        )


def _poisson_measure(
    runner: CkPointRunner, bound_ms: float, duration_s: float
) -> Callable[[float], Trial]:
    def measure(qps: float) -> Trial:
        point = runner.run(
            Point(
                "peak-poisson",
                f"bound={bound_ms:g}ms qps={qps:g}",
                {
                    "CK_LOADGEN_SCENARIO": "Server",
                    "CK_LOADGEN_MODE": "PerformanceOnly",
                    "CK_LOADGEN_TARGET_QPS": f"{qps:g}",
                    "CK_LOADGEN_TARGET_LATENCY": f"{bound_ms:g}",
                    "CK_LOADGEN_MIN_DURATION_S": f"{duration_s:g}",
                },
                (f"bound.{bound_ms:g}ms",),
            )
        )
        lg = point.loadgen
        tiles = {
            p: lg[f"latency_p{p}_ns"] / 1e6
            for p in ("50", "90", "95", "99", "99_9")
            if f"latency_p{p}_ns" in lg
        }
        return Trial(
            "exponential",
            bound_ms,
            qps,
            float(lg.get("completed_samples_per_second") or 0.0),
            float(lg.get("latency_p99_ns", float("inf"))) / 1e6,
            float(lg.get("latency_mean_ns", float("inf"))) / 1e6,
            lg.get("result_validity"),
            point.entry,
            tiles,
            failed_checks(lg),
        )

    return measure


def _linear_measure(
    record: dict[str, Any], bound_ms: float, duration_s: float
) -> tuple[Callable[[float], Trial], Callable[[], None]]:
    from ckvision.backends import BackendOptions, create_backend
    from ckvision.data.cache import PreprocessedDataset
    from ckvision.models.contract import ModelContract
    from ckvision.sweeps.arrivals import run_equal_spaced

    config = record["config"]
    contract_data = dict(record["model"]["contract"])
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in contract_data.items()
    }
    contract = ModelContract(**fields)
    options = BackendOptions(
        threads=config["threads"],
        execution_provider=config["execution_provider"],
        precision=config["precision"],
        device=config["device"],
    )
    backend = create_backend(config["backend"], Path(record["model"]["path"]), contract, options)
    backend.load()
    dataset = PreprocessedDataset.open(Path(record["dataset"]["path"])).for_model(contract)
    images = np.asarray(dataset.images[:64])

    def measure(qps: float) -> Trial:
        result = run_equal_spaced(
            backend, images, qps, duration_s, workers=config["workers"], batch=config["batch_size"]
        )
        ms = result.latencies_s * 1e3
        tiles = dict(
            zip(
                ("50", "90", "95", "99", "99_9"),
                np.percentile(ms, (50, 90, 95, 99, 99.9)).tolist(),
                strict=True,
            )
        )
        p99 = tiles["99"] if not result.failures else float("inf")
        return Trial("linear", bound_ms, qps, result.qps, p99, float(ms.mean()), None, None, tiles)

    return measure, backend.close


def run_peak_search(
    runner: CkPointRunner,
    bounds_ms: Sequence[float],
    out_dir: Path,
    *,
    start_qps: float | None = None,
    duration_s: float = 5.0,
    arrivals: Sequence[str] = ARRIVALS,
    max_trials: int = 10,
    tolerance: float = 0.05,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    accuracy = _accuracy_point(runner, log)
    acc = accuracy.record.get("accuracy") or {}
    log(
        f"check_accuracy accuracy={acc.get('top1', 0):.2f}, good_items={acc.get('good')}, "
        f"total_items={acc.get('total')}"
    )
    if start_qps is None:
        rate = (accuracy.record.get("tuning") or {}).get("samples_per_s")
        start_qps = max(1.0, round(0.5 * rate, 1)) if rate else 10.0
    results: dict[str, dict[str, Any]] = {a: {} for a in arrivals}
    scan: dict[str, list[dict[str, Any]]] = {}
    final: dict[str, dict[str, float]] = {a: {} for a in arrivals}
    for arrival in arrivals:
        for bound in bounds_ms:
            key = f"{bound / 1000:g}"
            if arrival == "linear":
                measure, close = _linear_measure(accuracy.record, bound, duration_s)
            else:
                measure, close = _poisson_measure(runner, bound, duration_s), (lambda: None)
            try:
                peak: PeakResult = search_peak(
                    measure, start_qps, tolerance=tolerance, max_trials=max_trials, log=log
                )
            finally:
                close()
            if peak.qps < 0:
                lowest = min(t.target_qps for t in peak.trials)
                log(
                    f"peak: {arrival}: no rate down to {lowest:g} QPS kept p99 under "
                    f"{bound:g} ms; result -1 (recorded; not an error)"
                )
            log(peak.result_line())
            results[arrival][key] = peak.as_json()
            scan[f"{arrival}/{key}"] = [trial_record(t) for t in peak.trials]
            final[arrival][key] = int(peak.qps) if peak.qps >= 0 else -1
    log(f"===FINAL_RESULT: {json.dumps(final)}")
    document = {
        "check_accuracy": {
            "accuracy": acc.get("top1"),
            "top5": acc.get("top5"),
            "good_items": acc.get("good"),
            "total_items": acc.get("total"),
            "entry": accuracy.entry,
        },
        "results": results,
        "final": final,
        "scan": scan,
        "settings": {
            "bounds_ms": list(bounds_ms),
            "start_qps": start_qps,
            "duration_s": duration_s,
            "max_trials": max_trials,
            "tolerance": tolerance,
            "tags": runner.tags,
        },
        "provenance": runner.fingerprint,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / RESULTS_FILE, document)
    if not acc:
        raise RunError("the accuracy check recorded no accuracy")
    return document
