"""Models: data contracts, the model registry, ONNX export and verified downloads."""

from ckvision.models.contract import ModelContract
from ckvision.models.download import download
from ckvision.models.efficientnet import export_efficientnet_lite0
from ckvision.models.registry import (
    DEFAULT_MODEL,
    ModelSpec,
    get_model_spec,
    model_names,
    register_model,
)

__all__ = [
    "ModelContract",
    "ModelSpec",
    "DEFAULT_MODEL",
    "download",
    "export_efficientnet_lite0",
    "get_model_spec",
    "model_names",
    "register_model",
]
