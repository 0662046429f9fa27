"""CUDA through cuda-python: one status-checking helper and small typed wrappers.

Every CUDA runtime call in ckvision goes through :func:`check`, which turns a non-zero
``cudaError_t`` into a :class:`BackendError` naming the call. Wrappers own device
buffers, pinned host buffers, streams and CUDA graphs; ``free``/``destroy`` are
idempotent. cuda-python is imported lazily (``cuda.bindings.runtime`` in cuda-python
>= 12.6, ``cuda.cudart`` before), so importing this module never needs a GPU.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np

from ckvision.errors import BackendError

__all__ = [
    "cudart",
    "check",
    "DeviceInfo",
    "device_count",
    "device_info",
    "versions",
    "DeviceBuffer",
    "PinnedBuffer",
    "Stream",
    "CudaGraph",
    "memcpy_htod",
    "nvidia_driver_version",
]


@functools.cache
def cudart() -> Any:
    """The cuda-python runtime module, whichever layout the installed version has."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as err:
            raise BackendError(
                "cuda-python is not installed here (import cuda.bindings failed); "
                "install it with: pip install cuda-python"
            ) from err
    return runtime


def check(result: Any, what: str) -> Any:
    """Check a cuda-python ``(cudaError_t, *values)`` result; return the value(s)."""
    rt = cudart()
    status, *values = result if isinstance(result, tuple) else (result,)
    if status != rt.cudaError_t.cudaSuccess:
        _err, text = rt.cudaGetErrorString(status)
        name = getattr(status, "name", str(status))
        message = text.decode() if isinstance(text, bytes) else str(text)
        raise BackendError(f"CUDA {what} failed: {name}: {message}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int


def device_count() -> int:
    return int(check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount"))


def device_info(index: int = 0) -> DeviceInfo:
    props = check(cudart().cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    raw = props.name
    name = raw.split(b"\0", 1)[0].decode() if isinstance(raw, bytes) else str(raw)
    return DeviceInfo(index, name, (int(props.major), int(props.minor)), int(props.totalGlobalMem))


def versions() -> dict[str, str]:
    """CUDA driver and runtime versions, as ``major.minor`` strings."""
    rt = cudart()
    out = {}
    for key, call in (
        ("cuda_driver", rt.cudaDriverGetVersion),
        ("cuda_runtime", rt.cudaRuntimeGetVersion),
    ):
        value = int(check(call(), key))
        out[key] = f"{value // 1000}.{value % 1000 // 10}"
    return out


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr: int = int(check(cudart().cudaMalloc(nbytes), "cudaMalloc"))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(cudart().cudaFree(ptr), "cudaFree")


class PinnedBuffer:
    """A page-locked host array (cudaHostAlloc) that async copies can overlap with."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        rt = cudart()
        self.ptr: int = int(
            check(rt.cudaHostAlloc(self.nbytes, rt.cudaHostAllocPortable), "cudaHostAlloc")
        )
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array: np.ndarray[Any, np.dtype[Any]] = np.frombuffer(
            memoryview(raw), dtype=dtype
        ).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.array = np.empty(0)
            check(cudart().cudaFreeHost(ptr), "cudaFreeHost")


class Stream:
    """A non-blocking CUDA stream; ``handle`` is the int TensorRT's enqueue wants."""

    def __init__(self) -> None:
        rt = cudart()
        self.raw: Any = check(
            rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"
        )

    @property
    def handle(self) -> int:
        return int(self.raw)

    def copy_htod(self, dst: int, src: int, nbytes: int) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(rt.cudaMemcpyAsync(dst, src, nbytes, kind, self.raw), "cudaMemcpyAsync(H2D)")

    def copy_dtoh(self, dst: int, src: int, nbytes: int) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(rt.cudaMemcpyAsync(dst, src, nbytes, kind, self.raw), "cudaMemcpyAsync(D2H)")

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.raw), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.raw is not None:
            raw, self.raw = self.raw, None
            check(cudart().cudaStreamDestroy(raw), "cudaStreamDestroy")


class CudaGraph:
    """Work captured once on a stream and replayed with one launch."""

    def __init__(self) -> None:
        self._exec: Any = None

    def begin(self, stream: Stream) -> None:
        rt = cudart()
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(stream.raw, mode), "cudaStreamBeginCapture")

    def end(self, stream: Stream) -> None:
        rt = cudart()
        graph = check(rt.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture")
        try:
            self._exec = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def launch(self, stream: Stream) -> None:
        if self._exec is None:
            raise BackendError("CUDA graph launched before it was captured")
        check(cudart().cudaGraphLaunch(self._exec, stream.raw), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self._exec is not None:
            graph_exec, self._exec = self._exec, None
            check(cudart().cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")


def memcpy_htod(dst: int, host: np.ndarray[Any, np.dtype[Any]]) -> None:
    """Synchronous host-to-device copy of a C-contiguous array."""
    rt = cudart()
    src = np.ascontiguousarray(host)
    kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
    check(rt.cudaMemcpy(dst, src.ctypes.data, src.nbytes, kind), "cudaMemcpy(H2D)")


@functools.cache
def nvidia_driver_version() -> str:
    """The NVIDIA driver release (e.g. ``580.159.04``) from nvidia-smi, or ``unknown``."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "unknown"
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, the nvidia-smi found on PATH
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else "unknown"
