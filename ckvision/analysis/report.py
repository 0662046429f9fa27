"""``python -m ckvision report``: one self-contained HTML file of recorded runs (the tables
are :mod:`ckvision.analysis.sections`, the plots :mod:`ckvision.analysis.plots`).

Sections: every run; the batch sweep (table, throughput-vs-batch and latency-vs-batch
plots); the concurrency sweep (table, latency-vs-throughput plot); peak-search results
(``results.json`` files and the recorded Poisson trials); the provenance of each point;
and, with ``--compare``, an A/B view with B/A ratios. Plots are PNGs embedded as data
URIs and the page has no script and no external reference, so it opens anywhere
offline. ``--png-dir`` also writes the plots as files, ``--csv`` the runs.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ckvision.analysis import plots
from ckvision.analysis.sections import (
    ab_table,
    accuracy_table,
    latency_distribution,
    peak_tables,
    precision_table,
    provenance_table,
    run_label,
    runs_table,
    sweep_frame,
)
from ckvision.errors import DataError
from ckvision.experiments.entries import RecordedRun, experiment_root, find_entries, iter_runs
from ckvision.fsutil import atomic_write_text

__all__ = ["write_report", "load_runs"]

_CSS = """body{font-family:sans-serif;margin:2em;color:#222}h1{font-size:1.5em}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.data{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.data td,table.data th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
table.data th{background:#f0f0f0}img{max-width:100%;margin:.5em 1em .5em 0}
.note{color:#666;font-size:.85em}"""


def load_runs(tags: str) -> list[RecordedRun]:
    wanted = [t.strip() for t in tags.split(",") if t.strip()]
    if not wanted:
        raise DataError("--tags is empty; name the tags of the runs to report")
    runs = list(iter_runs(find_entries((), wanted)))
    if not runs:
        raise DataError(f"no recorded runs match tags {','.join(wanted)} in {experiment_root()}")
    return runs


def _read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read peak results {path}: {err}") from err
    if not isinstance(data, dict) or "results" not in data:
        raise DataError(f"{path} is not a peak-search results.json (no 'results')")
    return data


class _Page:
    def __init__(self, png_dir: Path | None) -> None:
        self.parts: list[str] = []
        self.png_dir = png_dir
        self.images = 0

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def table(self, frame: pd.DataFrame, caption: str) -> None:
        body = frame.to_html(
            index=False,
            na_rep="-",
            border=0,
            classes="data",
            float_format=lambda v: f"{v:.3f}",
            escape=True,
        )
        start = body.index(">", body.index("<table")) + 1  # pandas' own <table ...> tag
        self.parts.append(
            f'<table class="data" data-caption="{html.escape(caption)}">' + body[start:]
        )

    def image(self, png: bytes, name: str, alt: str) -> None:
        self.images += 1
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        if self.png_dir is not None:
            self.png_dir.mkdir(parents=True, exist_ok=True)
            (self.png_dir / f"{name}.png").write_bytes(png)

    def render(self, title: str) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{html.escape(title)}</title><link rel="icon" href="data:,">'
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(self.parts)
            + "</body></html>\n"
        )


def _sweeps(page: _Page, runs: Sequence[RecordedRun]) -> None:
    batch = sweep_frame([r for r in runs if "sweep_batch" in r.tags])
    if not batch.empty:
        page.heading("Offline batch sweep")
        page.table(batch, "batch sweep")
        page.image(
            plots.line_plot(
                [("", batch)],
                "batch",
                ["samples/s"],
                logx=True,
                title="Throughput vs batch",
                xlabel="batch size",
                ylabel="samples/s",
            ),
            "throughput_vs_batch",
            "throughput vs batch",
        )
        page.image(
            plots.line_plot(
                [("", batch)],
                "batch",
                ["p50 ms", "p99 ms"],
                logx=True,
                title="Latency vs batch",
                xlabel="batch size",
                ylabel="latency (ms)",
            ),
            "latency_vs_batch",
            "latency vs batch",
        )
    conc = sweep_frame([r for r in runs if "sweep_concurrency" in r.tags])
    if not conc.empty:
        page.heading("Concurrency sweep (MultiStream, N outstanding samples)")
        page.table(conc, "concurrency sweep")
        page.image(
            plots.line_plot(
                [("", conc)],
                "samples/s",
                ["p50 ms", "p99 ms"],
                title="Latency vs throughput",
                xlabel="samples/s",
                ylabel="query latency (ms)",
            ),
            "latency_vs_throughput",
            "latency vs throughput",
        )


def _peaks(page: _Page, runs: Sequence[RecordedRun], docs: Sequence[dict[str, Any]]) -> None:
    summary, trials = peak_tables(runs, docs)
    if summary.empty and trials.empty:
        return
    page.heading("Peak search: max QPS with p99 under each bound")
    if not summary.empty:
        page.table(summary, "peak results")
    if not trials.empty:
        page.table(trials, "peak trials")
        series = [
            (f"{a} {b} ms", frame) for (a, b), frame in trials.groupby(["arrival", "bound ms"])
        ]
        page.image(
            plots.line_plot(
                series,
                "qps",
                ["p99 ms"],
                title="p99 latency vs QPS",
                xlabel="measured QPS",
                ylabel="p99 (ms)",
            ),
            "peak_scan",
            "peak scan",
        )


def _distributions(page: _Page, runs: Sequence[RecordedRun]) -> None:
    """Latency distribution per performance run; accuracy per accuracy run."""
    series = [(run_label(r), d) for r in runs if (d := latency_distribution(r)) is not None]
    if series:
        page.heading("Latency distribution (performance runs)")
        page.note(
            "SUT-side latency of every sample (issue to completion), from each run's "
            "latency.hgrm; LoadGen's own percentiles are in the table above"
        )
        page.image(
            plots.percentile_plot(series, title="Latency by percentile"),
            "latency_distribution",
            "latency distribution",
        )
    accuracy = accuracy_table(runs)
    if not accuracy.empty:
        page.heading("Accuracy per run")
        datasets = ", ".join(sorted({str(d) for d in accuracy["dataset"]}))
        page.note(f"top-1 and top-5 on {datasets} (a sample set's accuracy is not ImageNet's)")
        page.table(accuracy, "accuracy")
        page.image(
            plots.bar_plot(
                accuracy["run"].tolist(),
                accuracy["top1 %"].astype(float).tolist(),
                title="Top-1 accuracy per run",
                ylabel="top-1 %",
            ),
            "accuracy",
            "accuracy per run",
        )


def write_report(
    tags: str,
    out: Path,
    *,
    compare: str = "",
    results: Sequence[Path] = (),
    png_dir: Path | None = None,
    csv: Path | None = None,
    runs: Sequence[RecordedRun] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the report of the runs tagged ``tags`` (or of ``runs``, named by ``tags``)."""
    runs = list(runs) if runs is not None else load_runs(tags)
    other = load_runs(compare) if compare else []
    docs = [_read_results(Path(p)) for p in results]
    page = _Page(png_dir)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page.note(f"{len(runs)} runs tagged {tags}; generated {stamp} by ckvision")
    page.heading("All runs")
    page.table(runs_table(runs), "runs")
    _distributions(page, runs)
    _sweeps(page, runs)
    _peaks(page, runs, docs)
    precisions = precision_table([*runs, *other])
    if not precisions.empty:
        page.heading("Precisions side by side (FP32 vs INT8)")
        page.note(
            "mean over runs; ratios against the same model's FP32 row; top-1 on the "
            "runs' dataset (the sample set is not ImageNet); MLPerf keeps >= 99% of FP32"
        )
        page.table(precisions, "precisions")
    if other:
        page.heading(f"A/B: {tags} (A) vs {compare} (B)")
        table = ab_table(runs, other)
        if table.empty:
            page.note("no performance runs with the same scenario and batch in both sets")
        else:
            page.table(table, "a/b")
            labels = [f"{r.scenario} b{r.batch}" for r in table.itertuples()]
            page.image(
                plots.bar_plot(
                    labels,
                    table["B/A samples/s"].astype(float).tolist(),
                    title="Throughput ratio B/A",
                    ylabel="B/A",
                    reference=1.0,
                ),
                "ab_ratio",
                "A/B ratio",
            )
    page.heading("Provenance of each point")
    page.table(provenance_table([*runs, *other]), "provenance")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page.render(f"ckvision report: {tags}"))
    log(f"report: {out} ({len(runs)} runs, {page.images} plots)")
    if csv is not None:
        from ckvision.analysis.frame import run_row

        pd.DataFrame([run_row(r) for r in [*runs, *other]]).to_csv(csv, index=False)
        log(f"csv: {csv}")
    return out
