"""``submission build``: recorded CK experiment entries -> an MLPerf v6.1 submission tree.

One *result* is a (model, scenario) with four runs: accuracy, performance, TEST01 and
TEST04 (see :mod:`ckvision.submission.runner`; ``ck benchmark --record`` entries work
too). The tree is written into a temporary folder beside ``--out`` and renamed into
place (:func:`ckvision.fsutil.atomic_dir`); an existing ``--out`` is replaced only with
``--force``. The full accuracy logs are kept beside it, in ``<out>-full-accuracy-logs``.

Refused, one line naming the entry, because MLPerf's v6 checker lets them through or
because they are not one honest result: an INVALID performance or compliance run; runs
of one result that differ in model file, dataset, preprocessing, code version or
LoadGen seeds; a missing or failing TEST01 / TEST04; in the closed division an accuracy
run below 50,000 samples and a run below the official minimums (600 s, 1,024
performance samples, 24,576 samples per Offline query).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.accuracy import format_accuracy
from ckvision.experiments.entries import RecordedRun, find_entries, iter_runs
from ckvision.fsutil import atomic_dir
from ckvision.submission import KINDS, SubmissionError
from ckvision.submission.compliance import (
    mllog_values,
    verify_test01_accuracy,
    verify_test01_performance,
    verify_test04_performance,
)
from ckvision.submission.system import load_user_description, system_description

__all__ = ["select_runs", "build_submission", "Result", "group_results", "FULL_LOGS_SUFFIX"]

FULL_LOGS_SUFFIX = "-full-accuracy-logs"
SUMMARY, DETAIL, ACCURACY = (
    "mlperf_log_summary.txt",
    "mlperf_log_detail.txt",
    "mlperf_log_accuracy.json",
)
VIEWABLE = 4096  # truncate_accuracy_log.py keeps the first and the last 4 KiB
MLPERF_BENCHMARK = {"resnet50": "resnet"}  # our model name -> MLPerf's benchmark
OPEN_MAPPING = "resnet"  # an open-division image classifier is compared with resnet
CLOSED_MIN_ACCURACY_SAMPLES = 50000
MIN_DURATION_MS = 600000
MIN_PERFORMANCE_SAMPLES = 1024
CLOSED_OFFLINE_MIN_SPQ = 24576
SEEDS = ("effective_qsl_rng_seed", "effective_sample_index_rng_seed", "effective_schedule_rng_seed")


def _kind(record: Mapping[str, Any]) -> str:
    config = record.get("config") or {}
    if config.get("mode") == "AccuracyOnly":
        return "accuracy"
    return str(config.get("compliance_test") or "performance")


def _name(run: RecordedRun) -> str:
    return f"entry {run.entry} (point {run.point})"


def select_runs(paths: Sequence[Path], tags: Sequence[str]) -> list[RecordedRun]:
    """Every run of the selected entries; a corrupt point or an entry without runs is
    refused (one line naming it) instead of silently left out of a submission."""
    problems: list[str] = []
    try:
        entries = find_entries(_expand(paths), tags, warn=problems.append)
    except Exception as err:  # DataError: a path that is not there
        raise SubmissionError(str(err)) from err
    if not entries:
        where = ", ".join(map(str, paths)) or "$CK_REPOS/local/experiment"
        raise SubmissionError(f"no experiment entries with tags {','.join(tags)!r} in {where}")
    runs = list(iter_runs(entries, warn=problems.append))
    if problems:
        raise SubmissionError(f"{problems[0]}; fix or leave out that entry")
    with_runs = {r.entry for r in runs}
    empty = [e.name for e in entries if e.name not in with_runs]
    if empty:
        raise SubmissionError(f"entry {empty[0]} holds no recorded run")
    return runs


def _expand(paths: Sequence[Path]) -> list[Path]:
    """An experiment folder (a repo's ``experiment/``, whose ``.cm`` holds only aliases)
    stands for the entries in it."""
    out: list[Path] = []
    for path in map(Path, paths):
        if (path / ".cm" / "meta.json").is_file() or any(path.glob("ckp-*.json")):
            out.append(path)
            continue
        children = (
            sorted(c for c in path.iterdir() if (c / ".cm" / "meta.json").is_file())
            if path.is_dir()
            else []
        )
        out += children or [path]
    return out


@dataclass
class Result:
    model: str
    scenario: str
    runs: dict[str, RecordedRun]
    logs: dict[str, dict[str, str]]  # kind -> log name -> text


def _logs(run: RecordedRun, kind: str) -> dict[str, str]:
    logs = run.record.get("logs")
    if not isinstance(logs, dict):
        raise SubmissionError(f"{_name(run)} has no MLPerf logs recorded")
    want = [SUMMARY, DETAIL] + ([ACCURACY] if kind in ("accuracy", "TEST01") else [])
    out: dict[str, str] = {}
    for name in want:
        text = logs.get(name)
        if isinstance(text, str) and text.startswith("<not embedded:") and " at " in text:
            path = Path(text.rsplit(" at ", 1)[1].rstrip(">"))
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as err:
                raise SubmissionError(f"{_name(run)}: its {name} is gone ({path})") from err
        if not isinstance(text, str) or not text.strip():
            raise SubmissionError(f"{_name(run)} has no {name} recorded")
        out[name] = text
    values = mllog_values(out[DETAIL])
    if "effective_scenario" not in values or "loadgen_version" not in values:
        raise SubmissionError(f"{_name(run)}: its {DETAIL} is not a LoadGen detail log (corrupt)")
    if kind == "accuracy" or kind == "TEST01":
        try:
            json.loads(out[ACCURACY])
        except ValueError as err:
            raise SubmissionError(f"{_name(run)}: its {ACCURACY} is corrupt ({err})") from err
    return out


def group_results(runs: Sequence[RecordedRun]) -> list[Result]:
    """(model, scenario) -> the newest run of each kind."""
    grouped: dict[tuple[str, str], dict[str, RecordedRun]] = {}
    for run in sorted(runs, key=lambda r: (r.path.stat().st_mtime, r.path.name)):
        record = run.record
        model = str((record.get("model") or {}).get("name") or "")
        scenario = str((record.get("config") or {}).get("scenario") or "")
        if not model or not scenario:
            raise SubmissionError(f"{_name(run)}: its record names no model or scenario")
        grouped.setdefault((model, scenario), {})[_kind(record)] = run  # newest wins
    results = []
    for (model, scenario), kinds in sorted(grouped.items()):
        for kind in KINDS:
            if kind not in kinds:
                what = "compliance test" if kind.startswith("TEST") else "run"
                raise SubmissionError(
                    f"{model} {scenario}: no {kind} {what} recorded in the selected entries"
                )
        logs = {kind: _logs(run, kind) for kind, run in kinds.items() if kind in KINDS}
        results.append(Result(model, scenario, {k: kinds[k] for k in KINDS}, logs))
    return results


def _identity(run: RecordedRun, detail: str) -> dict[str, Any]:
    record = run.record
    model = record.get("model") or {}
    dataset = record.get("dataset") or {}
    prov = record.get("provenance") or {}
    values = mllog_values(detail)
    return {
        "model": model.get("sha256") or model.get("path"),
        "dataset": dataset.get("name"),
        "preprocessing": [dataset.get("preprocessing"), model.get("contract")],
        "code version": [prov.get("versions"), prov.get("code_sha256")],
        "LoadGen seeds": [values.get(k) for k in SEEDS] + [values.get("loadgen_version")],
    }


def _difference(mine: Any, reference: Any) -> str:
    """The first differing part of two identity values, short: ``this: X, performance: Y``."""
    if isinstance(mine, list) and isinstance(reference, list) and len(mine) == len(reference):
        for a, b in zip(mine, reference, strict=True):
            if a != b:
                return _difference(a, b)
    if isinstance(mine, dict) and isinstance(reference, dict):
        for key in sorted(set(mine) | set(reference)):
            if mine.get(key) != reference.get(key):
                return f"{key}: {_difference(mine.get(key), reference.get(key))}"

    def show(value: Any) -> str:
        text = str(value)
        return text[:12] if len(text) == 64 and text.isalnum() else text[:40]  # a sha256

    return f"this run {show(mine)}, performance run {show(reference)}"


def _check_result(result: Result, division: str) -> None:
    runs, logs = result.runs, result.logs
    reference = _identity(runs["performance"], logs["performance"][DETAIL])
    for kind in KINDS:
        mine = _identity(runs[kind], logs[kind][DETAIL])
        for what, value in reference.items():
            if mine[what] != value:
                raise SubmissionError(
                    f"{_name(runs[kind])} ({result.model} {result.scenario} {kind}) differs "
                    f"from the performance run {runs['performance'].entry} in {what} "
                    f"({_difference(mine[what], value)}); make the runs of a result again "
                    "with one model, dataset and checkout"
                )
    if division == "closed":
        for kind in KINDS:
            dataset = runs[kind].record.get("dataset") or {}
            if dataset.get("preprocessing_in_measured_path"):
                raise SubmissionError(
                    f"{_name(runs[kind])}: a JPEG-in run (preprocessing inside the measured "
                    f"path, input {dataset.get('input_format')!r}) is not an MLPerf-style "
                    "result; the closed division takes preprocessed runs only"
                )
    for kind in ("performance", "TEST01", "TEST04"):
        values = mllog_values(logs[kind][DETAIL])
        if values.get("result_validity") != "VALID":
            reason = values.get("result_invalid_reason") or ""
            raise SubmissionError(
                f"{_name(runs[kind])}: the {kind} run is INVALID"
                + (f" ({' '.join(str(reason).split())})" if reason else "")
            )
        if division == "closed":
            _check_closed_minimums(runs[kind], values, result.scenario)
    if division == "closed":
        total = mllog_values(logs["accuracy"][DETAIL]).get("qsl_reported_total_count")
        if not isinstance(total, int) or total < CLOSED_MIN_ACCURACY_SAMPLES:
            raise SubmissionError(
                f"{_name(runs['accuracy'])}: a closed-division accuracy run covers "
                f"{CLOSED_MIN_ACCURACY_SAMPLES} samples, this one {total}"
            )


def _check_closed_minimums(run: RecordedRun, values: Mapping[str, Any], scenario: str) -> None:
    checks = [
        ("min duration (ms)", values.get("effective_min_duration_ms"), MIN_DURATION_MS),
        (
            "performance sample count",
            values.get("effective_performance_sample_count"),
            MIN_PERFORMANCE_SAMPLES,
        ),
    ]
    if scenario == "Offline":
        checks.append(
            (
                "Offline samples per query",
                values.get("effective_samples_per_query"),
                CLOSED_OFFLINE_MIN_SPQ,
            )
        )
    for what, found, need in checks:
        if not isinstance(found, (int, float)) or found < need:
            raise SubmissionError(
                f"{_name(run)}: closed division needs {what} >= {need}, the run had {found}"
            )


def _verify(result: Result) -> dict[str, dict[str, str]]:
    logs = result.logs
    test01_acc = verify_test01_accuracy(logs["accuracy"][ACCURACY], logs["TEST01"][ACCURACY])
    test01_perf = verify_test01_performance(logs["performance"][DETAIL], logs["TEST01"][DETAIL])
    test04_perf = verify_test04_performance(logs["performance"][SUMMARY], logs["TEST04"][SUMMARY])
    for kind, verdict, what in (
        ("TEST01", test01_acc, "accuracy"),
        ("TEST01", test01_perf, "performance"),
        ("TEST04", test04_perf, "performance"),
    ):
        if not verdict.passed:
            last = verdict.text.strip().splitlines()[-1]
            raise SubmissionError(
                f"{_name(result.runs[kind])}: compliance {kind} {what} check failed ({last})"
            )
    return {
        "TEST01": {
            "verify_accuracy.txt": test01_acc.text,
            "verify_performance.txt": test01_perf.text,
        },
        "TEST04": {"verify_performance.txt": test04_perf.text},
    }


def accuracy_text(record: Mapping[str, Any], full_log: str) -> str:
    """accuracy.txt: accuracy-imagenet.py's line, then truncate_accuracy_log.py's hash."""
    acc = record.get("accuracy") or {}
    if not {"top1", "good", "total"} <= set(acc):
        raise SubmissionError("the accuracy run has no scored accuracy recorded")
    digest = hashlib.sha256(full_log.encode("utf-8")).hexdigest()
    # accuracy-imagenet.py prints only the top-1 line
    line = format_accuracy({"top1": float(acc["top1"]), "good": acc["good"], "total": acc["total"]})
    return f"{line}\n\nhash={digest}\n"


def truncate(text: str) -> str:
    """The first and last 4 KiB, as MLPerf's truncation tool leaves the log."""
    if len(text) < VIEWABLE:
        return text
    return text[:VIEWABLE] + "\n\n...\n\n" + text[-VIEWABLE:]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _benchmark(model: str, division: str) -> str:
    if model in MLPERF_BENCHMARK:
        return MLPERF_BENCHMARK[model]
    if division == "closed":
        raise SubmissionError(
            f"model {model} is not an MLPerf benchmark model; submit it in the open division"
        )
    return model


def _measurements(record: Mapping[str, Any]) -> dict[str, str]:
    model = record.get("model") or {}
    contract = model.get("contract") or {}
    source = str(model.get("source") or "")
    return {
        "input_data_types": str(contract.get("input_dtype") or "float32"),
        "retraining": "No",
        "starting_weights_filename": str(Path(str(model.get("path") or "model")).name)
        + (f" ({source})" if source else ""),
        "weight_data_types": "fp32" if str(model.get("format")) == "onnx" else "see README",
        "weight_transformations": (
            "PyTorch weights exported to ONNX (opset 17), no retraining"
            if source.startswith("export:")
            else "none"
        ),
    }


def _command(record: Mapping[str, Any]) -> str:
    config = record.get("config") or {}
    model = record.get("model") or {}
    dataset = record.get("dataset") or {}
    args = ["python", "-m", "ckvision", "run", "--backend", str(config.get("backend"))]
    args += ["--model", str(model.get("path")), "--dataset", str(dataset.get("path"))]
    flags = (
        "scenario",
        "mode",
        "batch_size",
        "threads",
        "workers",
        "target_qps",
        "target_latency_ms",
        "min_duration_s",
        "buffer_size",
        "compliance_test",
        "execution_provider",
    )
    for flag in flags:
        value = config.get(flag)
        if value is not None:
            args += [f"--{flag.replace('_', '-')}", str(value)]
    return shlex.join(args)


def _readme(result: Result, division: str, submitter: str, system: str) -> str:
    perf = result.runs["performance"].record
    acc = result.runs["accuracy"].record.get("accuracy") or {}
    dataset = (perf.get("dataset") or {}).get("name")
    lines = [
        f"# {result.model} {result.scenario} ({division}, {submitter}, {system})",
        "",
        "Made with ckvision (ck-mlperf-vision): MLPerf LoadGen "
        f"{(perf.get('provenance') or {}).get('versions', {}).get('mlcommons-loadgen')}, "
        f"backend {(perf.get('backend') or {}).get('name')}.",
        "",
        f"Accuracy was measured on `{dataset}` ({acc.get('total')} images)"
        + (
            ": the embedded sample set, **not ImageNet**; its accuracy is sample-set accuracy."
            if str(dataset).startswith("ckvision-sample")
            else "."
        ),
        "",
        "## Reproduce",
        "",
        "Each run, with the settings it was made with:",
        "",
        "```bash",
    ]
    for kind in KINDS:
        lines.append(f"# {kind}")
        lines.append(_command(result.runs[kind].record))
    lines += [
        "```",
        "",
        "or all of them, then this tree and MLPerf's checker:",
        "",
        "```bash",
        "python -m ckvision submission run --work-dir WORK --scenarios "
        f"{result.scenario} --division {division} --submitter {shlex.quote(submitter)} "
        f"--system {shlex.quote(system)} --system-desc system.json "
        "--model MODEL.onnx --dataset DATASET_DIR",
        "```",
        "",
    ]
    return "\n".join(lines)


def _copy_source(dest: Path, records: Sequence[Mapping[str, Any]]) -> None:
    import ckvision

    package = Path(ckvision.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if path.is_file() and path.suffix in (".py", ".json") and "__pycache__" not in rel.parts:
            target = dest / "ckvision" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    from ckvision.provenance import code_fingerprint

    made_by: dict[str, set[str]] = {}  # run-code fingerprint -> the scenarios it made
    for record in records:
        fingerprint = str((record.get("provenance") or {}).get("code_sha256"))
        scenario = str((record.get("config") or {}).get("scenario") or "?")
        made_by.setdefault(fingerprint, set()).add(scenario)
    now = code_fingerprint()
    lines = [
        f"- `{fingerprint}`: {', '.join(sorted(scenarios))} "
        + ("(**this copy**)" if fingerprint == now else "(not this copy: check out the "
           "ckvision version with this fingerprint to read the code that made them)")
        for fingerprint, scenarios in sorted(made_by.items())
    ]  # fmt: skip
    _write(
        dest / "README.md",
        "# Source\n\n`ckvision/` is the ck-mlperf-vision package (`python -m ckvision run`, "
        "driving MLPerf LoadGen) as it was when this tree was built; its run-code fingerprint "
        f"(ckvision.provenance.code_fingerprint) is `{now}`.\n\nThe runs' code, by "
        "fingerprint (all runs of one result share one; the builder checks it):\n\n"
        + "\n".join(lines)
        + "\n",
    )


def build_submission(
    runs: Sequence[RecordedRun],
    out: Path,
    *,
    division: str,
    submitter: str,
    system: str,
    system_desc: Path,
    force: bool = False,
    scenarios: Sequence[str] | None = None,
    log: Any = print,
) -> Path:
    """Check ``runs`` and write the tree into ``out``; returns ``out``."""
    for what, value in (("--submitter", submitter), ("--system", system)):
        if not value or not all(c.isalnum() or c in "-_." for c in value) or value[0] == ".":
            raise SubmissionError(f"{what} {value!r}: use letters, digits, '-', '_' and '.'")
    if division not in ("open", "closed"):
        raise SubmissionError(f"--division {division!r}: open or closed")
    out = Path(out)
    full = out.with_name(out.name + FULL_LOGS_SUFFIX)
    if (out.exists() or full.exists()) and not force:
        raise SubmissionError(f"{out} exists; give --force to replace it")
    user = load_user_description(system_desc)
    if scenarios is not None:  # only these results (others may be incomplete)
        runs = [r for r in runs if (r.record.get("config") or {}).get("scenario") in scenarios]
    results = group_results(runs)
    if not results:
        raise SubmissionError("no result to submit in the selected entries")
    for result in results:
        _check_result(result, division)
    verifications = [_verify(r) for r in results]
    records = [run.record for r in results for run in r.runs.values()]
    desc = system_description(
        records, user, division=division, submitter=submitter, system=system, source=system_desc
    )
    with atomic_dir(out) as tmp, atomic_dir(full) as tmp_full:
        top = tmp / division / submitter
        _write(top / "systems" / f"{system}.json", json.dumps(desc, indent=2) + "\n")
        _copy_source(top / "src", records)
        mapping = {r.model: OPEN_MAPPING for r in results if r.model not in MLPERF_BENCHMARK}
        if division == "open" and mapping:
            _write(top / "model_mapping.json", json.dumps(mapping, indent=2) + "\n")
        for result, verified in zip(results, verifications, strict=True):
            rel = Path("results", system, _benchmark(result.model, division), result.scenario)
            _write_result(top / rel, tmp_full / division / submitter / rel, result, verified)
            (top / rel / "README.md").write_text(
                _readme(result, division, submitter, system), encoding="utf-8"
            )
    log(f"submission: wrote {out / division / submitter} ({len(results)} results)")
    log(f"submission: full accuracy logs in {full}")
    return out


def _write_result(
    where: Path, full: Path, result: Result, verified: Mapping[str, Mapping[str, str]]
) -> None:
    logs = result.logs
    perf = result.runs["performance"].record
    for name in (SUMMARY, DETAIL):
        _write(where / "performance" / "run_1" / name, logs["performance"][name])
        _write(where / "accuracy" / name, logs["accuracy"][name])
    accuracy_log = logs["accuracy"][ACCURACY]
    _write(
        where / "accuracy" / "accuracy.txt",
        accuracy_text(result.runs["accuracy"].record, accuracy_log),
    )
    _write(where / "accuracy" / ACCURACY, truncate(accuracy_log))
    _write(full / "accuracy" / ACCURACY, accuracy_log)
    _write(where / "measurements.json", json.dumps(_measurements(perf), indent=2) + "\n")
    user_conf = str((perf.get("logs") or {}).get("user.conf") or "")
    if not user_conf.strip():
        raise SubmissionError(f"{_name(result.runs['performance'])} has no user.conf recorded")
    _write(where / "user.conf", user_conf)
    for test in ("TEST01", "TEST04"):
        for name, text in verified[test].items():
            _write(where / test / name, text)
        for name in (SUMMARY, DETAIL):
            _write(where / test / "performance" / "run_1" / name, logs[test][name])
    _write(where / "TEST01" / "accuracy" / ACCURACY, logs["TEST01"][ACCURACY])
