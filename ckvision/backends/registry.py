"""Backend registry: one descriptor per backend, registered once; one factory to create.

A :class:`BackendSpec` holds every fact the rest of ckvision knows about a backend:
the module that defines it, where a CK run finds its model (env var, package tags),
the CK program that runs it, whether ``ckvision sweep`` takes it, and its availability
check (the one line a user sees when its runtime cannot run here). Adding a backend =
one module (a :class:`~ckvision.backends.base.Backend` under ``@register_backend``) and
one :func:`describe_backend`; ``tests/test_backend_contract.py`` fails until it has a
case there.

Optional runtimes (TensorRT, PyTorch, Triton) are imported lazily by name, so a missing
runtime is one clear error at creation, never an import failure elsewhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ckvision.backends.base import Backend, BackendOptions
from ckvision.errors import BackendError, ConfigError
from ckvision.models.contract import ModelContract

__all__ = [
    "BackendSpec",
    "BACKENDS",
    "describe_backend",
    "backend_spec",
    "check_available",
    "register_backend",
    "create_backend",
    "backend_names",
    "backend_class",
]

_B = TypeVar("_B", bound=type[Backend])


@dataclass(frozen=True)
class BackendSpec:
    """Everything known about one backend, in one place."""

    name: str
    module: str  # the module whose @register_backend(name) defines the class
    model_env: str  # the CK env var holding the model file
    model_tags: str  # the CK package tags that provide one (said when it is missing)
    program: str  # the CK program that runs this backend
    check: str = ""  # "module:function" raising one line when the runtime cannot run here
    sweep: bool = True  # `ckvision sweep --backend NAME` takes it


BACKENDS: dict[str, BackendSpec] = {}
_REGISTRY: dict[str, type[Backend]] = {}

_ONNX_MODEL = ("CK_ENV_ONNX_MODEL_ONNX_FILEPATH", "model,onnx,efficientnet-lite0,fp32")
_ORT_PROGRAM = "image-classification-onnxruntime-loadgen-py"


def describe_backend(spec: BackendSpec) -> BackendSpec:
    """Register a backend's descriptor (once per name)."""
    if spec.name in BACKENDS and BACKENDS[spec.name] != spec:
        raise BackendError(f"backend {spec.name!r} is already described differently")
    BACKENDS[spec.name] = spec
    return spec


for _spec in (
    BackendSpec("onnxruntime", "ckvision.backends.onnxruntime_backend", *_ONNX_MODEL, _ORT_PROGRAM),
    BackendSpec("null", "ckvision.backends.null", *_ONNX_MODEL, _ORT_PROGRAM),
    BackendSpec("pytorch", "ckvision.backends.pytorch_backend", *_ONNX_MODEL, _ORT_PROGRAM),
    BackendSpec(
        "tensorrt",
        "ckvision.backends.tensorrt_backend",
        "CK_ENV_TENSORRT_MODEL_FILENAME",
        "model,tensorrt,efficientnet-lite0,converted-from-onnx,fp16,maxbatch.32",
        "image-classification-tensorrt-loadgen-py",
        check="ckvision.availability:check_tensorrt_available",
    ),
    BackendSpec(
        "triton",
        "ckvision.triton.client",
        "CK_ENV_TRITON_MODEL_FILE",
        "model,triton,efficientnet-lite0,python",
        "image-classification-triton-loadgen-py",
    ),
):
    describe_backend(_spec)


def register_backend(name: str) -> Callable[[_B], _B]:
    def _register(cls: _B) -> _B:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return _register


def backend_names() -> tuple[str, ...]:
    return tuple(sorted(BACKENDS))


def backend_spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise ConfigError(f"backend {name!r} unknown; use one of: {', '.join(backend_names())}")
    return BACKENDS[name]


def check_available(name: str) -> None:
    """The backend's availability check: one line naming what is missing, else nothing."""
    spec = backend_spec(name)
    if spec.check:
        module, _sep, function = spec.check.partition(":")
        getattr(importlib.import_module(module), function)()


def backend_class(name: str) -> type[Backend]:
    spec = backend_spec(name)
    if name not in _REGISTRY:
        importlib.import_module(spec.module)
    if name not in _REGISTRY:  # pragma: no cover - a registration bug
        raise BackendError(f"backend module {spec.module} did not register {name!r}")
    return _REGISTRY[name]


def create_backend(
    name: str, model_path: Path, contract: ModelContract, options: BackendOptions | None = None
) -> Backend:
    """Create (not load) a backend by registry name."""
    return backend_class(name)(model_path, contract, options or BackendOptions())
