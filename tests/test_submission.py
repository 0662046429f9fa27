"""MLPerf submissions (issue 17): ``submission run|build|check`` with real LoadGen runs of
the tiny model, MLPerf's own checker and compliance scripts from an inference source
tree (``$CKVISION_INFERENCE_SRC``, default /work/inference-src; those tests skip, saying
so, where it is absent).

The short runs (1 s) are honest, so the checker's only errors must be the 600 s rule.
Compliance performance checks compare two runs' speed within 10-20 %; on a loaded
2-core machine a 1 s run can miss that (or stall into an INVALID run), which build
refuses (as it must): the fixture
then makes that scenario's performance and compliance runs again (at most ``ATTEMPTS`` times),
as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckvision.cli import main
from ckvision.data.cache import write_cache
from ckvision.harness.settings import _AUDIT
from ckvision.models.contract import ModelContract
from ckvision.submission import SubmissionError
from ckvision.submission.build import build_submission, select_runs
from ckvision.submission.compliance import (
    verify_test01_accuracy,
    verify_test01_performance,
    verify_test04_performance,
)
from ckvision.submission.system import REQUIRED_FIELDS
from tests.conftest import build_tiny_onnx, tiny_logits

ATTEMPTS = 6  # compliance runs remade at most this often (see the module docstring)
SAMPLES = 1024  # the checker's minimum performance sample count for resnet
_SRC = Path(os.environ.get("CKVISION_INFERENCE_SRC") or "/work/inference-src")
HAVE_SRC = (_SRC / "tools/submission/submission_checker/main.py").is_file()
needs_src = pytest.mark.skipif(
    not HAVE_SRC, reason=f"no mlcommons/inference source at {_SRC} (set CKVISION_INFERENCE_SRC)"
)
SYSTEM = {
    "status": "available",
    "system_type": "edge",
    "system_type_detail": "test VM",
    "number_of_nodes": "1",
    "host_processors_per_node": "1",
    "host_processor_core_count": "2",
    "host_processor_frequency": "",
    "host_processor_caches": "",
    "host_processor_interconnect": "",
    "host_memory_configuration": "VM",
    "host_storage_capacity": "disk",
    "host_storage_type": "virtual disk",
    "host_networking": "none",
    "host_networking_topology": "N/A",
    "host_network_card_count": "1",
    "cooling": "air",
    "hw_notes": "",
    "sw_notes": "",
}
TARGET_QPS = [60000]  # Offline's target; the fixture raises it when a run outruns it
RUN_ARGS = [  # every submission run of these tests (the fixture may raise the target QPS)
    "--threads=1",
    "--workers=1",
    "--batch-size=8",
    f"--target-qps={TARGET_QPS[0]}",
    "--target-latency-ms=0.1",
    "--min-duration-s=1",
]


def _tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        if item.is_file():
            digest.update(str(item.relative_to(path)).encode() + item.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small model (with its contract beside it) and a 1,024-sample dataset."""
    root = tmp_path_factory.mktemp("submission-assets")
    contract = ModelContract(
        name="tiny", image_size=16, resize_size=16, num_classes=10, output_name="logits"
    )
    (root / "model").mkdir()
    # ballast: ~0.1 ms a sample, so what a TEST01 run adds per sample (its logged outputs)
    # stays inside the 10 % band, as it does for real models
    model = build_tiny_onnx(root / "model" / "tiny.onnx", ballast=512)
    (root / "model" / "model.json").write_text(
        json.dumps({"name": "tiny", "env": contract.to_env()}), encoding="utf-8"
    )
    images = np.random.default_rng(5).normal(size=(SAMPLES, 3, 16, 16)).astype(np.float32)
    labels = tiny_logits(images).argmax(axis=1)
    items = [(f"img{i:04d}.png", int(label)) for i, label in enumerate(labels)]
    write_cache(
        root / "data",
        name="tiny-1024",
        kind="sample",
        source="generated",
        contract=contract,
        items=items,
        load=lambda f: images[int(f[3:7])],
    )
    system = root / "system.json"
    system.write_text(json.dumps(SYSTEM), encoding="utf-8")
    return {"model": model, "data": root / "data", "system": system, "root": root}


