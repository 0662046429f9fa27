"""Living next to ck-env, ck-mlperf and ck-tensorrt, and speaking their contracts.

Fast checks read our entries and the upstream facts (tests/data/ck-upstream); the slow
ones drive the real ck 2.6.4 in the session's ``ck_world`` (stand-in upstream repositories
registered next to ours), with stdin closed so any interactive question fails the test.
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
from ck_upstream import UPSTREAM_PROGRAM, upstream_entries
from ckcli import CK, ck

from ckvision.backends.registry import BACKENDS
from ckvision.config import RunConfig
from ckvision.errors import ConfigError
from ckvision.experiments.record import mlperf_submission_keys
from ckvision.models.contract import ModelContract

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = f"program:{BACKENDS['onnxruntime'].program}"  # the registry's, not a copy
# Program names users type: the same alias upstream, addressed as ck-mlperf-vision:program:X.
SHARED_PROGRAM_NAMES = {("program", "image-classification-tensorrt-loadgen-py")}
# Owned by the data-layout branch (dataset soft entries are renamed there).
PENDING_ELSEWHERE: set[tuple[str, str]] = set()  # none left
PROMPTS = ("More than one environment found", "Please select", "Select one of the options")


def our_entries() -> dict[tuple[str, str], str]:
    """(module, alias) -> uid for every CK entry in this repository."""
    found: dict[tuple[str, str], str] = {}
    for alias_file in ROOT.glob("*/.cm/alias-a-*"):
        module = alias_file.parent.parent.name
        if (alias_file.parent.parent / alias_file.name[len("alias-a-") :]).is_dir():
            found[(module, alias_file.name[len("alias-a-") :])] = alias_file.read_text().strip()
    return found


# ---------------------------------------------------------------- fast: entries and metadata


def test_no_entry_shares_an_alias_or_uid_with_an_upstream_entry() -> None:
    upstream = {(e.module, e.alias): e.uid for e in upstream_entries()}
    upstream_uids = {e.uid for e in upstream_entries()}
    ours = our_entries()
    assert ("soft", "lib.python.onnxruntime.ckvision") in ours  # the walk finds entries
    clashes = sorted(
        k for k in ours if k in upstream and k not in SHARED_PROGRAM_NAMES | PENDING_ELSEWHERE
    )
    assert clashes == []
    assert sorted(k for k, uid in ours.items() if uid in upstream_uids) == []


def test_soft_entries_carry_the_upstream_tags_for_the_same_software() -> None:
    upstream = {e.alias: set(e.tags) for e in upstream_entries() if e.module == "soft"}
    pairs = {
        "compiler.python.ckvision": "compiler.python",
        "lib.python.numpy.ckvision": "lib.python.numpy",
        "lib.python.onnxruntime.ckvision": "lib.python.onnxruntime",
        "lib.python.tensorrt.ckvision": "lib.python.tensorrt",
        "model.onnx.ckvision": "model.onnx",
        "model.tensorrt.ckvision": "model.tensorrt",
    }
    for ours, theirs in pairs.items():
        tags = set(json.loads((ROOT / "soft" / ours / ".cm" / "meta.json").read_text())["tags"])
        assert upstream[theirs] <= tags, (ours, upstream[theirs] - tags)


def test_repository_metadata_for_ck_cm_and_mlc_agree() -> None:
    import yaml

    ckr = json.loads((ROOT / ".ckr.json").read_text())
    cmr = yaml.safe_load((ROOT / "cmr.yaml").read_text())
    old_cmr = yaml.safe_load((ROOT / ".cmr.yaml").read_text())
    mlc = yaml.safe_load((ROOT / "meta.yaml").read_text())
    for meta in (cmr, old_cmr, mlc):
        assert (meta["alias"], meta["uid"]) == (ckr["data_alias"], ckr["data_uid"])
    assert ckr["dict"]["shared"] == "git" and ckr["dict"]["url"].endswith(".git")


def test_engine_package_accepts_the_words_of_ck_mlperf_docs() -> None:
    meta = json.loads(
        (ROOT / "package/model-tensorrt-converted-from-onnx/.cm/meta.json").read_text()
    )
    words = set(meta["tags"]) | set(meta["variations"])
    upstream = next(
        e
        for e in upstream_entries()
        if (e.repo, e.alias) == ("ck-tensorrt", "model-tensorrt-convert-from-onnx")
    )
    batches = {v for v in upstream.extra.split(",") if v.startswith("maxbatch.")}
    assert len(batches) == 32 and batches <= set(meta["variations"])
    for typed in (
        "model,tensorrt,resnet,converted-from-onnx,fp32,maxbatch.32",
        "model,tensorrt,resnet50,converted-from-onnx,fp16,maxbatch.15",
    ):
        assert set(typed.split(",")) <= words, typed
    assert meta["variations"]["resnet"]["extra_env"] == meta["variations"]["resnet50"]["extra_env"]


# ---------------------------------------------------------------- fast: ML_MODEL_* meaning


def test_ml_model_env_round_trips_and_reads_ck_mlperf_packages() -> None:
    ours = ModelContract(name="efficientnet-lite0", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    env = ours.to_env()
    assert env["ML_MODEL_COLOUR_CHANNELS_BGR"] == "NO" and "ML_MODEL_MAX_BATCH_SIZE" not in env
    assert ModelContract.from_env(env) == ours
    # ck-mlperf's model-onnx-mlperf-resnet50: means on 0..255, no normalisation, no stds
    resnet = ModelContract.from_env(
        {
            "ML_MODEL_MODEL_NAME": "resnet50",
            "ML_MODEL_GIVEN_CHANNEL_MEANS": "123.68 116.78 103.94",
            "ML_MODEL_COLOUR_CHANNELS_BGR": "YES",
        }
    )
    assert resnet.mean == pytest.approx((123.68 / 255, 116.78 / 255, 103.94 / 255))
    assert resnet.std == pytest.approx((1 / 255,) * 3) and resnet.color_order == "BGR"
    # ck-mlperf's mobilenet: NORMALIZE_DATA to [-1, 1], no mean -> mean = std = 0.5
    mobilenet = ModelContract.from_env(
        {
            "ML_MODEL_MODEL_NAME": "mobilenet",
            "ML_MODEL_NORMALIZE_DATA": "YES",
            "ML_MODEL_SUBTRACT_MEAN": "NO",
        }
    )
    assert mobilenet.mean == pytest.approx((0.5,) * 3)
    assert mobilenet.std == pytest.approx((0.5,) * 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ML_MODEL_SUBTRACT_MEAN": "YES"}, "per-image"),
        ({"ML_MODEL_NORMALIZE_DATA": "maybe"}, "must be YES or NO"),
        ({"ML_MODEL_IMAGE_CHANNELS": "4"}, "IMAGE_CHANNELS"),
    ],
)
def test_ml_model_env_refuses_what_it_cannot_mean(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelContract.from_env({"ML_MODEL_MODEL_NAME": "m", **extra})


def test_records_carry_the_keys_ck_mlperf_submission_tooling_reads(tmp_path: Path) -> None:
    src = ROOT / "tests/data/loadgen/offline"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        (tmp_path / name).write_text((src / name).read_text())
    (tmp_path / "mlperf_log_accuracy.json").write_text("[]")
    (tmp_path / "user.conf").write_text("model.Offline.target_qps = 10\n")
    keys = mlperf_submission_keys(tmp_path)
    assert keys["parsed_summary"]["Result is"] in ("VALID", "INVALID")
    assert keys["parsed_summary"]["Scenario"] == "Offline"
    assert any("Samples per second" in line for line in keys["mlperf_log"]["summary"])
    assert keys["mlperf_log"]["detail"] and keys["mlperf_log"]["accuracy"] == []
    assert keys["mlperf_conf"]["user.conf"] == ["model.Offline.target_qps = 10\n"]


# ---------------------------------------------------------------- slow: the real ck


_LOAD_ALL = """
import json, sys
import ck.kernel as ck
wrong = []
for module, alias, uid in json.load(sys.stdin):
    r = ck.access({"action": "load", "module_uoa": module, "data_uoa": alias})
    if r["return"] or r["data_uid"] != uid:
        wrong.append([module, alias, uid, r.get("data_uid", r.get("error"))])
