"""ck-mlperf's image-classification env contract: every variable it reads, and what we do.

Users bring command lines from ck-mlperf (``--env.CK_LOADGEN_*``, model packages'
``ML_MODEL_*``). Each variable its loadgen-py programs and their pre/post-processing read
is either honoured with the same meaning or, when set to a value we cannot honour, refused
with one line before anything is loaded. Nothing is silently ignored.

:mod:`ckvision.config` decides for every variable its settings table and ``REFUSED_ENV``
name (:func:`ckvision.config.declared_env_vars`); this table covers only the rest (the model
contract's ``ML_MODEL_*``, the deps' ``CK_ENV_*``, TensorRT helper options). The two never
overlap (tested), so one variable never gets two answers.
"""

from __future__ import annotations

from collections.abc import Mapping

from ckvision.config import REFUSED_ENV, declared_env_vars
from ckvision.errors import ConfigError

__all__ = ["UPSTREAM_ENV", "refuse_unsupported", "ck_mlperf_answer"]

HONOURED = "honoured"
# var -> (HONOURED, where) or (values that are fine, one-line reason it is refused otherwise)
UPSTREAM_ENV: dict[str, tuple[str | tuple[str, ...], str]] = {
    # program (tensorrt_classify_loadgen.py / torch_classify_loadgen.py)
    "ML_MODEL_MODEL_NAME": (HONOURED, "model contract: name (mlperf.conf key)"),
    "CK_ENV_MLPERF_INFERENCE_MLPERF_CONF": (HONOURED, "not needed: LoadGen's built-in conf"),
    "CK_ENV_TENSORRT_MODEL_FILENAME": (HONOURED, "program: the TensorRT engine"),
    "CK_ENV_ONNX_MODEL_ONNX_FILEPATH": (HONOURED, "program: the ONNX model"),
    "CK_ENV_ONNX_MODEL_OUTPUT_LAYER_NAME": (HONOURED, "sidecar/contract: output_name"),
    "CK_ENV_DATASET_IMAGENET_PREPROCESSED_DIR": (HONOURED, "dataset dep (data layout)"),
    "CK_CAFFE_IMAGENET_SYNSET_WORDS_TXT": (HONOURED, "not needed: labels ship with the data"),
    # imagenet_helper: the model contract (ckvision.models.contract.UPSTREAM_MAPPING)
    "ML_MODEL_IMAGE_HEIGHT": (HONOURED, "model contract"),
    "ML_MODEL_IMAGE_WIDTH": (HONOURED, "model contract"),
    "ML_MODEL_IMAGE_CHANNELS": (HONOURED, "model contract (3 only)"),
    "ML_MODEL_DATA_LAYOUT": (HONOURED, "model contract (NCHW/NHWC)"),
    "ML_MODEL_COLOUR_CHANNELS_BGR": (HONOURED, "model contract"),
    "ML_MODEL_INPUT_DATA_TYPE": (HONOURED, "model contract"),
    "ML_MODEL_DATA_TYPE": (HONOURED, "recorded (weights precision)"),
    "ML_MODEL_MAX_BATCH_SIZE": (HONOURED, "model contract: max_batch"),
    "ML_MODEL_NORMALIZE_DATA": (HONOURED, "model contract: mean/std"),
    "ML_MODEL_NORMALIZE_LOWER": (HONOURED, "model contract: mean/std"),
    "ML_MODEL_NORMALIZE_UPPER": (HONOURED, "model contract: mean/std"),
    "ML_MODEL_SUBTRACT_MEAN": (HONOURED, "model contract: mean/std"),
    "ML_MODEL_GIVEN_CHANNEL_MEANS": (HONOURED, "model contract: mean"),
    "ML_MODEL_GIVEN_CHANNEL_STDS": (HONOURED, "model contract: std"),
    # pre-processing (loadgen_preprocess.py)
    "CK_MLPERF_PRE_USER_CONF_AND_AUDIT_CONFIG": (
        ("", "yes", "on", "true", "1"),
        "our pre-processing always writes user.conf/audit.config; it cannot be turned off",
    ),
    # post-processing (loadgen_postprocess.py)
    # tensorrt_helper
    "ML_MODEL_USE_DLA": (("", "no", "off", "false", "0"), "Jetson DLA is not supported"),
    "CK_ENV_TENSORRT_PLUGIN_PATH": (("",), "TensorRT plugins are not loaded"),
    "ML_MODEL_TENSORRT_PLUGIN": (("",), "TensorRT plugins are not loaded"),
}


def refuse_unsupported(env: Mapping[str, str]) -> None:
    """One line (ConfigError) for the first ck-mlperf variable set to what we cannot honour."""
    for var, (fine, reason) in UPSTREAM_ENV.items():
        if fine == HONOURED or var not in env:
            continue
        value = str(env[var]).strip()
        if value.lower() not in fine:
            raise ConfigError(f"{var}={value!r} (ck-mlperf) is not supported: {reason}")


def ck_mlperf_answer(var: str) -> str:
    """What happens to ck-mlperf variable ``var``: ``"config"`` (the settings table or its
    refusals decide), ``"honoured"``, ``"refused"`` (for some values), or ``"unknown"``."""
    if var in declared_env_vars():
        return "refused" if var in REFUSED_ENV else "config"
    if var in UPSTREAM_ENV:
        return HONOURED if UPSTREAM_ENV[var][0] == HONOURED else "refused"
    return "unknown"