def _run(work: Path, assets: dict[str, Path], *extra: str) -> int:
    return main(
        [
            "submission",
            "run",
            f"--work-dir={work}",
            f"--model={assets['model']}",
            f"--dataset={assets['data']}",
            *RUN_ARGS,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def work(assets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short real runs of both scenarios, whose compliance checks pass."""
    os.environ["CK_PROGRESS"] = "off"
    work = tmp_path_factory.mktemp("submission-work")
    last = ""
    failed: set[str] = set()  # the entries whose checks failed, over every attempt
    for _attempt in range(ATTEMPTS):
        assert _run(work, assets, "--no-build") == 0
        try:
            build_submission(
                select_runs([work / "experiment"], ["submission"]),
                work / "probe",
                division="open",
                submitter="ckvision",
                system="vm",
                system_desc=assets["system"],
                force=True,
            )
            return work
        except SubmissionError as err:
            text = last = str(err)
            match = re.search(r"entry (submission\.tiny\.(\w+)\.(performance|test0[14]))", text)
            if not match or not ("compliance" in text or "INVALID" in text):
                raise
            failed.add(match.group(1))
            if "Increase expected QPS" in text:  # a quiet machine outran the target: raise it
                at = RUN_ARGS.index(f"--target-qps={TARGET_QPS[0]}")
                TARGET_QPS[0] *= 4
                RUN_ARGS[at] = f"--target-qps={TARGET_QPS[0]}"
                # its accuracy run is redone too (another setting): one point per entry
                shutil.rmtree(work / "experiment" / f"submission.tiny.{match.group(2)}.accuracy")
            # remake the three timed runs of that scenario (an outlier performance run
            # would fail every new compliance run compared with it)
            for kind in ("performance", "test01", "test04"):
                shutil.rmtree(work / "experiment" / f"submission.tiny.{match.group(2)}.{kind}")
    # one check failing on every attempt is our SUT, not the machine (seen: Offline's
    # TEST04 after a change that slowed the reference run by 16%, reported as a skip)
    assert len(failed) > 1, f"the same check failed on all {ATTEMPTS} attempts: {last[:300]}"
    # 1 s runs on a busy shared machine: the timing bands are MLPerf's and not ours to widen
    pytest.skip(
        f"compliance performance missed its 10-20 % band {ATTEMPTS} times: machine too "
        f"noisy (last: {last[:300]})"
    )


def _build(work: Path, out: Path, system: Path, *extra: str, entries: Path | None = None) -> int:
    return main(
        [
            "submission",
            "build",
            str(entries or work / "experiment"),
            "--tags=submission",
            f"--out={out}",
            "--submitter=ckvision",
            "--system=vm",
            f"--system-desc={system}",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def tree(work: Path, assets: dict[str, Path]) -> Path:
    out = work / "tree"
    assert _build(work, out, assets["system"]) == 0
    return out


RESULT = Path("open/ckvision/results/vm/tiny")


@pytest.mark.timeout(240)
def test_tree_layout_and_contents(tree: Path, work: Path) -> None:
    top = tree / "open" / "ckvision"
    system = json.loads((top / "systems" / "vm.json").read_text())
    assert set(REQUIRED_FIELDS) <= set(system)
    assert all(isinstance(v, str) for v in system.values())  # "0", never 0
    assert system["accelerators_per_node"] == "0" and system["division"] == "open"
    assert not any(v.strip().upper() == "TBD" for v in system.values())
    assert json.loads((top / "model_mapping.json").read_text()) == {"tiny": "resnet"}
    assert (top / "src" / "ckvision" / "harness" / "run.py").is_file()
    from ckvision.provenance import code_fingerprint

    note = (top / "src" / "README.md").read_text()  # the runs' code, named by fingerprint
    assert f"- `{code_fingerprint()}`: Offline, SingleStream (**this copy**)" in note
    for scenario in ("Offline", "SingleStream"):
        res = tree / RESULT / scenario
        measurements = json.loads((res / "measurements.json").read_text())
        for key in (
            "input_data_types",
            "retraining",
            "starting_weights_filename",
            "weight_data_types",
            "weight_transformations",
        ):
            assert measurements[key]
        assert "ckvision run" in (res / "README.md").read_text()
        assert f"tiny.{scenario}." in (res / "user.conf").read_text()
        full = (
            work
            / "tree-full-accuracy-logs"
            / RESULT
            / scenario
            / "accuracy"
            / "mlperf_log_accuracy.json"
        ).read_text()
        text = (res / "accuracy" / "accuracy.txt").read_text()
        assert re.match(r"^accuracy=\d+\.\d{3}%, good=\d+, total=1024$", text.splitlines()[0])
        assert f"hash={hashlib.sha256(full.encode()).hexdigest()}" in text.splitlines()
        truncated = (res / "accuracy" / "mlperf_log_accuracy.json").read_text()
        assert len(full) > 10 * 1024 and len(truncated) < 10 * 1024
        assert truncated == full[:4096] + "\n\n...\n\n" + full[-4096:]
        for test, files in (
            ("TEST01", ("verify_accuracy.txt", "verify_performance.txt")),
            ("TEST04", ("verify_performance.txt",)),
        ):
            for name in files:
                assert "TEST PASS" in (res / test / name).read_text().splitlines()
            assert (res / test / "performance" / "run_1" / "mlperf_log_detail.txt").is_file()
        assert (res / "TEST01" / "accuracy" / "mlperf_log_accuracy.json").is_file()


@needs_src
@pytest.mark.timeout(240)
def test_checker_reports_only_the_600s_rule(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "submission",
            "check",
            str(tree),
            f"--inference-src={_SRC}",
            "--skip-dataset-size-check",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    errors = [line for line in out.splitlines() if " ERROR]" in line]
    duration = [e for e in errors if "Test duration less than 600s in user config" in e]
    assert len(duration) == 2  # the two performance logs (open division: no compliance)
    consequences = ("Some performance checks Checks failed", "NoResults", "SUMMARY: ")
    assert [e for e in errors if e not in duration and not any(c in e for c in consequences)] == []
    assert "checker v6.1 verdict: submission has errors" in out


@pytest.mark.timeout(120)
def test_build_is_fast(work: Path, assets: dict[str, Path]) -> None:
    started = time.perf_counter()
    assert _build(work, work / "fast", assets["system"]) == 0
    assert time.perf_counter() - started < 5.0


@pytest.mark.timeout(240)
def test_run_again_reuses_every_valid_run(
    work: Path, assets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree_hash(work / "experiment")
    assert _run(work, assets, "--no-build") == 0
    out = capsys.readouterr().out
    assert out.count("reusing the valid run") == 8
    assert _tree_hash(work / "experiment") == before


# --- refusals: copies of the recorded entries, one thing changed --------------------


def _copy(work: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "experiment"
    shutil.copytree(work / "experiment", dest)
    return dest


def _edit(experiment: Path, entry: str, change: Any) -> None:
    (point,) = (experiment / entry).glob("ckp-*.0001.json")
    data = json.loads(point.read_text())
    change(data["characteristics_list"][0]["run"])
    point.write_text(json.dumps(data))


def _detail(old: str, new: str) -> Any:
    def change(record: dict[str, Any]) -> None:
        text = record["logs"]["mlperf_log_detail.txt"]
        assert old in text
        record["logs"]["mlperf_log_detail.txt"] = text.replace(old, new)

    return change


def _refused(
    experiment: Path, assets: dict[str, Path], tmp_path: Path, capsys: Any, *extra: str
) -> str:
    before = _tree_hash(experiment)
    code = _build(experiment, tmp_path / "out", assets["system"], *extra, entries=experiment)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith("ckvision: error: ")
    assert not (tmp_path / "out").exists()
    assert _tree_hash(experiment) == before  # nothing recorded touched
    return err


def _seed(work: Path) -> str:
    point = next((work / "experiment" / "submission.tiny.offline.test01").glob("ckp-*.0001.json"))
    text = json.loads(point.read_text())["characteristics_list"][0]["run"]["logs"][
        "mlperf_log_detail.txt"
    ]
    match = re.search(r'"key": "effective_qsl_rng_seed", "value": (\d+)', text)
    assert match
    return match.group(1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("entry", "what", "expect"),
    [
        ("submission.tiny.offline.performance", "invalid", "INVALID"),
        ("submission.tiny.offline.test04", "model", "differs from the performance run"),
        ("submission.tiny.singlestream.test01", "dataset", "in dataset"),
        ("submission.tiny.offline.accuracy", "preprocessing", "in preprocessing"),
        ("submission.tiny.offline.test01", "code", "in code version"),
        ("submission.tiny.offline.test01", "seeds", "in LoadGen seeds"),
        ("submission.tiny.offline.test04", "missing", "no TEST04 compliance test"),
        (
            "submission.tiny.singlestream.test01",
            "failing",
            "compliance TEST01 accuracy check failed",
        ),
        ("submission.tiny.offline.test01", "nologs", "has no MLPerf logs"),
        ("submission.tiny.offline.performance", "corrupt-log", "not a LoadGen detail log"),
        ("submission.tiny.offline.test04", "corrupt-point", "not valid JSON"),
    ],
)
def test_refusals_name_the_entry(
    work: Path,
    assets: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    entry: str,
    what: str,
    expect: str,
) -> None:
    experiment = _copy(work, tmp_path)

    def failing(record: dict[str, Any]) -> None:
        log = json.loads(record["logs"]["mlperf_log_accuracy.json"])
        log[0]["data"] = "0000803F" if log[0]["data"] != "0000803F" else "00000040"
        record["logs"]["mlperf_log_accuracy.json"] = json.dumps(log)

    changes = {
        "invalid": _detail(
            '"result_validity", "value": "VALID"', '"result_validity", "value": "INVALID"'
        ),
        "model": lambda r: r["model"].update(sha256="0" * 64),
        "dataset": lambda r: r["dataset"].update(name="other-set"),
        "preprocessing": lambda r: r["dataset"]["preprocessing"].update(crop=1000),
        "code": lambda r: r["provenance"].update(code_sha256="f" * 64),
        "seeds": _detail(f'"value": {_seed(work)}', '"value": 1'),
        "failing": failing,
        "nologs": lambda r: r.pop("logs"),
        "corrupt-log": lambda r: r["logs"].update({"mlperf_log_detail.txt": "garbage\n"}),
    }
    if what == "missing":
        shutil.rmtree(experiment / entry)
    elif what == "corrupt-point":
        (point,) = (experiment / entry).glob("ckp-*.0001.json")
        point.write_text(point.read_text()[:100])
    else:
        _edit(experiment, entry, changes[what])
    err = _refused(experiment, assets, tmp_path, capsys)
    assert expect in err
    if what not in ("missing",):
        assert entry in err


@pytest.mark.timeout(120)
def test_closed_division_refusals(
    work: Path, assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = _copy(work, tmp_path)
    err = _refused(experiment, assets, tmp_path, capsys, "--division=closed")
    assert "closed division needs min duration (ms) >= 600000" in err
    for path in experiment.glob("*/ckp-*.0001.json"):  # as if the minimums were met
        data = json.loads(path.read_text())
        logs = data["characteristics_list"][0]["run"]["logs"]
        logs["mlperf_log_detail.txt"] = re.sub(
            r'"effective_min_duration_ms", "value": \d+',
            '"effective_min_duration_ms", "value": 600000',
            re.sub(
                r'"effective_samples_per_query", "value": \d+',
                '"effective_samples_per_query", "value": 24576',
                logs["mlperf_log_detail.txt"],
            ),
        )
        path.write_text(json.dumps(data))
    err = _refused(experiment, assets, tmp_path, capsys, "--division=closed")
    assert "closed-division accuracy run covers 50000 samples, this one 1024" in err
    # a JPEG-in run (preprocessing inside the measured path) is never a closed result
    _edit(
        experiment,
        "submission.tiny.offline.test04",
        lambda r: r["dataset"].update(preprocessing_in_measured_path=True, input_format="jpeg"),
    )
    err = _refused(experiment, assets, tmp_path, capsys, "--division=closed")
    assert "submission.tiny.offline.test04" in err and "JPEG-in run" in err


# --- bad input ----------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("desc", "expect"),
    [
        ({**SYSTEM, "gpu_brand": "x"}, "unknown field(s) gpu_brand"),
        ({k: v for k, v in SYSTEM.items() if k != "cooling"}, "missing cooling"),
        ({**SYSTEM, "host_storage_type": ""}, "empty host_storage_type"),
        ({**SYSTEM, "host_memory_configuration": "TBD"}, "placeholder"),
        ({**SYSTEM, "status": "soon"}, "status 'soon'"),
        ({**SYSTEM, "system_type": "datacenter"}, "system_type 'datacenter'"),
        ([1, 2], "want a JSON object"),
    ],
)
def test_bad_system_description(
    work: Path,
    assets: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    desc: Any,
    expect: str,
) -> None:
    path = tmp_path / "system.json"
    path.write_text(json.dumps(desc))
    before = _tree_hash(work / "experiment")
    assert _build(work, tmp_path / "out", path) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err
    assert not (tmp_path / "out").exists()
    assert _tree_hash(work / "experiment") == before


@pytest.mark.timeout(120)
def test_existing_output_needs_force(
    work: Path, assets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert _build(work, out, assets["system"]) != 0
    assert "exists; give --force" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep"
    assert _build(work, out, assets["system"], "--force") == 0
    assert not (out / "mine.txt").exists() and (out / "open").is_dir()
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left behind


@pytest.mark.timeout(60)
def test_checker_that_crashes_is_one_line(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "broken-inference"  # a fake checker: the real one does not crash here
    checker = fake / "tools" / "submission" / "submission_checker" / "main.py"
    checker.parent.mkdir(parents=True)
    checker.write_text("raise RuntimeError('checker bug')\n")
    assert main(["submission", "check", str(tree), f"--inference-src={fake}"]) == 7
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "crashed" in err and "checker bug" in err
    assert main(["submission", "check", str(tree), f"--inference-src={tmp_path}"]) != 0
    assert "not an mlcommons/inference tree" in capsys.readouterr().err


# --- compliance: ours == MLPerf's, and the official audit configs -------------------


def _conf(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            out[key] = value
    return out


@needs_src
def test_audit_configs_match_upstream(tmp_path: Path) -> None:
    ours = {t: _conf_lines(lines) for t, lines in _AUDIT.items()}
    assert ours["TEST01"] == _conf(_SRC / "compliance/TEST01/resnet50/audit.config")
    upstream04 = {
        k: v
        for k, v in _conf(_SRC / "compliance/TEST04/audit.config").items()
        if k.startswith("*.")
    }
    assert ours["TEST04"] == upstream04


def _conf_lines(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        key, value = (s.strip() for s in line.split("#", 1)[0].split("=", 1))
        out[key] = value
    return out


def _logs(work: Path, entry: str) -> dict[str, str]:
    point = next((work / "experiment" / entry).glob("ckp-*.0001.json"))
    return dict(json.loads(point.read_text())["characteristics_list"][0]["run"]["logs"])


def _mlperf_verify(test: str, results: Path, compliance: Path, tmp_path: Path) -> dict[str, bool]:
    out = tmp_path / f"out-{test}"
    cwd = tmp_path / f"cwd-{test}"
    cwd.mkdir()
    args = [sys.executable, str(_SRC / "compliance" / test / "run_verification.py")]
    args += ["-r", str(results), "-c", str(compliance), "-o", str(out)]
    if test == "TEST01":
        args += ["--dtype", "float32"]  # our accuracy log holds float32 class ids
    subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    return {
        name: "TEST PASS" in (out / test / name).read_text()
        for name in ("verify_accuracy.txt", "verify_performance.txt")
        if (out / test / name).is_file()
    }


def _layout(tmp_path: Path, name: str, reference: dict[str, str], acc: str) -> Path:
    root = tmp_path / name
    (root / "performance" / "run_1").mkdir(parents=True)
    (root / "accuracy").mkdir()
    for log in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        (root / "performance" / "run_1" / log).write_text(reference[log])
    (root / "accuracy" / "mlperf_log_accuracy.json").write_text(acc)
    return root


def _compliance_dir(tmp_path: Path, name: str, logs: dict[str, str]) -> Path:
    root = tmp_path / name
    root.mkdir()
    for log, text in logs.items():
        if log.startswith("mlperf_log_"):
            (root / log).write_text(text)
    return root


def _scaled(logs: dict[str, str], factor: float) -> dict[str, str]:
    """The same logs with the run's score multiplied by ``factor`` (a faster/slower run)."""
    out = dict(logs)

    def scale(match: re.Match[str]) -> str:
        return f"{match.group(1)}{float(match.group(2)) * factor:.6g}"

    keys = "result_samples_per_second|early_stopping_latency_ss"
    out["mlperf_log_detail.txt"] = re.sub(
        rf'("key": "(?:{keys})", "value": )([\d.e+]+)', scale, logs["mlperf_log_detail.txt"]
    )
    out["mlperf_log_summary.txt"] = re.sub(
        r"((?:Samples per second|Early stopping 90.0th percentile estimate)\s*: )([\d.e+]+)",
        scale,
        logs["mlperf_log_summary.txt"],
    )
    return out


@needs_src
@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", ["offline", "singlestream"])
@pytest.mark.parametrize(
    "case", ["pass", "accuracy-mismatch", "test-faster", "test-slower", "test-invalid"]
)
def test_our_verification_agrees_with_mlperf(
    work: Path, tmp_path: Path, scenario: str, case: str
) -> None:
    perf = _logs(work, f"submission.tiny.{scenario}.performance")
    acc = _logs(work, f"submission.tiny.{scenario}.accuracy")["mlperf_log_accuracy.json"]
    test01 = dict(perf)  # the reference's own numbers: a pass by construction
    test01["mlperf_log_accuracy.json"] = _logs(work, f"submission.tiny.{scenario}.test01")[
        "mlperf_log_accuracy.json"
    ]
    test04 = dict(perf)
    if case == "accuracy-mismatch":
        log = json.loads(test01["mlperf_log_accuracy.json"])
        log[0]["data"] = "0000803F" if log[0]["data"] != "0000803F" else "00000040"
        test01["mlperf_log_accuracy.json"] = json.dumps(log)
    elif case in ("test-faster", "test-slower"):
        latency = scenario == "singlestream"
        faster = case == "test-faster"
        factor = (0.5 if faster else 2.0) if latency else (2.0 if faster else 0.5)
        test01 = {
            **_scaled(test01, factor),
            "mlperf_log_accuracy.json": test01["mlperf_log_accuracy.json"],
        }
        test04 = _scaled(test04, factor)
    elif case == "test-invalid":
        for logs in (test01, test04):
            logs["mlperf_log_detail.txt"] = logs["mlperf_log_detail.txt"].replace(
                '"result_validity", "value": "VALID"', '"result_validity", "value": "INVALID"'
            )
            logs["mlperf_log_summary.txt"] = logs["mlperf_log_summary.txt"].replace(
                "Result is : VALID", "Result is : INVALID"
            )
    results = _layout(tmp_path, "results", perf, acc)
    theirs01 = _mlperf_verify("TEST01", results, _compliance_dir(tmp_path, "c01", test01), tmp_path)
    theirs04 = _mlperf_verify("TEST04", results, _compliance_dir(tmp_path, "c04", test04), tmp_path)
    ours = {
        "TEST01 accuracy": verify_test01_accuracy(acc, test01["mlperf_log_accuracy.json"]).passed,
        "TEST01 performance": verify_test01_performance(
            perf["mlperf_log_detail.txt"], test01["mlperf_log_detail.txt"]
        ).passed,
        "TEST04 performance": verify_test04_performance(
            perf["mlperf_log_summary.txt"], test04["mlperf_log_summary.txt"]
        ).passed,
    }
    mlperf = {
        "TEST01 accuracy": theirs01["verify_accuracy.txt"],
        "TEST01 performance": theirs01["verify_performance.txt"],
        "TEST04 performance": theirs04["verify_performance.txt"],
    }
    assert ours == mlperf
    if case == "pass":
        assert all(ours.values())
    else:
        assert not all(ours.values())


@pytest.fixture(autouse=True, scope="module")
def _progress_off() -> Iterator[None]:
    old = os.environ.get("CK_PROGRESS")
    os.environ["CK_PROGRESS"] = "off"
    yield
    if old is None:
        os.environ.pop("CK_PROGRESS", None)
    else:
        os.environ["CK_PROGRESS"] = old


# --- the inference source: git clone at a pinned commit (CK package's installer) ------


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(  # noqa: S603
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


@pytest.fixture()
def fake_inference_repo(tmp_path: Path) -> tuple[Path, str]:
    """A local git repository laid out like mlcommons/inference (checker path only)."""
    repo = tmp_path / "inference.git-src"
    checker = repo / "tools" / "submission" / "submission_checker" / "main.py"
    checker.parent.mkdir(parents=True)
    checker.write_text("print('SUMMARY: submission looks OK')\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=repo)
    first = _git("rev-parse", "HEAD", cwd=repo)
    checker.write_text("raise SystemExit('second commit')\n")
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two", cwd=repo)
    return repo, first


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scheme", ["path", "file"])
def test_install_source_at_pinned_commit(
    fake_inference_repo: tuple[Path, str],
    tmp_path: Path,
    tree: Path,
    scheme: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, first = fake_inference_repo
    url = str(repo) if scheme == "path" else f"file://{repo}"
    dest = tmp_path / "installed"
    argv = ["submission", "install-source", f"--install-dir={dest}", f"--url={url}"]
    assert main([*argv, f"--commit={first[:10]}"]) == 0
    marker = json.loads((dest / "ckvision-inference-source.json").read_text())
    assert marker["commit"] == first and marker["url"] == url
    assert "looks OK" in (dest / "src" / "tools/submission/submission_checker/main.py").read_text()
    assert main([*argv, f"--commit={first[:10]}"]) == 0  # idempotent
    # the checker found through CK's variable (what the soft entry sets); ours, which a
    # developer with the real source exports for the tests above, would come first
    monkeypatch.delenv("CKVISION_INFERENCE_SRC", raising=False)
    monkeypatch.setenv("CK_ENV_MLPERF_INFERENCE", str(dest / "src"))
    assert main(["submission", "check", str(tree)]) == 0
    assert "checker v6.1 verdict: submission looks OK" in capsys.readouterr().out
    assert main([*argv, "--commit=0123456789"]) != 0
    assert "git checkout failed" in capsys.readouterr().err
    assert main([*argv[:-1], "--url=/x;touch /tmp/owned", "--commit=abcdef1"]) != 0
    assert "use https://, file:// or a path" in capsys.readouterr().err
    assert marker == json.loads((dest / "ckvision-inference-source.json").read_text())


@pytest.mark.timeout(120)
def test_build_of_chosen_scenarios_ignores_an_incomplete_other(
    work: Path, assets: dict[str, Path], tmp_path: Path
) -> None:
    experiment = _copy(work, tmp_path)
    shutil.rmtree(experiment / "submission.tiny.offline.test04")
    runs = select_runs([experiment], ["submission"])
    with pytest.raises(SubmissionError, match="no TEST04 compliance test"):
        build_submission(
            runs,
            tmp_path / "all",
            division="open",
            submitter="s",
            system="vm",
            system_desc=assets["system"],
        )
    build_submission(
        runs,
        tmp_path / "ss",
        division="open",
        submitter="s",
        system="vm",
        system_desc=assets["system"],
        scenarios=["SingleStream"],
    )
    assert [p.name for p in (tmp_path / "ss/open/s/results/vm/tiny").iterdir()] == ["SingleStream"]


def test_a_setting_added_after_a_run_counts_as_its_default_when_reusing() -> None:
    """A run recorded before the settings table grew used the new setting's default: it is
    reused; a recorded value that differs, or a setting the table no longer has, is not."""
    from ckvision.config import RunConfig
    from ckvision.submission.runner import _same_settings

    config = RunConfig(batch_size=4)
    recorded = config.as_record()
    older = {k: v for k, v in recorded.items() if k != "preprocess_prefetch"}  # made before it
    assert _same_settings(recorded, config)
    assert _same_settings(older, config)
    assert not _same_settings({**recorded, "batch_size": 8}, config)
    assert not _same_settings({**older, "batch_size": 8}, config)
    assert not _same_settings({**recorded, "gone_setting": 1}, config)
    assert not _same_settings(older, config.with_(preprocess_prefetch=2))
