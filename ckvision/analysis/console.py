"""What the CLI prints: a run's accuracy and figures; the table of recorded runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ckvision.errors import DataError

__all__ = ["print_run", "print_results", "format_table"]


def format_table(table: pd.DataFrame) -> str:
    """The table as text: floats to 3 places, and "-" for every missing value (pandas'
    ``na_rep`` leaves a None in a column of objects printed as "None")."""
    shown = table.copy()
    for name in shown.select_dtypes(include="object").columns:
        shown[name] = shown[name].where(shown[name].notna(), "-")
    return str(shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}"))


def print_run(record: dict[str, Any]) -> None:
    from ckvision.accuracy.scoring import format_accuracy

    summary = record["loadgen"]
    print(
        f"ckvision: {summary.get('scenario')} {summary.get('mode')} "
        f"on {record['model'].get('name')} ({record['backend']['name']})"
    )
    quant = record["model"].get("quantization") or {}
    if quant:  # an INT8 model package (ckvision.quantize): say so next to every result
        print(
            f"model precision {record['model'].get('precision', 'int8')}: {quant.get('method')} "
            f"calibration on {(quant.get('calibration') or {}).get('set')}, "
            f"{quant.get('format')}"
        )
    if record.get("accuracy"):
        print(format_accuracy(record["accuracy"]))
        print(
            f"(accuracy on dataset {record['dataset']['name']}, "
            f"{record['accuracy']['total']} images)"
        )
    if summary.get("mode") == "PerformanceOnly":
        parts = [
            f"{summary.get('headline', 'result')}: {summary.get('headline_value')}",
            f"result: {summary.get('result_validity')}",
        ]
        for key in ("latency_p50_ns", "latency_p90_ns", "latency_p99_ns"):
            if key in summary:
                parts.append(f"{key[8:-3]}={summary[key] / 1e6:.3f} ms")
        print(", ".join(parts))
        for line in summary.get("recommendations", []):
            print(f"  * {line}")
    stats = record["backend"].get("statistics") or {}
    if stats.get("requests"):
        print(
            f"triton per request: queue {stats['server_queue_us'] / 1e3:.3f} ms, "
            f"compute input {stats['server_compute_input_us'] / 1e3:.3f} ms, "
            f"infer {stats['server_compute_infer_us'] / 1e3:.3f} ms, "
            f"output {stats['server_compute_output_us'] / 1e3:.3f} ms, client-side "
            f"{stats.get('client_remainder_us', float('nan')) / 1e3:.3f} ms "
            f"({stats['requests']} requests, mean server batch "
            f"{stats.get('avg_server_batch') or 0:.2f})"
        )


def print_results(
    entries: Sequence[Path], *, tags: str = "", csv: Path | None = None, plot: Path | None = None
) -> pd.DataFrame:
    from ckvision.analysis import load_experiments, plot_throughput, summary_table
    from ckvision.experiments.entries import experiment_root

    def warn(message: str) -> None:
        print(f"ckvision: warning: {message}", file=sys.stderr)

    frame = load_experiments(entries, [t for t in tags.split(",") if t], warn)
    if frame.empty:
        where = ", ".join(map(str, entries)) or str(experiment_root())
        raise DataError(
            f"no recorded runs found in {where}; record some with ck benchmark --record"
        )
    table = summary_table(frame)
    print(format_table(table))
    if csv is not None:
        frame.to_csv(csv, index=False)
        print(f"full table: {csv}")
    if plot is not None:
        print(f"plot: {plot_throughput(table, plot)}")
    return table
