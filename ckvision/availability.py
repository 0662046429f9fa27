"""Whether an optional runtime can run here, and the one line a user sees when not.

Below both the backends and the model builders (the TensorRT engine builder needs the
same check as the TensorRT backend), so neither imports the other for it. Each check
raises a :class:`~ckvision.errors.BackendError` naming what is missing and what to run
instead; the backend registry names each backend's check.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ckvision import cuda as cuda_util
from ckvision.errors import BackendError

__all__ = ["import_tensorrt", "check_tensorrt_available"]

_FALLBACK = "run program:image-classification-onnxruntime-loadgen-py instead"


def import_tensorrt() -> ModuleType:
    """The real ``tensorrt`` module, or BackendError with one line saying what is missing.

    Type stubs alone make ``import tensorrt`` succeed as an empty namespace package, so
    a module without ``Runtime`` counts as missing too.
    """
    try:
        trt_module = importlib.import_module("tensorrt")
    except ImportError as err:
        raise BackendError(
            f"TensorRT is not installed here (import tensorrt failed: {err}); "
            f"{_FALLBACK}, or install TensorRT 10"
        ) from err
    if not hasattr(trt_module, "Runtime"):
        raise BackendError(
            "TensorRT is not installed here (import tensorrt found only type stubs); "
            f"{_FALLBACK}, or install TensorRT 10"
        )
    return trt_module


def check_tensorrt_available() -> None:
    """Raise BackendError unless TensorRT, cuda-python, a CUDA driver and a GPU are here.

    The program calls this before loading anything.
    """
    import_tensorrt()
    try:
        count = cuda_util.device_count()
    except BackendError as err:
        raise BackendError(f"no usable CUDA GPU here ({err}); {_FALLBACK}") from err
    if count < 1:
        raise BackendError(f"no CUDA GPU found here; {_FALLBACK}")
