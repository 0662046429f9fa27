"""Pre/post-processing hooks of the LoadGen programs (script:loadgen-image-classification).

Each run gets its own directory: pre-processing creates ``runs/run-<time>-<random>`` in
the program entry and makes it CK's working directory, so CK writes the run script there,
the program writes its logs there, and CK reads ``tmp-ck-timer.json`` from there. Two
``ck run`` / ``ck benchmark`` of the same program at once never share a file, and a
failed run can never pick up an earlier run's logs. The programs' meta sets
``process_in_tmp: no``: CK's shared ``tmp`` dir is not used at all, because
``ck benchmark`` deletes and re-creates it when it starts, under any run still going
(and racing another benchmark's ``chdir`` into it). The result files
(``ckvision-run.json``, ``tmp-ck-timer.json``) are written atomically at the very end;
until post-processing accepts the run, its directory holds ``INCOMPLETE-RUN.txt``, and a
run that failed or was interrupted has its LoadGen logs renamed ``INCOMPLETE-mlperf_log_*``,
so nothing in it reads as a result.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ckvision.ck.hooks import ck_fatal_hook
from ckvision.ck.hooks.atomic import make_ck_writes_atomic
from ckvision.ck.hooks.shell import check_shell_safe
from ckvision.ck.upstream_env import refuse_unsupported
from ckvision.config import RunConfig
from ckvision.errors import CkVisionError, RunError
from ckvision.experiments.entries import experiment_root
from ckvision.experiments.locks import keep_clearing_stale_locks
from ckvision.experiments.record import (
    RUN_FILE,
    TIMER_FILE,
    collect_run,
    mlperf_submission_keys,
)
from ckvision.fsutil import atomic_write_json

__all__ = [
    "ck_preprocess",
    "ck_postprocess",
    "INCOMPLETE",
    "RUN_DIR_PREFIX",
    "RUNS_DIR",
    "make_run_dir",
]

RUN_DIR_PREFIX = "run-"
INCOMPLETE = "INCOMPLETE-RUN.txt"
RUNS_DIR = "runs"  # in the program entry; never CK's tmp/, which ck benchmark wipes


_interrupts: list[int] = []


def _note_interrupt(signum: int, frame: object) -> None:
    """CK's SIGINT handler while the program runs: remember it, let the program stop."""
    _interrupts.append(signum)


def _hold_interrupts_for_the_run() -> None:
    """One Ctrl-C reaches the whole process group: the program stops itself within
    seconds; ``ck`` must not die in a traceback meanwhile, but finish post-processing,
    which then fails the run with one line and records nothing. (A Python handler, not
    SIG_IGN, so that the program CK starts still gets SIGINT's default behaviour.)"""
    if threading.current_thread() is threading.main_thread():
        _interrupts.clear()
        signal.signal(signal.SIGINT, _note_interrupt)


def _release_interrupts() -> bool:
    """Restore Ctrl-C for ``ck``; True when one came while the program ran."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return bool(_interrupts)


def make_run_dir(parent: Path) -> Path:
    """A new, unique, empty run directory under ``parent`` (sortable by start time)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{stamp}-", dir=parent))


@ck_fatal_hook
def ck_preprocess(i: dict[str, Any]) -> dict[str, Any]:
    """Refuse unsafe or invalid env, then move CK into a fresh run dir and write user.conf."""
    from ckvision.harness.settings import write_user_conf

    make_ck_writes_atomic()  # a kill during the record cannot truncate an entry
    raw_env = i.get("env", {})
    check_shell_safe(raw_env, where="--env")  # CK has not written the run script yet
    env = {str(k): str(v) for k, v in raw_env.items()}
    refuse_unsupported(env)  # ck-mlperf's variables we cannot honour: one line
    config = RunConfig.from_env(env)  # one clear line for a bad value, before any loading
    _check_unique_dep(i, "images")  # two matching datasets: one line, not a silent pick
    program_dir = Path(i.get("misc", {}).get("path") or os.getcwd())
    runs = program_dir / RUNS_DIR
    runs.mkdir(exist_ok=True)
    run_dir = make_run_dir(runs)
    check_shell_safe({"CK_LOADGEN_USER_CONF_GENERATED": str(run_dir / "user.conf")})
    os.chdir(run_dir)  # CK writes, runs and reads everything relative to its cwd
    (run_dir / INCOMPLETE).write_text(
        "This run has not finished (or failed, or was interrupted): nothing here is a result.\n",
        encoding="utf-8",
    )
    path = run_dir / "user.conf"
    write_user_conf(config, env.get("ML_MODEL_MODEL_NAME", "model"), path)
    print(f"ckvision: run directory {run_dir}", flush=True)
    _hold_interrupts_for_the_run()
    return {"return": 0, "new_env": {"CK_LOADGEN_USER_CONF_GENERATED": str(path)}}


def _check_unique_dep(i: dict[str, Any], dep: str) -> None:
    """Refuse when more than one installed env entry matches ``dep``'s final tags (CK,
    with --quiet, would have taken the first silently); the line names the tags to add."""
    from ckvision.data.select import ambiguity_error

    query = str(i.get("deps", {}).get(dep, {}).get("tags", ""))
    kernel = i.get("ck_kernel")
    if not query or kernel is None:
        return
    found = kernel.access(
        {"action": "search", "module_uoa": "env", "tags": query, "add_meta": "yes"}
    )
    if found.get("return", 1) > 0:
        return
    candidates = [
        (str(e.get("data_uid", "")), [str(t) for t in e.get("meta", {}).get("tags", [])])
        for e in found.get("lst", [])
    ]
    error = ambiguity_error(dep, query, candidates)
    if error is not None:
        raise error


@ck_fatal_hook
def ck_postprocess(i: dict[str, Any]) -> dict[str, Any]:
    """Parse this run's LoadGen logs and accuracy into the run's characteristics.

    CK calls this even when the program failed; then there is no ``ckvision-run.json``
    in this run's own directory and the run fails here, before anything is recorded.
    """
    interrupted = _release_interrupts()
    run_dir = Path(os.getcwd())
    if not run_dir.name.startswith(RUN_DIR_PREFIX):
        raise RunError(f"{run_dir} is not a run directory made by pre-processing")
    if interrupted:
        _mark_incomplete(run_dir)
        raise RunError(
            f"the run was interrupted (Ctrl-C); its logs in {run_dir} are marked "
            "INCOMPLETE; nothing was recorded"
        )
    if not (run_dir / RUN_FILE).is_file():
        _mark_incomplete(run_dir)
        raise RunError(
            f"the run failed or was interrupted (no {RUN_FILE} in {run_dir}); "
            "see its output above; nothing was recorded"
        )
    try:
        record = collect_run(run_dir)
    except CkVisionError:
        _mark_incomplete(run_dir)
        raise
    record.update(mlperf_submission_keys(run_dir))  # ck-mlperf's keys, next to ours
    keep_clearing_stale_locks(experiment_root())  # CK records next: never wait on a dead one
    atomic_write_json(run_dir / TIMER_FILE, record)
    (run_dir / INCOMPLETE).unlink(missing_ok=True)
    return {"return": 0}


def _mark_incomplete(run_dir: Path) -> None:
    """Rename the LoadGen logs of a run that did not finish, so none reads as a result."""
    for log in run_dir.glob("mlperf_log_*"):
        log.rename(log.with_name(f"INCOMPLETE-{log.name}"))
