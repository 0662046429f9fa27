"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider.

``load`` opens the session and checks the model against the contract (input shape,
number of classes); ``predict`` is one ``session.run`` with the input and output names
bound once. A model with a fixed batch dimension gets smaller batches padded to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ckvision.backends.base import Backend, Capabilities
from ckvision.backends.registry import register_backend
from ckvision.errors import BackendError, ConfigError, MissingPackageError, ModelError

__all__ = ["OnnxRuntimeBackend", "PROVIDERS", "check_one_onnxruntime"]

# CK_ORT_PROVIDER -> (provider, what to do when it is missing)
PROVIDERS = {
    "cpu": ("CPUExecutionProvider", "reinstall onnxruntime"),
    "cuda": ("CUDAExecutionProvider", "install onnxruntime-gpu or use CK_ORT_PROVIDER=cpu"),
    "tensorrt": (
        "TensorrtExecutionProvider",
        "install onnxruntime-gpu with TensorRT or use CK_ORT_PROVIDER=cuda",
    ),
}


def check_one_onnxruntime(installed: Callable[[str], str | None] | None = None) -> None:
    """One line when both the CPU ``onnxruntime`` and ``onnxruntime-gpu`` are installed:
    they share the module ``onnxruntime``; whichever pip installed last silently wins,
    so the run would not be the one the user thinks."""
    version = installed or _distribution_version
    cpu, gpu = version("onnxruntime"), version("onnxruntime-gpu")
    if cpu and gpu:
        raise ConfigError(
            f"both onnxruntime {cpu} (CPU) and onnxruntime-gpu {gpu} are installed and share "
            "the module 'onnxruntime'; keep one: `make gpu` (onnxruntime-gpu) or "
            "`pip uninstall -y onnxruntime-gpu onnxruntime && pip install onnxruntime==<pin>`"
        )


def _distribution_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _ort() -> Any:
    check_one_onnxruntime()
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingPackageError("onnxruntime", "lib,python-package,onnxruntime") from err
    return onnxruntime


def _load_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception types (they derive from Exception only), and the usual."""
    state = ort.capi.onnxruntime_pybind11_state
    names = (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "InvalidProtobuf",
        "InvalidGraph",
        "RuntimeException",
        "NotImplemented",
    )
    own = tuple(getattr(state, n) for n in names if hasattr(state, n))
    return (*own, RuntimeError, ValueError, OSError)


_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """One ``onnxruntime.InferenceSession`` for the model file."""

    _session: Any = None
    _fixed_batch = 0
    _cast = False

    def load(self) -> None:
        if self._session is not None:
            return
        ort = _ort()
        if not self.model_path.is_file():
            raise ModelError(f"model file {self.model_path} not found")
        try:
            session = ort.InferenceSession(
                str(self.model_path),
                sess_options=self._session_options(ort),
                providers=self._providers(ort),
            )
        except _load_errors(ort) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"cannot load model {self.model_path}: {first}") from err
        self._check_io(session)
        self._session = session

    def _session_options(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.options.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return options

    def _providers(self, ort: Any) -> list[Any]:
        choice = self.options.execution_provider
        if choice not in PROVIDERS:
            raise BackendError(
                f"CK_ORT_PROVIDER={choice!r} unknown; use one of: {', '.join(PROVIDERS)}"
            )
        provider, fix = PROVIDERS[choice]
        if provider not in ort.get_available_providers():
            raise BackendError(f"onnxruntime has no {provider} here; {fix}")
        if choice != "tensorrt":
            return [provider]
        trt_options: dict[str, Any] = {"trt_fp16_enable": self.options.precision == "fp16"}
        if self.options.cache_dir is not None:
            self.options.cache_dir.mkdir(parents=True, exist_ok=True)
            trt_options["trt_engine_cache_enable"] = True
            trt_options["trt_engine_cache_path"] = str(self.options.cache_dir)
        return [(provider, trt_options), "CUDAExecutionProvider"]

    def _check_io(self, session: Any) -> None:
        contract, name = self.contract, self.model_path.name
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"model {name} has {len(inputs)} inputs; one image input is expected")
        shape = list(inputs[0].shape)
        want = contract.input_shape(1)
        if len(shape) != 4 or any(
            isinstance(dim, int) and dim != w for dim, w in zip(shape[1:], want[1:], strict=True)
        ):
            raise ModelError(
                f"model {name} expects input {shape} but the dataset/contract gives "
                f"{['N', *want[1:]]} ({contract.layout})"
            )
        dtype = _DTYPES.get(inputs[0].type, inputs[0].type)
        if dtype != contract.input_dtype:
            raise ModelError(
                f"model {name} expects {dtype} input but the dataset/contract gives "
                f"{contract.input_dtype}"
            )
        by_name = {o.name: o for o in outputs}
        if contract.output_name not in by_name:
            raise ModelError(
                f"model {name} has no output {contract.output_name!r} (the contract's "
                f"ML_MODEL_OUTPUT_LAYER_NAME); its outputs: {', '.join(by_name)}"
            )
        output = by_name[contract.output_name]
        dims = list(output.shape or [])
        if contract.output_kind == "scores":
            width = dims[-1] if dims else None
            if len(dims) != 2 or (isinstance(width, int) and width != contract.output_width):
                raise ModelError(
                    f"model {name} output {output.name!r} has shape {dims}; the contract says "
                    f"[N, {contract.output_width}] ({contract.num_classes} classes + label "
                    f"offset {contract.label_offset})"
                )
        self._input_name = inputs[0].name
        self._output_names = [output.name]
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 0
        self._cast = contract.output_kind == "scores" and output.type != "tensor(float)"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            self.load()
        self.check_input(batch)
        n = len(batch)
        if self._fixed_batch and n != self._fixed_batch:
            return self._predict_padded(batch)
        out: np.ndarray = self._session.run(self._output_names, {self._input_name: batch})[0]
        return out.astype(np.float32) if self._cast else out

    def _predict_padded(self, batch: np.ndarray) -> np.ndarray:
        size = self._fixed_batch
        if len(batch) > size:
            raise BackendError(f"batch of {len(batch)} is above the model's fixed batch {size}")
        pad = np.zeros((size, *batch.shape[1:]), dtype=batch.dtype)  # per call: thread-safe
        pad[: len(batch)] = batch
        out: np.ndarray = self._session.run(self._output_names, {self._input_name: pad})[0]
        return out[: len(batch)].astype(np.float32) if self._cast else out[: len(batch)]

    def close(self) -> None:
        self._session = None

    def version(self) -> dict[str, str]:
        ort = _ort()
        providers = self._session.get_providers() if self._session is not None else []
        return {"onnxruntime": str(ort.__version__), "providers": ",".join(providers)}

    @property
    def capabilities(self) -> Capabilities:
        device = "cpu" if self.options.execution_provider == "cpu" else "cuda:0"
        return Capabilities(
            device=device,
            max_batch=self._fixed_batch or self.contract.max_batch,
            accelerator=device != "cpu",
        )
