"""Pre/post-processing hooks of the LoadGen programs (script:loadgen-image-classification)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.ck.upstream_env import refuse_unsupported
from ckvision.config import RunConfig
from ckvision.experiments.record import TIMER_FILE, collect_run, mlperf_submission_keys
from ckvision.fsutil import atomic_write_json

__all__ = ["ck_preprocess", "ck_postprocess"]


@ck_hook
def ck_preprocess(i: dict[str, Any]) -> dict[str, Any]:
    """Validate the run's env early and write user.conf from the CK_LOADGEN_* vars."""
    from ckvision.harness.settings import write_user_conf

    env = {str(k): str(v) for k, v in i.get("env", {}).items()}
    refuse_unsupported(env)  # ck-mlperf's variables we cannot honour: one line
    config = RunConfig.from_env(env)  # one clear line for a bad value, before any loading
    _check_unique_dep(i, "images")  # two matching datasets: one line, not a silent pick
    model_name = env.get("ML_MODEL_MODEL_NAME", "model")
    path = Path(os.getcwd()) / "user.conf"
    write_user_conf(config, model_name, path)
    return {"return": 0, "new_env": {"CK_LOADGEN_USER_CONF_GENERATED": str(path)}}


def _check_unique_dep(i: dict[str, Any], dep: str) -> None:
    """Refuse when more than one installed env entry matches ``dep``'s final tags (CK,
    with --quiet, would have taken the first silently); the line names the tags to add."""
    from ckvision.data.select import ambiguity_error

    query = str(i.get("deps", {}).get(dep, {}).get("tags", ""))
    kernel = i.get("ck_kernel")
    if not query or kernel is None:
        return
    found = kernel.access({"action": "search", "module_uoa": "env", "tags": query,
                           "add_meta": "yes"})
    if found.get("return", 1) > 0:
        return
    candidates = [(str(e.get("data_uid", "")), [str(t) for t in e.get("meta", {}).get("tags", [])])
                  for e in found.get("lst", [])]
    error = ambiguity_error(dep, query, candidates)
    if error is not None:
        raise error


@ck_hook
def ck_postprocess(i: dict[str, Any]) -> dict[str, Any]:
    """Parse the LoadGen logs and the accuracy into the run's characteristics."""
    record = collect_run(Path(os.getcwd()))
    record.update(mlperf_submission_keys(Path(os.getcwd())))  # ck-mlperf's keys, next to ours
    atomic_write_json(Path(os.getcwd()) / TIMER_FILE, record)
    return {"return": 0}