print(json.dumps(wrong))
"""


@pytest.mark.slow
def test_ck_load_of_every_upstream_alias_returns_the_upstream_uid(
    ck_world: dict[str, str],
) -> None:
    wanted = [
        [e.module, e.alias, e.uid]
        for e in upstream_entries()
        if (e.module, e.alias) not in SHARED_PROGRAM_NAMES | PENDING_ELSEWHERE
    ]
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL],
        input=json.dumps(wanted),
        env=ck_world,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert len(wanted) > 500


@pytest.mark.slow
def test_our_program_runs_next_to_upstream_without_a_question(ck_world: dict[str, str]) -> None:
    run = ck(
        ck_world,
        "run",
        f"ck-mlperf-vision:{PROGRAM}",
        "--env.CK_LOADGEN_DATASET_SIZE=8",
        "--env.CK_LOADGEN_SCENARIO=Offline",
        "--env.CK_BATCH_SIZE=4",
        "--skip_print_timers",
        "--return_error_if_external_fail=yes",
        "--quiet",
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert ", total=8" in run.stdout
    assert not any(p in run.stdout for p in PROMPTS)


@pytest.mark.slow
def test_upstream_style_program_resolves_against_our_env_entries(
    ck_world: dict[str, str],
) -> None:
    run = ck(
        ck_world,
        "run",
        f"ck-mlperf:program:{UPSTREAM_PROGRAM[0]}",
        "--quiet",
        "--skip_print_timers",
        "--return_error_if_external_fail=yes",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "UPSTREAM-ENV-OK efficientnet-lite0 NCHW" in run.stdout


@pytest.mark.slow
def test_upstream_env_entry_is_accepted_and_two_candidates_never_prompt(
    ck_world: dict[str, str],
    tmp_path: Path,
) -> None:
    """An env entry made by ck-env's soft:lib.python.numpy next to ours: --quiet picks one,
    ``ckvision ck-deps`` without --quiet says in one line which tags to add."""
    import numpy

    env = dict(ck_world)
    request = tmp_path / "env.json"
    request.write_text(
        json.dumps(
            {
                "dict": {
                    "tags": ["lib", "python-package", "numpy", "upstream-made", "v1.26"],
                    "soft_uoa": "6a10047b1bcd16fc",
                    "setup": {},
                    "customize": {"version": "1.26", "full_path": numpy.__file__},
                    "env": {
                        "CK_ENV_LIB_NUMPY": str(Path(numpy.__file__).parent),
                        "PYTHONPATH": str(Path(numpy.__file__).parents[1]) + ":$PYTHONPATH",
                    },
                }
            }
        )
    )
    added = ck(env, "add", "local:env:", f"@{request}", "--quiet")
    assert added.returncode == 0, added.stdout + added.stderr
    try:
        check = subprocess.run(
            [sys.executable, "-m", "ckvision", "ck-deps", PROGRAM],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert check.returncode != 0
        lines = [ln for ln in check.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, check.stderr
        assert "lib-python-numpy" in lines[0] and "--dep_add_tags.lib-python-numpy=" in lines[0]
        assert "upstream-made" in lines[0]
        picked = subprocess.run(
            [
                sys.executable,
                "-m",
                "ckvision",
                "ck-deps",
                PROGRAM,
                "--dep-add-tags",
                "lib-python-numpy=upstream-made",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert picked.returncode == 0, picked.stderr
        run = ck(
            env,
            "run",
            PROGRAM,
            "--env.CK_LOADGEN_DATASET_SIZE=8",
            "--dep_add_tags.lib-python-numpy=upstream-made",
            "--skip_print_timers",
            "--return_error_if_external_fail=yes",
            "--quiet",
        )
        assert run.returncode == 0, run.stdout[-3000:]
        assert not any(p in run.stdout for p in PROMPTS)
    finally:
        ck(env, "rm", "local:env:*", "--tags=upstream-made", "--force", "--quiet")


@pytest.mark.slow
def test_a_python_detected_by_ck_env_does_not_replace_ours(
    ck_world: dict[str, str],
    tmp_path: Path,
) -> None:
    """ck-env users have python detected already (often another interpreter): ck-setup
    still detects ours and CK's --quiet choice takes it (our soft sorts first)."""
    fake = tmp_path / "bin" / "python3"  # another interpreter, one that cannot run ckvision
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho not-our-python; exit 3\n")
    fake.chmod(0o755)
    other = str(fake)
    request = tmp_path / "env.json"
    # name and version that CK's own order (sort, name, version; highest first) puts first
    request.write_text(
        json.dumps(
            {
                "data_name": "zz python (ck-env)",
                "dict": {
                    "tags": ["compiler", "python", "lang-python", "upstream-made-python", "v9.9"],
                    "soft_uoa": "45d68512df22fde7",
                    "setup": {},
                    "customize": {"version": "9.9", "full_path": other, "version_split": [9, 9]},
                    "env": {
                        "CK_ENV_COMPILER_PYTHON_FILE": other,
                        "CK_ENV_COMPILER_PYTHON": str(fake.parent),
                    },
                },
            }
        )
    )
    added = ck(ck_world, "add", "local:env:", f"@{request}", "--quiet")
    assert added.returncode == 0, added.stdout
    fake_uid = re.search(r"Entry\s+\(([0-9a-f]{16})", added.stdout).group(1)  # type: ignore[union-attr]
    try:
        again = subprocess.run(
            [sys.executable, "-m", "ckvision", "ck-setup"],
            env=ck_world,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert again.returncode == 0 and "compiler,lang-python already detected" in again.stdout
        run = ck(
            ck_world,
            "run",
            PROGRAM,
            "--env.CK_LOADGEN_DATASET_SIZE=8",
            "--skip_print_timers",
            "--return_error_if_external_fail=yes",
            "--quiet",
        )
        assert run.returncode == 0, run.stdout[-3000:]
        assert ", total=8" in run.stdout
        resolved = re.search(
            r"Dependency \d+ = python .*?environment UID = ([0-9a-f]{16})", run.stdout, re.S
        )
        assert resolved is not None and resolved.group(1) != fake_uid
    finally:
        ck(ck_world, "rm", "local:env:*", "--tags=upstream-made-python", "--force", "--quiet")


@pytest.mark.slow
def test_unknown_variation_tag_is_one_line_and_installs_nothing(
    ck_world: dict[str, str],
) -> None:
    tools = Path(ck_world["CK_TOOLS"])
    before = sorted(p.name for p in tools.iterdir())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ckvision",
            "ck-install",
            "model,tensorrt,mobilenet,converted-from-onnx,fp32",
        ],
        env=ck_world,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "mobilenet" in lines[0], out.stderr
    assert sorted(p.name for p in tools.iterdir()) == before


