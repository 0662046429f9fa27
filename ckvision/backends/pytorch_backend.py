"""PyTorch backend: the same models from their PyTorch definition, on CPU or CUDA.

``model_path`` is a TorchScript file (``.pt``/``.pts``/``.torchscript``) when it is one;
otherwise the model is built from its definition by contract name (EfficientNet-Lite0
with its real weights, through :func:`ckvision.models.efficientnet.load_efficientnet_lite0`).
Options: ``device`` cpu|cuda, ``precision`` fp32|fp16 (fp16 on CUDA only), ``threads``,
``compile`` (torch.compile) and ``cuda_graphs`` (one captured graph per batch size, with
static input/output tensors; CUDA only).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.backends.base import Backend, Capabilities
from ckvision.backends.registry import register_backend
from ckvision.errors import BackendError, ConfigError, ModelError

__all__ = ["PyTorchBackend", "load_torch_model"]

_TORCHSCRIPT = (".pt", ".pts", ".torchscript")


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as err:
        raise BackendError(
            "PyTorch is not installed here (import torch failed); "
            "install it with: pip install 'ckvision[export]'"
        ) from err
    return torch


def load_torch_model(name: str, path: Path | None = None) -> Any:
    """A model in eval mode: TorchScript from ``path`` if given, else by registry name."""
    torch = _import_torch()
    if path is not None and path.suffix in _TORCHSCRIPT:
        if not path.is_file():
            raise ModelError(f"TorchScript model {path} not found")
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as err:
            raise ModelError(f"cannot load TorchScript model {path}: {err}") from err
    if name == "efficientnet-lite0":
        from ckvision.models.efficientnet import load_efficientnet_lite0

        return load_efficientnet_lite0()
    raise ModelError(
        f"no PyTorch definition for model {name!r}; give a TorchScript file "
        f"({'/'.join(_TORCHSCRIPT)}) instead"
    )


@register_backend("pytorch")
class PyTorchBackend(Backend):
    """Runs a PyTorch module under ``torch.inference_mode``."""

    _model: Any = None
    _torch: Any = None

    def _check_options(self, torch: Any) -> None:
        device, precision = self.options.device, self.options.precision
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"CK_DEVICE={device!r} unknown; use cpu or cuda")
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"CK_PRECISION={precision!r} unknown; use fp32 or fp16")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError(
                "CUDA is not available to PyTorch here (no GPU, driver or CUDA build of torch); "
                "use CK_DEVICE=cpu"
            )
        if device == "cpu" and precision == "fp16":
            raise ConfigError("fp16 is not supported on CPU by the pytorch backend; "
                              "use CK_PRECISION=fp32 or CK_DEVICE=cuda")
        if self.options.cuda_graphs and device != "cuda":
            raise ConfigError("CUDA graphs need CK_DEVICE=cuda")

    def load(self) -> None:
        if self._model is not None:
            return
        torch = _import_torch()
        self._check_options(torch)
        if self.options.threads > 0:
            torch.set_num_threads(self.options.threads)
        model = load_torch_model(self.contract.name, self.model_path)
        model = model.to(self.options.device)
        if self.options.precision == "fp16":
            model = model.half()
        if self.contract.layout == "NCHW" and self.options.device == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if self.options.compile:
            model = torch.compile(model)
        self._torch, self._model = torch, model
        self._graphs: dict[int, _GraphRunner] = {}
        self._lock = threading.Lock()

    def _to_tensor(self, batch: np.ndarray) -> Any:
        torch = self._torch
        dtype = torch.float16 if self.options.precision == "fp16" else torch.float32
        tensor = torch.from_numpy(np.require(batch, np.float32, ["C", "W"]))
        tensor = tensor.to(self.options.device, dtype=dtype, non_blocking=True)
        if self.contract.layout == "NCHW" and self.options.device == "cuda":
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._model is None:
            self.load()
        self.check_input(batch)
        if self.options.cuda_graphs:
            return self._graph_for(len(batch)).run(self._to_tensor(batch))
        with self._torch.inference_mode():
            out = self._model(self._to_tensor(batch))
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)

    def _graph_for(self, size: int) -> _GraphRunner:
        with self._lock:  # capture once per batch size, one thread at a time
            if size not in self._graphs:
                example = self._to_tensor(np.zeros(self.contract.input_shape(size), np.float32))
                self._graphs[size] = _GraphRunner(self._torch, self._model, example)
            return self._graphs[size]

    def close(self) -> None:
        self._model = None
        self._graphs = {}

    def version(self) -> dict[str, str]:
        torch = _import_torch()
        cuda = str(torch.version.cuda) if torch.version.cuda else "none"
        return {"torch": str(torch.__version__), "torch_cuda": cuda}

    @property
    def capabilities(self) -> Capabilities:
        device = self.options.device
        if device == "cuda" and self._torch is not None:
            device = f"cuda:0 ({self._torch.cuda.get_device_name(0)})"
        return Capabilities(device=device, max_batch=0, layouts=(self.contract.layout,))


class _GraphRunner:
    """One CUDA graph for one batch size: copy into a static input, replay, copy out."""

    def __init__(self, torch: Any, model: Any, example: Any) -> None:
        self.torch = torch
        self.lock = threading.Lock()
        self.static_in = example.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):  # warm up on a side stream before capture, as torch asks
                model(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_out = model(self.static_in)

    def run(self, tensor: Any) -> np.ndarray:
        with self.lock:  # the static buffers are shared: one replay at a time
            self.static_in.copy_(tensor)
            self.graph.replay()
            return np.asarray(self.static_out.float().cpu().numpy(), dtype=np.float32)
