"""ck-mlperf's image-classification env contract: every variable it reads, and what we do.

Users bring command lines from ck-mlperf (``--env.CK_LOADGEN_*``, model packages'
``ML_MODEL_*``). Each variable its loadgen-py programs and their pre/post-processing read
is either honoured with the same meaning (by :mod:`ckvision.config`'s settings table, the
model contract, or the deps' env) or, when set to a value we cannot honour, refused with one
line before anything is loaded. Nothing is silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from ckvision.errors import ConfigError

__all__ = ["UPSTREAM_ENV", "refuse_unsupported"]

HONOURED = "honoured"
# var -> (HONOURED, where) or (values that are fine, one-line reason it is refused otherwise)
UPSTREAM_ENV: dict[str, tuple[str | tuple[str, ...], str]] = {
    # program (tensorrt_classify_loadgen.py / torch_classify_loadgen.py)
    "CK_LOADGEN_SCENARIO": (HONOURED, "config: scenario"),
    "CK_LOADGEN_MODE": (HONOURED, "config: mode (SubmissionRun refused by the settings check)"),
    "CK_LOADGEN_BUFFER_SIZE": (HONOURED, "config: buffer_size"),
    "CK_LOADGEN_DATASET_SIZE": (HONOURED, "config: dataset_size (0 = all)"),
    "CK_LOADGEN_COUNT_OVERRIDE": (HONOURED, "config: count_override"),
    "CK_LOADGEN_MULTISTREAMNESS": (HONOURED, "config: multistreamness"),
    "CK_LOADGEN_USER_CONF": (HONOURED, "config: user_conf (applied last)"),
    "CK_BATCH_SIZE": (HONOURED, "config: batch_size"),
    "CK_VERBOSE": (HONOURED, "config: verbose"),
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
    "CK_LOADGEN_TARGET_QPS": (HONOURED, "config: target_qps"),
    "CK_LOADGEN_TARGET_LATENCY": (HONOURED, "config: target_latency_ms"),
    "CK_LOADGEN_MAX_DURATION_S": (HONOURED, "config: max_duration_s"),
    "CK_MLPERF_COMPLIANCE_TEST": (HONOURED, "config: compliance_test (TEST01, TEST04)"),
    "CK_MLPERF_PRE_USER_CONF_AND_AUDIT_CONFIG": (
        ("", "yes", "on", "true", "1"),
        "our pre-processing always writes user.conf/audit.config; it cannot be turned off",
    ),
    "CK_LOADGEN_OFFLINE_EXPECTED_QPS": (
        ("",),
        "not read here: set CK_LOADGEN_TARGET_QPS (the Offline expected QPS)",
    ),
    "CK_LOADGEN_SAMPLES_PER_QUERY": (
        ("",),
        "not read here: set CK_LOADGEN_MULTISTREAMNESS (samples per query)",
    ),
    "CK_LOADGEN_MAX_QUERY_COUNT": (
        ("",),
        "not read here: set CK_LOADGEN_COUNT_OVERRIDE (min = max query count)",
    ),
    "CK_LOADGEN_MIN_QUERY_COUNT": (
        ("",),
        "not read here: set CK_LOADGEN_COUNT_OVERRIDE (min = max query count)",
    ),
    "CK_MLPERF_PRE_SET_UP_INTEL_CPU": (
        ("", "no", "off", "false", "0"),
        "we never run sudo; tune the CPU before the run",
    ),
    "CK_MLPERF_PRE_SCHINDLER": (
        ("", "no", "off", "false", "0"),
        "remote image-list regeneration is not supported",
    ),
    # post-processing (loadgen_postprocess.py)
    "CK_LOADGEN_SIDELOAD_JSON": (("",), "side-loaded JSON is not supported"),
    "CK_LOADGEN_INCLUDE_TRACE": (
        ("", "no", "off", "false", "0"),
        "LoadGen traces are not recorded",
    ),
    "CK_MLPERF_ACCURACY_IMAGENET_TYPE": (
        ("", "float32"),
        "accuracy is scored from the argmax LoadGen logs (float32 only)",
    ),
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
