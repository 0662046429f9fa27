"""Inference backends: one module per runtime, one registry."""

from ckvision.backends.base import Backend, BackendOptions, Capabilities
from ckvision.backends.registry import backend_names, create_backend, register_backend

__all__ = [
    "Backend",
    "BackendOptions",
    "Capabilities",
    "backend_names",
    "create_backend",
    "register_backend",
]
