"""A run's record: what one LoadGen run measured, how, and with what.

The program writes ``ckvision-run.json`` (configuration, model, dataset, versions);
:func:`collect_run` adds the parsed LoadGen logs, the accuracy and the raw logs.
CK's post-processing writes the result as the fine-grain timer file, which
``ck benchmark --record`` stores as ``characteristics_list[i].run``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ckvision.errors import RunError
from ckvision.fsutil import atomic_write_json

__all__ = [
    "RUN_FILE",
    "TIMER_FILE",
    "RECORD_VERSION",
    "write_run_info",
    "collect_run",
    "mlperf_submission_keys",
]

RUN_FILE = "ckvision-run.json"
TIMER_FILE = "tmp-ck-timer.json"
RECORD_VERSION = 1
RAW_LOGS = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")
USER_CONF = "user.conf"
_MAX_RAW_BYTES = 32 * 1024 * 1024  # a larger log is referenced by path, never truncated


def write_run_info(output_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(Path(output_dir) / RUN_FILE, info)


def _raw_logs(output_dir: Path) -> dict[str, str]:
    logs: dict[str, str] = {}
    for name in (*RAW_LOGS, USER_CONF, "audit.config", "latency.hgrm", "latency.hdr"):
        path = output_dir / name
        if not path.is_file():
            continue
        if path.stat().st_size > _MAX_RAW_BYTES:
            logs[name] = f"<not embedded: {path.stat().st_size} bytes at {path}>"
        else:
            logs[name] = path.read_text(encoding="utf-8", errors="replace")
    return logs


def collect_run(output_dir: Path) -> dict[str, Any]:
    """Build the run's record from the files a run left in ``output_dir``."""
    from ckvision.accuracy.scoring import score_accuracy_log
    from ckvision.data.cache import PreprocessedDataset
    from ckvision.harness.logs import parse_output_dir

    output_dir = Path(output_dir)
    run_file = output_dir / RUN_FILE
    if not run_file.is_file():
        raise RunError(f"no {RUN_FILE} in {output_dir}: the run did not finish; see its output")
    info = json.loads(run_file.read_text(encoding="utf-8"))
    summary = parse_output_dir(output_dir)
    accuracy = (info.get("result") or {}).get("accuracy")  # the run's own typed result
    if accuracy is None and info["config"]["mode"] == "AccuracyOnly":  # older run files
        import numpy as np

        dataset = PreprocessedDataset.open(Path(info["dataset"]["path"]))
        size = info["config"].get("dataset_size") or dataset.size
        labels = np.asarray(dataset.labels[:size])
        accuracy = score_accuracy_log(
            output_dir / "mlperf_log_accuracy.json", labels, dataset=dataset.name
        )
    return {
        "record_version": RECORD_VERSION,
        "loadgen": summary,
        "accuracy": accuracy,
        **{k: info[k] for k in ("config", "model", "dataset", "backend", "provenance")},
        "failures": info.get("failures", 0),
        "duration_s": info.get("duration_s"),
        "tuning": info.get("tuning"),
        "latency_histogram": info.get("latency_histogram"),
        "resources": info.get("resources"),  # peak RSS of the run's process
        "logs": _raw_logs(output_dir),
    }


def mlperf_submission_keys(output_dir: Path) -> dict[str, Any]:
    """The keys ck-mlperf's submission tooling (program:dump-repo-to-submission) reads.

    Stored next to ours in ``characteristics_list[i].run``, with ck-mlperf's
    ``loadgen_postprocess`` shapes: ``mlperf_log`` (``summary``/``detail`` as lists of
    lines, ``accuracy`` as parsed JSON), ``mlperf_conf`` (file name -> list of lines for
    mlperf.conf, user.conf, audit.config) and ``parsed_summary`` (summary "key: value"
    lines; empty in accuracy mode).
    """
    output_dir = Path(output_dir)

    def lines(name: str) -> list[str] | None:
        path = output_dir / name
        if not path.is_file() or path.stat().st_size > _MAX_RAW_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)

    mlperf_log: dict[str, Any] = {
        "summary": lines("mlperf_log_summary.txt") or [],
        "detail": lines("mlperf_log_detail.txt") or [],
    }
    accuracy = output_dir / "mlperf_log_accuracy.json"
    if accuracy.is_file() and accuracy.stat().st_size <= _MAX_RAW_BYTES:
        try:
            mlperf_log["accuracy"] = json.loads(accuracy.read_text(encoding="utf-8") or "[]")
        except ValueError as err:
            raise RunError(f"{accuracy} is not valid JSON: {err}") from err
    conf = {
        name: text
        for name in ("mlperf.conf", USER_CONF, "audit.config")
        if (text := lines(name)) is not None
    }
    parsed: dict[str, str] = {}
    for line in mlperf_log["summary"]:
        key, sep, value = line.strip().partition(": ")
        if sep:
            parsed[key.strip()] = value.strip()
    accuracy_mode = any("AccuracyOnly" in v for k, v in parsed.items() if k == "Mode")
    return {
        "mlperf_log": mlperf_log,
        "mlperf_conf": conf,
        "parsed_summary": {} if accuracy_mode else parsed,
    }
