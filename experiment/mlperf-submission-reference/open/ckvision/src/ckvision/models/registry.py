"""Registry of the models we know: each one's data contract, where it comes from, CK tags.

Like timm's registry, a model is a name plus a typed data contract that travels with
it; unlike timm there is no network code here: ``source`` says how a model package
obtains the file (``export:<name>`` = built locally by :mod:`ckvision.models.efficientnet`,
``download:<url>`` = fetched and checksum-verified by :mod:`ckvision.models.download`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ckvision.errors import ConfigError, ModelError
from ckvision.models.contract import ModelContract

__all__ = [
    "ModelSpec",
    "register_model",
    "get_model_spec",
    "model_names",
    "DEFAULT_MODEL",
    "RESNET50_ONNX_URL",
    "RESNET50_ONNX_MD5",
    "RESNET50_ONNX_SHA256_UNVERIFIED",
]

DEFAULT_MODEL = "efficientnet-lite0"

# MLPerf ResNet50-v1.5, ONNX opset 11 (zenodo record 4735647).
RESNET50_ONNX_URL = "https://zenodo.org/record/4735647/files/resnet50_v1.onnx"
# md5 as published by MLCommons (mlcommons/mlperf-automations,
# script/get-ml-model-resnet50/meta.yaml, variation "onnx,opset-11").
RESNET50_ONNX_MD5 = "f6a4da60cd5f084d97efc2c1ddb10beb"
# No sha256 could be confirmed from a published source (this machine cannot reach
# zenodo). Leave it empty until someone verifies it against the real file; the
# download still verifies the md5 above.
RESNET50_ONNX_SHA256_UNVERIFIED = ""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its contract, how to obtain it, and the CK tags of its package."""

    name: str
    contract: ModelContract
    source: str  # "export:<name>" or "download:<url>"
    tags: tuple[str, ...] = ()
    sha256: str = ""
    md5: str = ""
    size: int = 0  # bytes of a downloaded file; 0 = unknown (Content-Length is still checked)
    description: str = ""
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        kind, _, where = self.source.partition(":")
        if kind not in ("export", "download") or not where:
            raise ConfigError(
                f"model {self.name}: source {self.source!r} must be 'export:<name>' "
                "or 'download:<url>'"
            )
        if self.contract.name != self.name:
            raise ConfigError(f"model {self.name}: its contract is named {self.contract.name!r}")

    @property
    def source_kind(self) -> str:
        return self.source.partition(":")[0]

    @property
    def source_target(self) -> str:
        return self.source.partition(":")[2]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec``; registering a name twice is an error unless ``replace``."""
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(f"model {spec.name} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(model_names())
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def model_names() -> list[str]:
    return sorted(_REGISTRY)


register_model(
    ModelSpec(
        name="efficientnet-lite0",
        contract=ModelContract(
            name="efficientnet-lite0",
            image_size=224,
            resize_size=256,
            layout="NCHW",
            # TF EfficientNet-Lite preprocessing ((x - 127) / 128 on 0..255), on [0, 1];
            # checked against the weights' BatchNorm statistics, see efficientnet.py.
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            color_order="RGB",
            input_dtype="float32",
            label_offset=0,
            num_classes=1000,
            input_name="input",
            output_name="logits",
            library="pillow",
            interpolation="linear",
        ),
        source="export:efficientnet-lite0",
        tags=(
            "model",
            "image-classification",
            "efficientnet",
            "efficientnet-lite0",
            "onnx",
            "fp32",
            "embedded",
        ),
        description="EfficientNet-Lite0, ImageNet-pretrained, exported to ONNX locally "
        "(75.1% top-1 reported for the TF original)",
    )
)

register_model(
    ModelSpec(
        name="resnet50",
        contract=ModelContract(
            name="resnet50",
            image_size=224,
            resize_size=256,
            layout="NCHW",
            # MLPerf reference: x - [123.68, 116.78, 103.94] on 0..255, no scaling,
            # i.e. (x/255 - mean/255) / (1/255).
            mean=(123.68 / 255, 116.78 / 255, 103.94 / 255),
            std=(1 / 255, 1 / 255, 1 / 255),
            color_order="RGB",
            input_dtype="float32",
            label_offset=1,  # 1001 outputs, class 0 = background
            num_classes=1000,
            input_name="input_tensor:0",
            output_name="softmax_tensor:0",
            # MLPerf reference (pre_process_vgg): cv2.imread, INTER_AREA, 87.5% crop.
            library="opencv",
            interpolation="area",
        ),
        source=f"download:{RESNET50_ONNX_URL}",
        tags=("model", "image-classification", "resnet50", "mlperf", "onnx", "fp32", "opset-11"),
        sha256=RESNET50_ONNX_SHA256_UNVERIFIED,
        md5=RESNET50_ONNX_MD5,
        description="MLPerf ResNet50-v1.5 (76.456% top-1 reference), ONNX opset 11",
    )
)
