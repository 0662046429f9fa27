"""Entries written without ck are the entries the real ck (2.6.4) writes, file for file.

The same point is recorded twice: by ``ck add experiment`` (what ``ck benchmark --record``
calls) in a temporary CK_REPOS, and by :func:`record_point`. Every file must exist in both
with the same JSON once uids and timestamps are masked, and both must load into the same
row for ``ckvision results``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ckvision.analysis import load_experiments
from ckvision.errors import ConfigError
from ckvision.experiments.offline_writer import record_point

pytestmark = pytest.mark.timeout(120)
CK = Path(sys.executable).with_name("ck")
NAME = "gpu-reference.test.offline"
TAGS = ["ckvision", "gpu-reference", "offline"]
META = {"ckvision": "gpu-reference", "model": "efficientnet-lite0"}
RECORD = {
    "record_version": 1,
    "config": {"batch_size": 8, "scenario": "Offline"},
    "model": {"name": "efficientnet-lite0"},
    "dataset": {"name": "random", "size": 64},
    "loadgen": {
        "scenario": "Offline",
        "samples_per_second": 1234.5,
        "valid": True,
        "latency_p90_ns": None,
        "percentiles": [50, 90],
    },
    "logs": {"mlperf_log_summary.txt": "MLPerf Results Summary\n"},
    "provenance": {"gpu": {"name": "NVIDIA H200", "driver": "580.159.04"}, "tags": []},
}
FEATURES = {"platform": {"gpu": "NVIDIA H200"}}
CHOICES = {"env": {"CK_BATCH_SIZE": "8"}}
_UID = re.compile(r"[0-9a-f]{16}")


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<time>" if k == "iso_datetime" else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return _UID.sub("<uid>", value) if isinstance(value, str) else value


def _tree(root: Path) -> dict[str, Any]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "ck_lock.txt":
            key = _UID.sub("<uid>", str(path.relative_to(root)))
            text = path.read_text()
            files[key] = _mask(json.loads(text)) if path.suffix == ".json" else _mask(text.strip())
    return files


def _ck_record(tmp_path: Path, points: int) -> Path:
    if not CK.is_file():
        pytest.skip(f"the real ck is not installed beside {sys.executable}")
    env = dict(os.environ, CK_REPOS=str(tmp_path / "repos"), CK_TOOLS=str(tmp_path / "tools"))
    request = {
        "action": "add",
        "module_uoa": "experiment",
        "experiment_uoa": NAME,
        "repo_uoa": "local",
        "sort_keys": "yes",
        "skip_stat_analysis": "yes",
        "process_multi_keys": ["##characteristics#*"],
        "dict": {
            "meta": META,
            "tags": TAGS,
            "features": FEATURES,
            "choices": CHOICES,
            "characteristics_list": [{"run": RECORD}],
        },
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "request.json").write_text(json.dumps(request))
    for _ in range(points):
        args = [str(CK), "add", f"experiment:{NAME}", f"@{tmp_path / 'request.json'}"]
        done = subprocess.run(
            args,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return tmp_path / "repos" / "local" / "experiment"


def _ours(root: Path, points: int) -> Path:
    for _ in range(points):
        record_point(
            root,
            NAME,
            tags=TAGS,
            meta=META,
            characteristics={"run": RECORD},
            features=FEATURES,
            choices=CHOICES,
        )
    return root


@pytest.mark.parametrize("points", [1, 2])
def test_same_files_and_content_as_real_ck(tmp_path: Path, points: int) -> None:
    theirs = _tree(_ck_record(tmp_path / "ck", points))
    ours = _tree(_ours(tmp_path / "ours", points))
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        if name.endswith("updates.json") or ".cm/ck_lock" in name:
            continue
        if "ckp-" in name and points > 1:
            continue  # two points: which uid sorts first differs; compared as a multiset below
        assert ours[name] == theirs[name], name
    their_points = sorted(json.dumps(v, sort_keys=True) for k, v in theirs.items() if "ckp-" in k)
    our_points = sorted(json.dumps(v, sort_keys=True) for k, v in ours.items() if "ckp-" in k)
    assert our_points == their_points
    assert len(ours[f"{NAME}/.cm/updates.json"]["control"]) == points
    assert ours[f"{NAME}/.cm/meta.json"]["points"] == str(points)


def test_results_read_both_alike(tmp_path: Path) -> None:
    theirs = load_experiments([_ck_record(tmp_path / "ck", 1) / NAME])
    ours = load_experiments([_ours(tmp_path / "ours", 1) / NAME])
    drop = ["point", "path"]
    assert ours.drop(columns=drop).to_dict("records") == theirs.drop(columns=drop).to_dict(
        "records"
    )
    assert ours.loc[0, "loadgen.samples_per_second"] == 1234.5


@pytest.mark.parametrize(
    ("name", "tags", "match"),
    [
        ("../escape", TAGS, "entry name"),
        (".hidden", TAGS, "entry name"),
        ("a b", TAGS, "entry name"),
        (NAME, ["ok", "a,b"], "tag 'a,b'"),
        (NAME, [""], "tag ''"),
    ],
)
def test_bad_names_and_tags_refused(tmp_path: Path, name: str, tags: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        record_point(tmp_path, name, tags=tags, meta=META, characteristics={"run": RECORD})
    assert not any(tmp_path.iterdir())


def test_a_stale_ck_lock_is_taken(tmp_path: Path) -> None:
    record_point(tmp_path, NAME, tags=TAGS, meta=META, characteristics={"run": RECORD})
    lock = tmp_path / NAME / ".cm" / "ck_lock.txt"
    lock.write_text("deadbeefdeadbeef\n120\n")
    os.utime(lock, (1, 1))  # written long ago: expired
    record_point(tmp_path, NAME, tags=TAGS, meta=META, characteristics={"run": RECORD})
    assert not lock.exists()
    meta = json.loads((tmp_path / NAME / ".cm" / "meta.json").read_text())
    assert meta["points"] == "2"