# ---------------------------------------------------------------- slow: git URLs, CM, MLC


@pytest.fixture(scope="module")
def bare_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bare = tmp_path_factory.mktemp("git") / "ck-mlperf-vision.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(bare)], check=True, timeout=120)
    return bare


@pytest.mark.slow
def test_ck_pull_repo_from_a_bare_clone_then_pull_all(bare_clone: Path, tmp_path: Path) -> None:
    env = dict(os.environ, CK_REPOS=str(tmp_path / "repos"))
    pulled = ck(env, "pull", "repo", f"--url={bare_clone}", "--quiet")
    assert pulled.returncode == 0, pulled.stdout[-2000:]
    where = ck(env, "where", "repo:ck-mlperf-vision").stdout.strip().splitlines()[-1]
    assert (Path(where) / "program/image-classification-onnxruntime-loadgen-py").is_dir()
    meta = json.loads(ck(env, "load", "repo:ck-mlperf-vision", "--out=json").stdout)
    assert meta["dict"]["shared"] == "git" and meta["dict"]["url"] == str(bare_clone)
    # a new upstream commit arrives with `ck pull all`
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare_clone), str(work)], check=True, timeout=60)
    (work / "NEW-COMMIT").write_text("x\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "NEW-COMMIT"], check=True, timeout=60)
    subprocess.run([*git, "commit", "-qm", "new"], check=True, timeout=60)
    subprocess.run([*git, "push", "-q", "origin", "HEAD"], check=True, timeout=60)
    assert ck(env, "pull", "all", "--quiet").returncode == 0
    assert (Path(where) / "NEW-COMMIT").is_file()


_CM = """
import json, os, sys
import cmind
r = cmind.access({"action": "pull", "automation": "repo", "url": sys.argv[1], "quiet": True})
assert r["return"] == 0, r
r = cmind.access({"action": "find", "automation": "repo", "artifact": "ck-mlperf-vision"})
assert r["return"] == 0 and r["list"], r
repo = r["list"][0]
print(json.dumps({"path": repo.path, "uid": repo.meta["uid"], "alias": repo.meta["alias"]}))
"""


@pytest.mark.slow
def test_cm_pulls_the_repository_and_runs_our_program_through_ckx(
    ck_world: dict[str, str],
    bare_clone: Path,
    tmp_path: Path,
) -> None:
    env = dict(ck_world, CM_REPOS=str(tmp_path / "cm"))
    done = subprocess.run(
        [sys.executable, "-c", _CM, f"file://{bare_clone}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    repo = json.loads(done.stdout.strip().splitlines()[-1])
    assert (repo["alias"], repo["uid"]) == ("ck-mlperf-vision", "5bd43cea20ccb212")
    assert (Path(repo["path"]) / "script/ckvision-loadgen-run/meta.yaml").is_file()
    cm = str(Path(sys.executable).with_name("cm"))
    # the CM copy registered with classic CK through ckx, in a CK_REPOS of its own
    own = dict(env, CK_REPOS=str(tmp_path / "ck"))
    added = subprocess.run(
        [cm, "add", "ckx", "repo:ck-mlperf-vision", f"--path={repo['path']}", "--quiet=yes"],
        env=own,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-2000:]
    listed = ck(own, "list", "ck-mlperf-vision:program:*").stdout.split()
    assert "image-classification-onnxruntime-loadgen-py" in listed
    # and our program runs through ckx (in the session's prepared CK_REPOS)
    run = subprocess.run(
        [
            cm,
            "run",
            "ckx",
            PROGRAM,
            "--env.CK_LOADGEN_DATASET_SIZE=8",
            "--skip_print_timers",
            "--quiet=yes",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert ", total=8" in run.stdout
    bad = subprocess.run(
        [cm, "run", "ckx", "program:no-such-program", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert bad.returncode != 0
    assert [ln for ln in bad.stderr.splitlines() if ln.strip()] == [
        "CM error: no program(s) found!"
    ]


@pytest.mark.slow
def test_mlc_pull_then_mlcr_runs_and_records_the_same_experiment_format(
    bare_clone: Path,
    tmp_path: Path,
) -> None:
    from ckvision.analysis import load_experiments

    env = dict(os.environ, MLC_REPOS=str(tmp_path / "mlc"), CK_REPOS=str(tmp_path / "ck"))
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = Path(sys.executable).parent

    def mlc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=400,
            stdin=subprocess.DEVNULL,
        )

    pulled = mlc("mlc", "pull", "repo", f"file://{bare_clone}")
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    run = mlc(
        "mlcr",
        "run,ckvision,loadgen",
        "--scenario=Offline",
        "--batch_size=4",
        "--dataset_size=16",
        "--record_uoa=mlc.test",
        "--quiet",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "accuracy=" in run.stdout and ", total=16" in run.stdout
    entry = tmp_path / "ck" / "local" / "experiment" / "mlc.test"
    frame = load_experiments([entry], ["ckvision", "mlc"])
    assert len(frame) == 1 and frame.iloc[0]["loadgen.scenario"] == "Offline"
    point = json.loads(next(entry.glob("ckp-*.0001.json")).read_text())
    assert "mlperf_log" in point["characteristics_list"][0]["run"]
    assert point["choices"]["env"]["CK_LOADGEN_SCENARIO"] == "Offline"
    again = mlc(
        "mlcr", "run,ckvision,loadgen", "--dataset_size=8", "--record_uoa=mlc.test", "--quiet"
    )  # model and dataset come from MLC's cache; a second point is added
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(entry.glob("ckp-*.0001.json"))) == 2
    caches = sorted((tmp_path / "mlc").glob("local/cache/*"))
    for tags in ("run,ckvision,loadgen,_no-such-model", "run,ckvision,no-such-tag"):
        bad = mlc("mlcr", tags, "--quiet")
        assert bad.returncode != 0
        said = [
            ln
            for ln in (bad.stdout + bad.stderr).splitlines()
            if "no scripts were found with tags" in ln
        ]
        assert len(said) == 1 and "'run', 'ckvision'" in said[0], bad.stderr
    assert sorted((tmp_path / "mlc").glob("local/cache/*")) == caches  # nothing installed
    assert [p.name for p in entry.parent.glob("[!.]*")] == ["mlc.test"]  # nothing recorded


# ---------------------------------------------------------------- ck-mlperf's env contract

# Every variable ck-mlperf's loadgen-py programs, imagenet_helper, tensorrt_helper and
# loadgen_pre/postprocess read (tests/data/ck-upstream facts, sections 1a-1c).
CK_MLPERF_PROGRAM_VARS = """
CK_LOADGEN_SCENARIO CK_LOADGEN_MODE CK_LOADGEN_BUFFER_SIZE CK_LOADGEN_DATASET_SIZE
CK_LOADGEN_COUNT_OVERRIDE CK_LOADGEN_MULTISTREAMNESS CK_LOADGEN_USER_CONF
CK_ENV_MLPERF_INFERENCE_MLPERF_CONF ML_MODEL_MODEL_NAME CK_ENV_TENSORRT_MODEL_FILENAME
CK_ENV_ONNX_MODEL_OUTPUT_LAYER_NAME CK_ENV_TENSORRT_PLUGIN_PATH ML_MODEL_TENSORRT_PLUGIN
ML_MODEL_USE_DLA CK_BATCH_SIZE CK_VERBOSE ML_MODEL_IMAGE_HEIGHT ML_MODEL_IMAGE_WIDTH
ML_MODEL_IMAGE_CHANNELS ML_MODEL_DATA_LAYOUT ML_MODEL_COLOUR_CHANNELS_BGR
ML_MODEL_INPUT_DATA_TYPE ML_MODEL_DATA_TYPE ML_MODEL_MAX_BATCH_SIZE ML_MODEL_NORMALIZE_DATA
ML_MODEL_NORMALIZE_LOWER ML_MODEL_NORMALIZE_UPPER ML_MODEL_SUBTRACT_MEAN
ML_MODEL_GIVEN_CHANNEL_MEANS ML_MODEL_GIVEN_CHANNEL_STDS CK_CAFFE_IMAGENET_SYNSET_WORDS_TXT
CK_ENV_DATASET_IMAGENET_PREPROCESSED_DIR CK_MLPERF_PRE_SET_UP_INTEL_CPU
CK_MLPERF_PRE_USER_CONF_AND_AUDIT_CONFIG CK_LOADGEN_MAX_QUERY_COUNT
CK_LOADGEN_SAMPLES_PER_QUERY CK_LOADGEN_TARGET_LATENCY CK_LOADGEN_TARGET_QPS
CK_LOADGEN_MAX_DURATION_S CK_LOADGEN_OFFLINE_EXPECTED_QPS CK_LOADGEN_MIN_QUERY_COUNT
CK_MLPERF_COMPLIANCE_TEST CK_MLPERF_PRE_SCHINDLER CK_LOADGEN_SIDELOAD_JSON
CK_LOADGEN_INCLUDE_TRACE CK_MLPERF_ACCURACY_IMAGENET_TYPE
""".split()


def test_every_ck_mlperf_variable_is_honoured_or_refused() -> None:
    from ckvision.ck.upstream_env import UPSTREAM_ENV, ck_mlperf_answer, refuse_unsupported
    from ckvision.config import declared_env_vars

    assert [v for v in CK_MLPERF_PROGRAM_VARS if ck_mlperf_answer(v) == "unknown"] == []
    # one answer per variable: the settings table decides for what it declares
    assert sorted(declared_env_vars() & set(UPSTREAM_ENV)) == []
    refuse_unsupported(
        {
            "ML_MODEL_USE_DLA": "",
            "CK_MLPERF_PRE_USER_CONF_AND_AUDIT_CONFIG": "YES",
        }
    )
    RunConfig.from_env({"CK_LOADGEN_INCLUDE_TRACE": "no", "CK_MLPERF_PRE_SET_UP_INTEL_CPU": "off"})
    with pytest.raises(ConfigError, match="ML_MODEL_USE_DLA='1'"):
        refuse_unsupported({"ML_MODEL_USE_DLA": "1"})


@pytest.mark.parametrize(
    ("var", "value", "field", "expected"),
    [
        ("CK_LOADGEN_MAX_QUERY_COUNT", "16", "max_query_count", 16),
        ("CK_LOADGEN_MIN_QUERY_COUNT", "16", "min_query_count", 16),
        ("CK_LOADGEN_SAMPLES_PER_QUERY", "4", "multistreamness", 4),
        ("CK_LOADGEN_OFFLINE_EXPECTED_QPS", "500", "target_qps", 500.0),
    ],
)
@pytest.mark.timeout(120)
def test_ck_mlperf_spellings_reach_the_run(
    var: str,
    value: str,
    field: str,
    expected: Any,
    tmp_path: Path,
    tiny_onnx_model: Path,
    tiny_dataset: Any,
    tiny_contract: ModelContract,
) -> None:
    """ck-mlperf's four spellings are honoured end to end by `ckvision run` (they were refused
    by a second env table before the settings table saw them)."""
    env = dict(
        os.environ,
        **tiny_contract.to_env(),
        CK_LOADGEN_MODE="AccuracyOnly",
        CK_AUTOTUNE="off",
        CK_PROGRESS="off",
        **{var: value},
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ckvision",
            "run",
            "--model",
            str(tiny_onnx_model),
            "--dataset",
            str(tiny_dataset.path),
            "--output-dir",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads((tmp_path / "ckvision-run.json").read_text())
    assert record["config"][field] == expected


def test_ckvision_run_refuses_an_unsupported_ck_mlperf_variable_in_one_line() -> None:
    env = dict(os.environ, ML_MODEL_USE_DLA="YES")
    out = subprocess.run(
        [sys.executable, "-m", "ckvision", "run", "--model", "/nonexistent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "ckvision: error: ML_MODEL_USE_DLA='YES' (ck-mlperf) is not supported: "
        "Jetson DLA is not supported"
    ]


@pytest.mark.slow
def test_registering_an_existing_checkout_in_place_writes_nothing_into_it(
    tmp_path: Path,
) -> None:
    """The README's commands for ck, cm and mlc register a checkout without copying it."""
    clone = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = dict(
        os.environ,
        CK_REPOS=str(tmp_path / "ck"),
        CM_REPOS=str(tmp_path / "cm"),
        MLC_REPOS=str(tmp_path / "mlc"),
    )
    bin_dir = Path(sys.executable).parent
    for cmd in (
        [CK, "add", "repo:ck-mlperf-vision", f"--path={clone}", "--quiet"],
        [str(bin_dir / "cm"), "init", "repo", f"--path={clone}", "--quiet"],
        [str(bin_dir / "mlc"), "add", "repo", str(clone)],
    ):
        done = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        assert done.returncode == 0, (cmd, done.stdout[-1000:], done.stderr[-1000:])
    status = subprocess.run(
        ["git", "-C", str(clone), "status", "--short", "--ignored"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert status.stdout == ""
    assert str(clone) in json.loads((tmp_path / "cm" / "repos.json").read_text())
    assert str(clone) in json.loads((tmp_path / "mlc" / "repos.json").read_text())
    where = ck(env, "where", "repo:ck-mlperf-vision").stdout.strip().splitlines()[-1]
    assert Path(where) == clone


def test_our_programs_only_use_our_own_files_and_hooks() -> None:
    script_uid = (ROOT / "script/.cm/alias-a-loadgen-image-classification").read_text().strip()
    for meta_file in ROOT.glob("program/*/.cm/meta.json"):
        run_time = json.loads(meta_file.read_text())["run_cmds"]["default"]["run_time"]
        for hook in ("pre_process_via_ck", "post_process_via_ck"):
            assert run_time[hook]["data_uoa"] == script_uid  # by UID: no alias lookup
        assert "../" not in run_time["run_cmd_main"]  # nothing relative to another entry


@pytest.mark.slow
def test_the_shared_program_name_is_addressed_per_repository(ck_world: dict[str, str]) -> None:
    name = "program:image-classification-tensorrt-loadgen-py"
    ours = ck(ck_world, "find", f"ck-mlperf-vision:{name}").stdout.strip().splitlines()[-1]
    theirs = ck(ck_world, "find", f"ck-mlperf:{name}").stdout.strip().splitlines()[-1]
    assert Path(ours) == ROOT / "program/image-classification-tensorrt-loadgen-py"
    assert Path(theirs) != Path(ours) and Path(theirs).is_dir()


@pytest.mark.slow
def test_registered_elsewhere_says_a_command_that_works(tmp_path: Path) -> None:
    """Another clone already holds the repo alias: the setup stops with one line naming the
    command that frees it, and that command works as written with stdin closed (ck 2.6.4's
    ``rm repo`` asks unless given ``--force``; ``--quiet`` does not stop the question)."""
    env = dict(os.environ, CK_REPOS=str(tmp_path / "repos"), CK_TOOLS=str(tmp_path / "tools"))
    other = tmp_path / "other-clone"
    other.mkdir()
    assert ck(env, "add", "repo:ck-mlperf-vision", f"--path={other}", "--quiet").returncode == 0
    register = [sys.executable, "-c", "from ckvision.ck.setup import register_repo as r; r()"]

    def setup() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            register,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )

    refused = setup()
    assert refused.returncode != 0
    said = re.search(r"'ck (rm repo:[^']+)'", refused.stderr + refused.stdout)
    assert said, refused.stderr[-2000:]
    freed = ck(env, *said.group(1).split())
    assert freed.returncode == 0, freed.stdout[-2000:] + freed.stderr[-2000:]
    assert other.is_dir()  # "keeps files"
    assert setup().returncode == 0
    where = ck(env, "where", "repo:ck-mlperf-vision")
    assert Path(where.stdout.strip().splitlines()[-1]).resolve() == ROOT


def test_a_full_disk_under_a_ck_record_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """CK's file writer raises OSError on a full disk; through our atomic wrapper it is CK's
    error dict with the one disk-full wording, and nothing is left behind."""
    import errno

    from ckvision.ck.hooks.atomic import _atomic
    from ckvision.fsutil import full_disk_note

    def full(i: dict[str, Any]) -> dict[str, Any]:
        Path(i["text_file"]).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "ckp-1.0001.json"
    result = _atomic(full)({"text_file": str(target), "string": "{}"})
    assert result["return"] == 1
    assert result["error"].startswith(
        f"cannot write {target}; the file system of {tmp_path} is full"
    )
    assert "\n" not in result["error"] and list(tmp_path.iterdir()) == []
    assert full_disk_note(tmp_path) == ""  # a disk with room says nothing
    denied = _atomic(lambda i: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    assert denied({"text_file": str(target)})["error"] == (
        f"cannot write {target}: Permission denied; nothing was recorded"
    )


def test_every_ck_hook_imports_this_repository_when_ck_lacks_ckvision() -> None:
    """``ck`` may run on a Python with nothing but ck (first contact): every hook file CK
    loads puts this repository on sys.path before it imports ckvision, and what it imports
    at load time needs only the standard library."""
    hooks = [
        p
        for d in ("soft", "package", "script")
        for p in sorted((ROOT / d).rglob("*.py"))
        if "from ckvision" in p.read_text()
    ]
    assert len(hooks) >= 20
    line = "sys.path.insert(0, str(Path(__file__).resolve().parents[2]))"
    for hook in hooks:
        text = hook.read_text()
        assert line in text and text.index(line) < text.index("from ckvision"), hook
    code = "import sys, runpy\nfor path in sys.argv[1:]:\n    runpy.run_path(path)\n"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, *map(str, hooks)],  # -S: no site-packages at all
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-2000:]
