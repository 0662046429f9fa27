"""Functions the MLC scripts (``script/ckvision-*/customize.py``) call.

mlcflow runs a script's ``customize.preprocess(i)`` in its own Python process with
``i['env']`` (strings); what a script exports is what it leaves in that env under the
keys its ``meta.yaml`` lists in ``new_env_keys``. Errors are one line (:func:`ck_hook`).

=========================  ==========================================  ====================
script (tags)              does                                        exports
=========================  ==========================================  ====================
ckvision-install-model     install-model into the script's cache dir   model soft's env
ckvision-prepare-dataset   install-dataset for the model's contract    dataset dir
ckvision-loadgen-run       one LoadGen run + a CK experiment point     record path
=========================  ==========================================  ====================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.ck.hooks.soft import MODEL_SIDECAR, upstream_model_env
from ckvision.errors import ConfigError, MissingPackageError

__all__ = ["install_model", "prepare_dataset", "loadgen_run"]

MODEL_ENV = "CK_ENV_ONNX_MODEL"
DATASET_ENV = "CK_ENV_DATASET_IMAGENET_PREPROCESSED"
PROGRAM = "image-classification-onnxruntime-loadgen-py"


def _env(i: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = i["env"]
    return env


@ck_hook
def install_model(i: dict[str, Any]) -> dict[str, Any]:
    """Install the model named by CKVISION_MODEL into the current (cache) directory."""
    import json

    from ckvision.ck.hooks.packages import install_model as install

    env = _env(i)
    name = str(env.get("CKVISION_MODEL", "")).strip()
    if not name:
        raise ConfigError(
            "CKVISION_MODEL is not set (use the _efficientnet-lite0 or _resnet50 variation)"
        )
    path = install(name, Path(os.getcwd()), tags=f"model,onnx,{name}")
    sidecar = json.loads((path.parent / MODEL_SIDECAR).read_text(encoding="utf-8"))
    exported = {str(k): str(v) for k, v in sidecar.get("env", {}).items()}
    exported[MODEL_ENV] = str(path.parent)
    exported[f"{MODEL_ENV}_FILE"] = str(path)
    exported.update(upstream_model_env("onnx-model", MODEL_ENV, path, exported))
    env.update(exported)
    return {"return": 0}


@ck_hook
def prepare_dataset(i: dict[str, Any]) -> dict[str, Any]:
    """Preprocess the sample set (or IMAGENET_VAL_DIR) for the model's ML_MODEL_* contract."""
    from ckvision.ck.hooks.packages import install_dataset

    env = _env(i)
    kind = str(env.get("CKVISION_DATASET_KIND", "sample"))
    count = str(env.get("CKVISION_DATASET_COUNT", "0") or "0")
    if not count.isdigit():
        raise ConfigError(f"CKVISION_DATASET_COUNT={count!r} is not a non-negative integer")
    source = str(env.get("IMAGENET_VAL_DIR", "") or "")
    marker = install_dataset(
        kind,
        Path(os.getcwd()),
        {k: str(v) for k, v in env.items()},
        source=Path(source) if source else None,
        count=int(count),
    )
    env[DATASET_ENV] = str(marker.parent)
    return {"return": 0}


@ck_hook
def loadgen_run(i: dict[str, Any]) -> dict[str, Any]:
    """Run one LoadGen test like the CK program does and record it as a CK experiment."""
    import secrets

    from ckvision.ck.experiment import record_point
    from ckvision.ck.upstream_env import refuse_unsupported
    from ckvision.config import RunConfig
    from ckvision.experiments.record import mlperf_submission_keys
    from ckvision.harness.settings import write_user_conf
    from ckvision.program import resolve_inputs, run_program

    env = _env(i)
    text_env = {str(k): str(v) for k, v in env.items()}
    refuse_unsupported(text_env)
    config = RunConfig.from_env(text_env)  # one line for a bad value, before any loading
    if not text_env.get(f"{MODEL_ENV}_ONNX_FILEPATH") or not text_env.get(DATASET_ENV):
        raise MissingPackageError(
            "model and dataset (run the script with its deps)", "mlcr run,ckvision,loadgen --quiet"
        )
    inputs = resolve_inputs(text_env, config.backend)
    out = Path(os.getcwd()) / "ckvision-runs" / secrets.token_hex(6)
    out.mkdir(parents=True)
    write_user_conf(config, inputs.contract.name, out / "user.conf")
    record = run_program(config, inputs, out)
    record.update(mlperf_submission_keys(out))
    scenario, mode = config.as_record()["scenario"], config.as_record()["mode"]
    name = text_env.get("CKVISION_RECORD_UOA") or (
        f"mlc.{config.backend}.{inputs.contract.name}.{scenario}.{mode}".lower()
    )
    extra = [t for t in text_env.get("CKVISION_RECORD_TAGS", "").split(",") if t]
    tags = [
        "ckvision",
        "mlc",
        config.backend,
        inputs.contract.name,
        str(scenario).lower(),
        str(mode).lower(),
        *extra,
    ]
    point = record_point(name, tags, record, env=text_env, program=PROGRAM)
    env["CKVISION_RUN_DIR"] = str(out)
    env["CKVISION_EXPERIMENT_POINT"] = str(point)
    accuracy = record.get("accuracy") or {}
    if accuracy:
        print(
            f"accuracy={accuracy.get('top1', 0):.3f}%, good={accuracy.get('good')}, "
            f"total={accuracy.get('total')}"
        )
    print(f"recorded {point}")
    return {"return": 0}
