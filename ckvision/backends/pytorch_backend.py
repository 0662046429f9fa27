"""PyTorch backend: the same models from their PyTorch definition, on CPU or CUDA.

``model_path`` is a TorchScript file (``.pt``/``.pts``/``.torchscript``) when it is one;
otherwise the model is built from its definition by contract name (EfficientNet-Lite0
with its real weights, through :func:`ckvision.models.efficientnet.load_efficientnet_lite0`,
or a builder added with :func:`register_torch_model`).
Options: ``device`` cpu|cuda, ``precision`` fp32|fp16 (fp16 on CUDA only), ``threads``,
``compile`` (torch.compile), ``cuda_graphs`` (one captured graph per batch size; CUDA
only), ``streams`` (CUDA: runners per batch size that may work at once, one per
harness worker) and ``shared_streams`` (CUDA: 0 = each runner on a stream of its own,
N = all on N shared streams).

On CUDA every batch goes through a :class:`~ckvision.backends.torch_cuda.CudaRunner`:
the harness's samples in page-locked memory (:meth:`PyTorchBackend.host_memory`),
gathered by torch in C++ (:meth:`PyTorchBackend.predict_rows`), asynchronous copies
on the runner's own stream, the cast to fp16 and channels-last on the GPU, and one
synchronisation per batch, after the copy back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ckvision.backends.base import Backend, Capabilities
from ckvision.backends.registry import register_backend
from ckvision.errors import BackendError, ConfigError, ModelError

if TYPE_CHECKING:
    from ckvision.backends.torch_cuda import RunnerPool

__all__ = ["PyTorchBackend", "load_torch_model", "register_torch_model"]

_TORCHSCRIPT = (".pt", ".pts", ".torchscript")
_BUILDERS: dict[str, Callable[[], Any]] = {}


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as err:
        raise BackendError(
            "PyTorch is not installed here (import torch failed); "
            "install it with: pip install 'ckvision[export]'"
        ) from err
    return torch


def register_torch_model(name: str, builder: Callable[[], Any]) -> None:
    """Build the model named ``name`` with ``builder()`` (an ``nn.Module``) from now on."""
    if name in _BUILDERS or name == "efficientnet-lite0":
        raise ConfigError(f"a PyTorch builder for model {name!r} is already registered")
    _BUILDERS[name] = builder


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
    if name in _BUILDERS:
        return _BUILDERS[name]().eval()
    raise ModelError(
        f"no PyTorch definition for model {name!r}; give a TorchScript file "
        f"({'/'.join(_TORCHSCRIPT)}) instead"
    )


@register_backend("pytorch")
class PyTorchBackend(Backend):
    """Runs a PyTorch module under ``torch.inference_mode``."""

    _model: Any = None
    _torch: Any = None
    _pool: RunnerPool | None = None

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
            raise ConfigError(
                "fp16 is not supported on CPU by the pytorch backend; "
                "use CK_PRECISION=fp32 or CK_DEVICE=cuda"
            )
        if self.options.cuda_graphs and device != "cuda":
            raise ConfigError("CUDA graphs need CK_DEVICE=cuda")
        if self.options.streams < 1:
            raise ConfigError(f"streams={self.options.streams} must be at least 1")

    def load(self) -> None:
        if self._model is not None:
            return
        torch = _import_torch()
        self._check_options(torch)
        if self.options.threads > 0:
            torch.set_num_threads(self.options.threads)
        model = load_torch_model(self.contract.name, self.model_path)
        cuda = self.options.device == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
            model = model.to("cuda")
            if self.options.precision == "fp16":
                model = model.half()
            if self.contract.layout == "NCHW":
                model = model.to(memory_format=torch.channels_last)
        if self.options.compile:
            model = torch.compile(model)
        self._torch, self._model = torch, model
        if cuda:
            from ckvision.backends.torch_cuda import RunnerPool

            self._pool = RunnerPool(torch, model, self._runner_spec())
        self._cpu_lock = threading.Lock()

    def _runner_spec(self) -> Any:
        from ckvision.backends.torch_cuda import RunnerSpec

        torch = self._torch
        return RunnerSpec(
            sample_shape=self.contract.input_shape(1)[1:],
            dtype=torch.float16 if self.options.precision == "fp16" else torch.float32,
            channels_last=self.contract.layout == "NCHW",
            graphs=self.options.cuda_graphs,
            per_size=self.options.streams,
            shared_streams=self.options.shared_streams,
        )

    def warmup(self, batch: np.ndarray, iterations: int = 3) -> None:
        """Make (and capture) every runner for this batch size now, not during the test."""
        if self._model is None:
            self.load()
        if self._pool is not None:
            self._pool.prepare(len(batch), np.require(batch, np.float32, ["C"]), iterations)
            return
        super().warmup(batch, iterations)

    def host_memory(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """CUDA: page-locked memory, so batches taken from it need no host copy."""
        if self._model is None:
            self.load()
        if self._pool is None:
            return super().host_memory(shape, dtype)
        return self._pool.host_memory(shape, dtype)

    @property
    def gathers_rows(self) -> bool:
        return self.options.device == "cuda"

    def predict_rows(self, source: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """CUDA: each run of consecutive ``rows`` goes from ``source`` to the GPU directly."""
        if self._model is None:
            self.load()
        if self._pool is None:
            return super().predict_rows(source, rows)
        self.check_input(source[:1])
        if len(rows) == 0 or int(np.min(rows)) < 0 or int(np.max(rows)) >= len(source):
            raise BackendError(f"backend {self.name}: rows outside the {len(source)} samples")
        return self._pool.run_rows(source, np.asarray(rows, dtype=np.int64))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._model is None:
            self.load()
        self.check_input(batch)
        if self._pool is not None:
            return self._pool.run(batch)
        torch = self._torch
        with torch.inference_mode():
            out = self._model(torch.from_numpy(np.require(batch, np.float32, ["C", "W"])))
        return np.asarray(out.float().numpy(), dtype=np.float32)

    def cuda_stats(self) -> dict[str, float]:
        """CUDA only: per-batch host copy / enqueue / wait times since the last call."""
        return self._pool.take_stats() if self._pool is not None else {}

    @property
    def module(self) -> Any:
        """The loaded model as it runs (moved, cast, compiled), for side-by-side baselines."""
        if self._model is None:
            self.load()
        return self._model

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._model = self._pool = None

    def version(self) -> dict[str, str]:
        torch = _import_torch()
        cuda = str(torch.version.cuda) if torch.version.cuda else "none"
        out = {"torch": str(torch.__version__), "torch_cuda": cuda}
        if self.options.device == "cuda" and torch.cuda.is_available():
            out["cudnn"] = str(torch.backends.cudnn.version())
            out["gpu"] = str(torch.cuda.get_device_name(0))
            from ckvision.cuda import nvidia_driver_version

            out["driver"] = nvidia_driver_version()
        return out

    @property
    def capabilities(self) -> Capabilities:
        device = self.options.device
        if device == "cuda" and self._torch is not None:
            device = f"cuda:0 ({self._torch.cuda.get_device_name(0)})"
        return Capabilities(
            device=device,
            max_batch=0,
            layouts=(self.contract.layout,),
            accelerator=self.options.device == "cuda",
            stream_sharing=self.options.device == "cuda",
        )
