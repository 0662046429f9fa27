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
    model_name = env.get("ML_MODEL_MODEL_NAME", "model")
    path = Path(os.getcwd()) / "user.conf"
    write_user_conf(config, model_name, path)
    return {"return": 0, "new_env": {"CK_LOADGEN_USER_CONF_GENERATED": str(path)}}


@ck_hook
def ck_postprocess(i: dict[str, Any]) -> dict[str, Any]:
    """Parse the LoadGen logs and the accuracy into the run's characteristics."""
    record = collect_run(Path(os.getcwd()))
    record.update(mlperf_submission_keys(Path(os.getcwd())))  # ck-mlperf's keys, next to ours
    atomic_write_json(Path(os.getcwd()) / TIMER_FILE, record)
    return {"return": 0}
