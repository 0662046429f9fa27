"""The CK side of issue 17: ``package:mlperf-inference-source-ckvision`` (git clone at a
pinned commit from a local repository, as on a machine without GitHub), its soft entry
setting ck-mlperf's ``CK_ENV_MLPERF_INFERENCE``, and ``script:ckvision-submission``.
Real ck 2.6.4 in the session's prepared CK world (tests/conftest.py ``ck_world``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ckcli import ck


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(  # noqa: S603
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


@pytest.mark.timeout(600)
def test_source_package_and_submission_script(ck_world: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / "inference"
    checker = repo / "tools" / "submission" / "submission_checker" / "main.py"
    checker.parent.mkdir(parents=True)
    # a stand-in checker (the real one needs a tree; tests/test_submission.py runs it)
    checker.write_text("import sys\nprint('SUMMARY: submission looks OK')\nprint(sys.argv[1:])\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=repo)
    commit = _git("rev-parse", "HEAD", cwd=repo)

    done = ck(
        ck_world,
        "install",
        "package",
        "--tags=mlperf,inference,source,ckvision",
        f"--env.CKVISION_INFERENCE_URL={repo}",
        f"--env.CKVISION_INFERENCE_COMMIT={commit}",
        "--quiet",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    found = ck(ck_world, "search", "env", "--tags=mlperf,inference,source,ckvision")
    (uid,) = [line.split(":")[-1] for line in found.stdout.split()]
    where = ck(ck_world, "find", f"env:{uid}").stdout.strip().splitlines()[-1]
    env_sh = (Path(where) / "env.sh").read_text()
    tree = Path(ck_world["CK_TOOLS"]) / "mlperf-inference-source-ckvision" / "src"
    assert f"CK_ENV_MLPERF_INFERENCE={tree}" in env_sh
    assert (tree / "tools/submission/submission_checker/main.py").is_file()

    submission = tmp_path / "sub"
    submission.mkdir()
    spec = tmp_path / "check.json"
    spec.write_text(
        json.dumps(
            {"dict": {"action": "check", "dir": str(submission), "inference_src": str(tree)}}
        )
    )
    run = ck(ck_world, "run", "script:ckvision-submission", f"@{spec}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "checker v6.1 verdict: submission looks OK" in run.stdout
    assert "'--version', 'v6.1'" in run.stdout
    spec.write_text(json.dumps({"dict": {"action": "publish"}}))
    bad = ck(ck_world, "run", "script:ckvision-submission", f"@{spec}")
    assert bad.returncode != 0
    assert "--dict.action='publish'" in bad.stdout + bad.stderr
