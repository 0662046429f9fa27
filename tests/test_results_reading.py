"""Reading recorded points: a corrupt or malformed point is skipped with one warning naming
its file; every other point still loads, in load_experiments and in ``ckvision results``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ckvision.analysis import load_experiments
from ckvision.experiments.entries import SkippedPointWarning


def _record(qps: float) -> dict[str, object]:
    return {
        "record_version": 1,
        "loadgen": {
            "scenario": "Offline",
            "mode": "PerformanceOnly",
            "samples_per_second": qps,
            "result_validity": "VALID",
        },
        "config": {"batch_size": 4},
        "model": {"name": "tiny"},
        "dataset": {"name": "d"},
        "backend": {"name": "null"},
        "accuracy": None,
        "logs": {},
    }


def _point(qps: float) -> str:
    return json.dumps({"characteristics_list": [{"run": _record(qps)}]})


# file name -> contents; None marks a good point
BAD_POINTS = {
    "ckp-0000000000000002.0001.json": '{"characteristics_list": [{"run": {"record_ver',
    "ckp-0000000000000003.0001.json": "[1, 2, 3]",
    "ckp-0000000000000004.0001.json": json.dumps({"characteristics_list": [{"run": "x"}]}),
    "ckp-0000000000000005.0001.json": json.dumps({"characteristics_list": []}),
    "ckp-0000000000000006.0001.json": json.dumps(
        {"characteristics_list": [{"run": {**_record(1.0), "loadgen": "broken"}}]}
    ),
    "ckp-0000000000000007.0001.json": b"\xff\xfe not utf-8",
}


@pytest.fixture()
def entry(tmp_path: Path) -> Path:
    entry = tmp_path / "experiment" / "mixed"
    (entry / ".cm").mkdir(parents=True)
    (entry / ".cm" / "meta.json").write_text(json.dumps({"tags": ["ckvision", "t"]}))
    (entry / "ckp-0000000000000001.0001.json").write_text(_point(100.0))
    (entry / "ckp-0000000000000008.0001.json").write_text(_point(200.0))
    (entry / "ckp-0000000000000001.flat.json").write_text("not ours, not a point")
    for name, text in BAD_POINTS.items():
        path = entry / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return entry


def test_load_experiments_skips_each_bad_point_with_one_warning(entry: Path) -> None:
    messages: list[str] = []
    frame = load_experiments([entry], ["ckvision"], warn=messages.append)
    assert sorted(frame["loadgen.samples_per_second"]) == [100.0, 200.0]
    assert len(messages) == len(BAD_POINTS)
    for name in BAD_POINTS:
        assert sum(str(entry / name) in m for m in messages) == 1, (name, messages)
    assert all("\n" not in m for m in messages)


def test_default_warning_is_a_python_warning(entry: Path) -> None:
    with pytest.warns(SkippedPointWarning) as caught:
        frame = load_experiments([entry])
    assert len(frame) == 2 and len(caught) == len(BAD_POINTS)


def test_corrupt_entry_meta_is_named_and_its_points_still_load(entry: Path) -> None:
    (entry / ".cm" / "meta.json").write_text("{")
    messages: list[str] = []
    assert len(load_experiments([entry], warn=messages.append)) == 2
    assert any(str(entry / ".cm" / "meta.json") in m for m in messages)


def test_ckvision_results_shows_the_rest_and_exits_zero(entry: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ckvision", "results", str(entry)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("ckvision: warning:")]
    assert len(warnings) == len(BAD_POINTS)
    assert "100" in out.stdout and "200" in out.stdout
    # no accuracy in these runs: its columns read "-", as every missing value does
    assert "None" not in out.stdout and " - " in out.stdout


def test_ckvision_results_with_only_bad_points_fails_with_one_line(tmp_path: Path) -> None:
    entry = tmp_path / "bad"
    entry.mkdir()
    (entry / "ckp-0000000000000002.0001.json").write_text("{")
    out = subprocess.run(
        [sys.executable, "-m", "ckvision", "results", str(entry)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("ckvision: warning: skipping experiment point")
    assert lines[1].startswith("ckvision: error: no recorded runs found")


@pytest.mark.timeout(30)
def test_a_whole_experiment_folder_with_ck_alias_files_lists_its_entries(tmp_path: Path) -> None:
    """ck keeps its name<->uid aliases in ``experiment/.cm/``: that folder is not an entry."""
    from ckvision.experiments.entries import find_entries, iter_runs
    from ckvision.experiments.offline_writer import record_point

    root = tmp_path / "experiment"
    for name, qps in (("a", 10.0), ("b", 20.0)):
        record_point(root, name, tags=["t"], meta={}, characteristics={"run": _record(qps)})
    assert (root / ".cm").is_dir()  # the alias files
    entries = find_entries([root], tags=["t"])
    assert [e.name for e in entries] == ["a", "b"]
    assert sorted(r.record["loadgen"]["samples_per_second"] for r in iter_runs(entries)) == [
        10.0,
        20.0,
    ]
