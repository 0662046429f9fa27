"""The MLPerf inference source tree (mlcommons/inference) that holds the checker.

``package:mlperf-inference-source-ckvision`` installs it the way ck-mlperf's
``mlperf-inference-source`` package did: a git clone at a pinned commit, from a URL, a
``file://`` URL or a local path (machines without GitHub). Its soft entry,
``soft:mlperf.inference.source.ckvision``, sets ck-mlperf's variable
``CK_ENV_MLPERF_INFERENCE`` to the tree, which ``submission check`` reads.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.fsutil import atomic_dir, atomic_write_json
from ckvision.submission import SubmissionError
from ckvision.submission.check import CHECKER

__all__ = ["install_source", "DEFAULT_URL", "DEFAULT_COMMIT", "MARKER", "setup", "version_cmd"]

DEFAULT_URL = "https://github.com/mlcommons/inference.git"
# the commit /work/shared/mlperf-submission.md was verified against (checker v6.1)
DEFAULT_COMMIT = "b66003e10e2db4b8c36a448b0545ec90fcc6e9e9"
MARKER = "ckvision-inference-source.json"
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
_URL = re.compile(r"^(https://|http://|file://|/)[A-Za-z0-9._~:/@%+-]+$")


def _git(*args: str, cwd: Path | None = None) -> str:
    git = shutil.which("git")
    if git is None:
        raise SubmissionError("git is not installed; it is needed to clone the inference source")
    proc = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [git, *args], cwd=cwd, capture_output=True, text=True, timeout=1800, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        command = next(a for a in args if not a.startswith("-") and "=" not in a)
        raise SubmissionError(f"git {command} failed: {last}")
    return proc.stdout.strip()


def install_source(url: str, commit: str, install_dir: Path) -> Path:
    """Clone ``url`` at ``commit`` into ``install_dir/src`` (atomically); returns the tree."""
    if not _URL.match(url) or ".." in url.split("://", 1)[-1].split("/"):
        raise SubmissionError(f"inference source URL {url!r}: use https://, file:// or a path")
    if not _COMMIT.match(commit):
        raise SubmissionError(f"inference source commit {commit!r}: 7 to 40 lowercase hex digits")
    final = Path(install_dir) / "src"
    marker = Path(install_dir) / MARKER
    if marker.is_file() and (final / CHECKER).is_file():
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        if str(recorded.get("commit", "")).startswith(commit) and recorded.get("url") == url:
            return final  # idempotent: the same commit is there
    with atomic_dir(final) as tmp:
        _git("clone", "--quiet", "--no-checkout", "--", url, str(tmp))
        _git("-c", "advice.detachedHead=false", "checkout", "--quiet", commit, cwd=tmp)
        full = _git("rev-parse", "HEAD", cwd=tmp)
        if not (tmp / CHECKER).is_file():
            raise SubmissionError(f"{url} at {commit} has no {CHECKER}: not mlcommons/inference")
    atomic_write_json(marker, {"url": url, "commit": full, "checker": str(CHECKER)})
    print(f"mlperf inference source {full[:12]} installed at {final}")
    return final


@ck_hook
def version_cmd(i: dict[str, Any]) -> dict[str, Any]:
    """CK soft detection: the version is the commit the marker file records."""
    marker = Path(i["full_path"])
    try:
        commit = str(json.loads(marker.read_text(encoding="utf-8"))["commit"])
    except (OSError, ValueError, KeyError) as err:
        raise SubmissionError(f"{marker} is not an inference source marker: {err}") from err
    if not _COMMIT.match(commit):
        raise SubmissionError(f"{marker}: bad commit {commit!r}")
    return {"return": 0, "version": commit[:12], "cmd": ""}


@ck_hook
def setup(i: dict[str, Any]) -> dict[str, Any]:
    """CK soft setup: ``CK_ENV_MLPERF_INFERENCE`` = the source tree (ck-mlperf's name)."""
    from ckvision.ck.hooks.shell import check_shell_safe

    marker = Path(i["customize"]["full_path"])
    tree = marker.parent / "src"
    if not (tree / CHECKER).is_file():
        raise SubmissionError(f"{tree} holds no {CHECKER}; reinstall the package")
    env = {"CK_ENV_MLPERF_INFERENCE": str(tree), "CK_ENV_MLPERF_INFERENCE_MARKER": str(marker)}
    check_shell_safe({**i.get("env", {}), **env}, where="detected env")
    i["env"].update(env)
    return {"return": 0, "bat": ""}
