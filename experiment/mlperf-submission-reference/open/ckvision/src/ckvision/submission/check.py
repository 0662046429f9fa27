"""``submission check``: MLPerf's own submission checker, ``--version v6.1``.

The checker comes from a mlcommons/inference source tree: ``--inference-src PATH``,
else ``$CKVISION_INFERENCE_SRC``, else ``$CK_ENV_MLPERF_INFERENCE`` (what a CK
``mlperf,inference,source`` package sets, e.g. ours: ``ck install package
--tags=mlperf,inference,source,ckvision``). It runs as a child process (standard
library + PyYAML), without a shell; its output is passed through, then the verdict
and the CSV row of each result are printed. The exit status is the checker's; a
checker that crashes (a traceback, no verdict) is one line and exit 1.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ckvision.submission import SubmissionError

__all__ = ["run_checker", "find_inference_src", "CHECKER", "VERSION"]

CHECKER = Path("tools/submission/submission_checker/main.py")
VERSION = "v6.1"
OK_LINE = "SUMMARY: submission looks OK"
_ENV_VARS = ("CKVISION_INFERENCE_SRC", "CK_ENV_MLPERF_INFERENCE")


def find_inference_src(given: Path | None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    candidates: list[tuple[str, Path]] = []
    if given is not None:
        candidates.append(("--inference-src", Path(given)))
    else:
        candidates += [(v, Path(env[v])) for v in _ENV_VARS if env.get(v, "").strip()]
    if not candidates:
        raise SubmissionError(
            "no MLPerf inference source: give --inference-src PATH or install one with "
            "ck install package --tags=mlperf,inference,source,ckvision"
        )
    what, path = candidates[0]
    if not (path / CHECKER).is_file():
        raise SubmissionError(
            f"{what} {path}: no {CHECKER} there (not an mlcommons/inference tree)"
        )
    return path.resolve()


def run_checker(
    tree: Path,
    *,
    inference_src: Path | None = None,
    submitter: str = "",
    skip_dataset_size_check: bool = False,
    csv: Path | None = None,
    timeout_s: float = 1800.0,
    log: object = print,
) -> int:
    """Run the checker on ``tree``; returns its exit status."""
    tree = Path(tree)
    if not tree.is_dir():
        raise SubmissionError(f"{tree}: no such submission folder")
    if submitter and not all(c.isalnum() or c in "-_." for c in submitter):
        raise SubmissionError(f"--submitter {submitter!r}: use letters, digits, '-', '_', '.'")
    src = find_inference_src(inference_src)
    with tempfile.TemporaryDirectory(prefix="ckvision-checker-") as work:
        csv_path = Path(csv) if csv else Path(work) / "summary.csv"
        args = [
            sys.executable,
            str(src / CHECKER),
            "--input",
            str(tree.resolve()),
            "--version",
            VERSION,
            "--csv",
            str(csv_path.resolve()),
        ]
        if submitter:
            args += ["--submitter", submitter]
        if skip_dataset_size_check:
            args.append("--skip-dataset-size-check")
        try:
            proc = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
                args,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise SubmissionError(f"MLPerf's checker did not finish in {timeout_s:g} s") from err
        except OSError as err:
            raise SubmissionError(f"cannot run MLPerf's checker: {err}") from err
        output = proc.stdout + proc.stderr
        verdict = [line for line in output.splitlines() if "SUMMARY: " in line]
        if not verdict:
            last = [line for line in output.strip().splitlines() if line.strip()]
            raise SubmissionError(
                f"MLPerf's checker ({src / CHECKER}) crashed with status {proc.returncode}: "
                f"{last[-1].strip() if last else 'no output'}"
            )
        say = log if callable(log) else print
        sys.stdout.write(output if output.endswith("\n") else output + "\n")
        for row in _csv_rows(csv_path):
            say("submission: result: " + ", ".join(f"{k}={v}" for k, v in row.items() if v))
        status = "OK" if proc.returncode == 0 else "NOT OK"
        say(
            f"submission: checker {VERSION} verdict: {verdict[-1].split('SUMMARY: ', 1)[1]} "
            f"({status}, exit {proc.returncode})"
        )
        return proc.returncode


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle)]
