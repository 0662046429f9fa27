"""``make demo``: set CK up, record the four runs users start with, print what they show.

Runs ``ck benchmark program:image-classification-onnxruntime-loadgen-py --record`` (a full
``ck run`` of the program plus recording) in SingleStream and Offline, AccuracyOnly and
PerformanceOnly, on the embedded EfficientNet-Lite0 and sample dataset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ckvision.errors import RunError
from ckvision.experiments.ck_tool import run_ck
from ckvision.experiments.entries import experiment_root, find_entries, iter_runs

__all__ = ["DEMO_RUNS", "benchmark_args", "run_demo"]

PROGRAM = "image-classification-onnxruntime-loadgen-py"
MODEL = "efficientnet-lite0"
# (scenario, mode, extra env): short performance runs so the demo takes about a minute.
# Performance runs set no layout, batch, expected latency or QPS: the auto-tuning probe
# (ckvision.tuning) chooses them, as for any run without tuning flags.
DEMO_RUNS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("SingleStream", "AccuracyOnly", {}),
    ("Offline", "AccuracyOnly", {"CK_BATCH_SIZE": "8"}),
    ("SingleStream", "PerformanceOnly", {"CK_LOADGEN_MIN_DURATION_S": "2"}),
    ("Offline", "PerformanceOnly", {"CK_LOADGEN_MIN_DURATION_S": "3"}),
)


def record_name(scenario: str, mode: str) -> str:
    short = "accuracy" if mode == "AccuracyOnly" else "performance"
    return f"ckvision.demo.onnxruntime.{MODEL}.{scenario.lower()}.{short}"


def benchmark_args(scenario: str, mode: str, env: dict[str, str]) -> list[str]:
    """The ``ck benchmark`` argument list for one recorded run (no shell involved)."""
    short = "accuracy" if mode == "AccuracyOnly" else "performance"
    args = [
        "benchmark",
        f"program:{PROGRAM}",
        "--repetitions=1",
        f"--env.CK_LOADGEN_SCENARIO={scenario}",
        f"--env.CK_LOADGEN_MODE={mode}",
        *(f"--env.{key}={value}" for key, value in env.items()),
        "--record",
        "--record_repo=local",
        f"--record_uoa={record_name(scenario, mode)}",
        f"--tags=ckvision,demo,onnxruntime,{MODEL},{scenario.lower()},{short}",
        "--skip_print_timers",
        "--skip_stat_analysis",
        "--process_multi_keys",
        "--quiet",
        "--return_error_if_external_fail=yes",
        f"--dep_add_tags.weights={_demo_model_tags()}",
        f"--dep_add_tags.images={_demo_dataset_tags()}",
    ]
    return args


def _demo_model_tags() -> str:
    """Always the embedded FP32 model, even when an INT8 model derived from it (whose tags
    carry its name too) is installed: without these, CK's --quiet took the newest match,
    and the demo recorded INT8 runs under its FP32 names and figures."""
    return f"{MODEL},fp32"


def _demo_dataset_tags() -> str:
    """Always the embedded sample set in the demo model's variation, even when the
    user's ImageNet folder or other variations are installed too."""
    from ckvision.data.variation import SAMPLE_TAG, Preprocessing
    from ckvision.models.registry import get_model_spec

    spec = Preprocessing.for_model(get_model_spec(MODEL).contract)
    return ",".join([SAMPLE_TAG, *spec.tags()])


def run_demo(
    *,
    skip_setup: bool = False,
    report: Path = Path("demo-report.html"),
    log: Callable[[str], None] = print,
) -> None:
    from ckvision.accuracy.scoring import format_accuracy
    from ckvision.analysis.console import format_table
    from ckvision.analysis.frame import run_row
    from ckvision.analysis.tables import summary_table

    if not skip_setup:
        from ckvision.ck.setup import setup_ck

        setup_ck(log)
    runs = []
    for scenario, mode, env in DEMO_RUNS:
        log(f"== ck benchmark: {scenario} {mode} ==")
        started = time.time()
        run_ck(benchmark_args(scenario, mode, env))
        entry = experiment_root() / record_name(scenario, mode)
        new = [
            r
            for r in iter_runs(find_entries([entry]) if entry.is_dir() else [])
            if r.path.stat().st_mtime >= started - 1
        ]
        if not new:
            raise RunError(
                f"ck benchmark recorded no {scenario} {mode} run: it failed; see its output above"
            )
        runs.extend(new)
    names = [experiment_root() / record_name(s, m) for s, m, _ in DEMO_RUNS]
    import pandas as pd

    log("")
    for run in runs:
        if run.record.get("accuracy"):
            scenario = run.record["loadgen"].get("scenario")
            log(f"{scenario} {format_accuracy(run.record['accuracy'])}")
    dataset = runs[0].record["dataset"] if runs else {}
    log(
        f"(accuracy on the embedded sample set {dataset.get('name')}, "
        f"{dataset.get('size')} images: not ImageNet accuracy)"
    )
    log("")
    log(format_table(summary_table(pd.DataFrame([run_row(r) for r in runs]))))
    log("")
    log(f"experiment entries: {experiment_root()}")
    for name in names:
        log(f"  {name}")
    from ckvision.analysis.report import write_report

    write_report("ckvision,demo", Path(report).resolve(), runs=runs, log=log)
