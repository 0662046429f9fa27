"""TensorRT runtime backend: deserialises an engine built by ckvision.models.tensorrt_build.

It never builds. ``load()`` checks the engine's metadata (TensorRT version, GPU, size and
sha256) before deserialising, then creates ``options.streams`` execution contexts, each
with its own stream, pinned host buffers and device buffers sized for the engine's max
batch, so one context's copies overlap another's compute. ``predict`` may be called from
several threads: each call takes a free context from a queue and puts it back.
With ``options.cuda_graphs`` each context captures one CUDA graph per batch size.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ckvision import cuda as cuda_util
from ckvision.availability import check_tensorrt_available, import_tensorrt
from ckvision.backends.base import Backend, Capabilities
from ckvision.backends.registry import register_backend
from ckvision.errors import BackendError, ModelError
from ckvision.models.engine_meta import (
    META_FILE,
    PLAN_FILE,
    EngineMeta,
    RuntimeInfo,
    check_batch,
    check_engine_compat,
    read_engine_bytes,
    read_meta,
)

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["TensorRTBackend", "check_tensorrt_available", "import_tensorrt", "runtime_info"]


def runtime_info(device: int = 0) -> RuntimeInfo:
    """This machine's TensorRT version and GPU, to compare with an engine's metadata."""
    import_tensorrt()
    import tensorrt as trt

    version = trt.__version__
    info = cuda_util.device_info(device)
    return RuntimeInfo(version, info.name, info.compute_capability)


def _np_dtype(dtype: trt.DataType) -> np.dtype[Any]:
    import tensorrt as trt

    table = {
        trt.DataType.FLOAT: np.float32,
        trt.DataType.HALF: np.float16,
        trt.DataType.INT8: np.int8,
        trt.DataType.INT32: np.int32,
    }
    if dtype not in table:
        raise ModelError(f"engine tensor type {dtype} is not supported by this backend")
    return np.dtype(table[dtype])


class _Slot:
    """One execution context with its stream, buffers and captured graphs."""

    def __init__(self, engine: trt.ICudaEngine, meta: EngineMeta, use_graphs: bool) -> None:
        ((self.input, in_shape),) = meta.inputs.items()
        ((self.output, out_shape),) = meta.outputs.items()
        self.context: trt.IExecutionContext = engine.create_execution_context()
        self.stream = cuda_util.Stream()
        self.use_graphs = use_graphs
        self.graphs: dict[int, cuda_util.CudaGraph] = {}
        n = meta.max_batch
        in_dtype = _np_dtype(engine.get_tensor_dtype(self.input))
        out_dtype = _np_dtype(engine.get_tensor_dtype(self.output))
        self.host_in = cuda_util.PinnedBuffer((n, *in_shape[1:]), in_dtype)
        self.host_out = cuda_util.PinnedBuffer((n, *out_shape[1:]), out_dtype)
        self.dev_in = cuda_util.DeviceBuffer(self.host_in.nbytes)
        self.dev_out = cuda_util.DeviceBuffer(self.host_out.nbytes)
        self._set(self.context.set_tensor_address(self.input, self.dev_in.ptr), "input address")
        self._set(self.context.set_tensor_address(self.output, self.dev_out.ptr), "output address")

    @staticmethod
    def _set(ok: bool, what: str) -> None:
        if not ok:
            raise BackendError(f"TensorRT refused the {what}")

    def run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        host_in, host_out = self.host_in.array, self.host_out.array
        host_in[:n] = batch
        shape = (n, *host_in.shape[1:])
        self._set(self.context.set_input_shape(self.input, shape), f"input shape {shape}")
        in_bytes = self.host_in.nbytes // len(host_in) * n
        out_bytes = self.host_out.nbytes // len(host_out) * n
        self.stream.copy_htod(self.dev_in.ptr, self.host_in.ptr, in_bytes)
        self._execute(n)
        self.stream.copy_dtoh(self.host_out.ptr, self.dev_out.ptr, out_bytes)
        self.stream.synchronize()
        return np.array(host_out[:n], dtype=np.float32)

    def _execute(self, n: int) -> None:
        if not self.use_graphs:
            self._set(self.context.execute_async_v3(self.stream.handle), "enqueue")
            return
        graph = self.graphs.get(n)
        if graph is None:
            # One plain enqueue after a shape change lets TensorRT finish its lazy setup.
            self._set(self.context.execute_async_v3(self.stream.handle), "enqueue")
            graph = cuda_util.CudaGraph()
            graph.begin(self.stream)
            self._set(self.context.execute_async_v3(self.stream.handle), "enqueue (capture)")
            graph.end(self.stream)
            self.graphs[n] = graph
        graph.launch(self.stream)

    def close(self) -> None:
        for graph in self.graphs.values():
            graph.destroy()
        self.graphs.clear()
        for buffer in (self.host_in, self.host_out):
            buffer.free()
        for device in (self.dev_in, self.dev_out):
            device.free()
        self.stream.destroy()


@register_backend("tensorrt")
class TensorRTBackend(Backend):
    """Runs a serialised TensorRT engine (``model_path``: the plan or its directory)."""

    _runtime: trt.Runtime | None = None
    _engine: trt.ICudaEngine | None = None
    _meta: EngineMeta | None = None
    _slots: list[_Slot] | None = None
    _free: queue.Queue[_Slot] | None = None
    _gpu: str = ""

    @property
    def plan_path(self) -> Path:
        return self.model_path / PLAN_FILE if self.model_path.is_dir() else self.model_path

    def load(self) -> None:
        if self._engine is not None:
            return
        check_tensorrt_available()
        import tensorrt as trt

        meta = read_meta(self.plan_path.parent)
        self._check_output(meta)
        runtime = runtime_info()
        check_engine_compat(meta, runtime)
        data = read_engine_bytes(self.plan_path, meta)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ModelError(
                f"TensorRT could not deserialise {self.plan_path} "
                f"(see {self.plan_path.parent / META_FILE} for how it was built)"
            )
        self._engine, self._meta, self._gpu = engine, meta, runtime.gpu_name
        self._make_slots()

    def _check_output(self, meta: EngineMeta) -> None:
        """The output is bound by the contract's name, never by position."""
        want = self.contract.output_name
        if want not in meta.outputs:
            raise ModelError(
                f"engine {self.plan_path} has no output {want!r} (the contract's "
                f"ML_MODEL_OUTPUT_LAYER_NAME); its outputs: {', '.join(meta.outputs)}"
            )
        if len(meta.outputs) != 1:
            raise ModelError(
                f"engine {self.plan_path} has {len(meta.outputs)} outputs; this backend binds "
                f"one ({want!r}): rebuild the engine with only that output marked"
            )

    def _make_slots(self) -> None:
        assert self._engine is not None and self._meta is not None  # set by load()
        self._slots, self._free = [], queue.Queue()
        try:
            for _ in range(max(1, self.options.streams)):
                slot = _Slot(self._engine, self._meta, self.options.cuda_graphs)
                self._slots.append(slot)
                self._free.put(slot)
        except BaseException:
            self.close()
            raise

    def check_batch(self, batch_size: int) -> None:
        """ConfigError when ``batch_size`` exceeds the engine's max batch (call before a run)."""
        check_batch(self._metadata(), batch_size)

    def _metadata(self) -> EngineMeta:
        if self._meta is None:
            self._meta = read_meta(self.plan_path.parent)
        return self._meta

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._free is None:
            self.load()
        assert self._free is not None  # set by load()
        self.check_input(batch)
        check_batch(self._metadata(), len(batch))
        slot = self._free.get()
        try:
            return slot.run(batch)
        finally:
            self._free.put(slot)

    def close(self) -> None:
        slots, self._slots, self._free = self._slots or [], None, None
        for slot in slots:
            slot.close()
        self._engine = self._runtime = None

    def version(self) -> dict[str, str]:
        import_tensorrt()
        import tensorrt as trt

        return {"tensorrt": trt.__version__, **cuda_util.versions()}

    @property
    def capabilities(self) -> Capabilities:
        meta = self._metadata()
        return Capabilities(
            device=self._gpu or meta.gpu_name,
            max_batch=meta.max_batch,
            dtypes=("float32",),
            accelerator=True,
        )
