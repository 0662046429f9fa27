"""Backend registry: a decorator to register, one factory to create.

Optional runtimes (TensorRT, PyTorch) are imported lazily by name, so a missing
runtime is one clear error at creation, never an import failure elsewhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ckvision.backends.base import Backend, BackendOptions
from ckvision.errors import BackendError, ConfigError
from ckvision.models.contract import ModelContract

__all__ = ["register_backend", "create_backend", "backend_names"]

_B = TypeVar("_B", bound=type[Backend])
_REGISTRY: dict[str, type[Backend]] = {}
# name -> module that registers it (imported on first use)
_MODULES = {
    "onnxruntime": "ckvision.backends.onnxruntime_backend",
    "null": "ckvision.backends.null",
    "pytorch": "ckvision.backends.pytorch_backend",
    "tensorrt": "ckvision.backends.tensorrt_backend",
    "triton": "ckvision.triton.client",
}


def register_backend(name: str) -> Callable[[_B], _B]:
    def _register(cls: _B) -> _B:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return _register


def backend_names() -> tuple[str, ...]:
    return tuple(sorted(_MODULES))


def backend_class(name: str) -> type[Backend]:
    if name not in _MODULES:
        raise ConfigError(f"backend {name!r} unknown; use one of: {', '.join(backend_names())}")
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:  # pragma: no cover - a registration bug
        raise BackendError(f"backend module {_MODULES[name]} did not register {name!r}")
    return _REGISTRY[name]


def create_backend(
    name: str, model_path: Path, contract: ModelContract, options: BackendOptions | None = None
) -> Backend:
    """Create (not load) a backend by registry name."""
    return backend_class(name)(model_path, contract, options or BackendOptions())
