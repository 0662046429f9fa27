"""The data contract a model carries: what its input must look like.

A model package writes it into its CK env as ``ML_MODEL_*`` variables; the dataset
package preprocesses to it and stores it next to the data; the program refuses to
run a model on data preprocessed for another contract.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from ckvision.errors import ConfigError

__all__ = ["ModelContract", "UPSTREAM_MAPPING"]

_LAYOUTS = ("NCHW", "NHWC")
_OUTPUT_KINDS = ("scores", "argmax")


def _floats(text: str, name: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError as err:
        raise ConfigError(f"{name}={text!r} is not three numbers") from err
    if len(values) != 3:
        raise ConfigError(f"{name}={text!r} must have three values (R G B)")
    return values[0], values[1], values[2]


@dataclass(frozen=True)
class ModelContract:
    """Preprocessing and I/O contract of an image-classification model."""

    name: str
    image_size: int = 224
    resize_size: int = 256  # shorter side before the centre crop
    layout: str = "NCHW"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # on [0, 1] pixels
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    color_order: str = "RGB"
    input_dtype: str = "float32"
    label_offset: int = 0  # output index = ImageNet class + label_offset
    num_classes: int = 1000  # ImageNet classes; the output has num_classes + label_offset
    input_name: str = "input"
    output_name: str = "logits"  # backends bind the output by this name, never by position
    output_kind: str = "scores"  # scores: (N, classes) floats | argmax: (N,) class indices
    max_batch: int = 0  # 0 = dynamic, no limit
    # How the pixels are resized (part of the contract, recorded with every dataset):
    # library "pillow" | "opencv", interpolation "linear" | "area" | "cubic" | "nearest".
    library: str = "pillow"
    interpolation: str = "linear"
    extra: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.layout not in _LAYOUTS:
            raise ConfigError(f"data layout {self.layout!r} unknown; use one of {_LAYOUTS}")
        if self.color_order not in ("RGB", "BGR"):
            raise ConfigError(f"colour order {self.color_order!r} unknown; use RGB or BGR")
        if self.image_size <= 0 or self.resize_size < self.image_size:
            raise ConfigError(
                f"image size {self.image_size} / resize {self.resize_size} are inconsistent"
            )
        if self.output_kind not in _OUTPUT_KINDS:
            raise ConfigError(
                f"output kind {self.output_kind!r} unknown; use one of {_OUTPUT_KINDS}"
            )
        if self.label_offset < 0 or self.num_classes <= 0:
            raise ConfigError(
                f"label offset {self.label_offset} / classes {self.num_classes} "
                "must be >= 0 / positive"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"channel stds must be positive, got {self.std}")
        if self.library not in ("pillow", "opencv"):
            raise ConfigError(f"image library {self.library!r} unknown; use pillow or opencv")
        if self.interpolation not in ("linear", "area", "cubic", "nearest"):
            raise ConfigError(
                f"interpolation {self.interpolation!r} unknown; use linear, area, cubic or nearest"
            )

    @property
    def output_width(self) -> int:
        """Columns of a scores output: the ImageNet classes plus the label offset."""
        return self.num_classes + self.label_offset

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        s = self.image_size
        return (batch, 3, s, s) if self.layout == "NCHW" else (batch, s, s, 3)

    def preprocessing_key(self) -> dict[str, object]:
        """The fields that decide what preprocessed data looks like (stored with datasets)."""
        return {
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "layout": self.layout,
            "mean": list(self.mean),
            "std": list(self.std),
            "color_order": self.color_order,
            "input_dtype": self.input_dtype,
            "library": self.library,
            "interpolation": self.interpolation,
        }

    def to_env(self) -> dict[str, str]:
        """``ML_MODEL_*`` variables with the meaning ck-mlperf's model packages give them.

        ck-mlperf's ``imagenet_helper`` turns 0..255 pixels ``x`` into
        ``(x * (UPPER - LOWER) / 255 + LOWER - MEANS) / STDS`` (NORMALIZE_DATA=YES) or
        ``(x - MEANS) / STDS`` (NO); we always write the first form with LOWER=0, UPPER=1,
        so MEANS/STDS are exactly our [0, 1] mean/std. See :data:`UPSTREAM_MAPPING`.
        """
        env = {
            "ML_MODEL_MODEL_NAME": self.name,
            "ML_MODEL_IMAGE_HEIGHT": str(self.image_size),
            "ML_MODEL_IMAGE_WIDTH": str(self.image_size),
            "ML_MODEL_IMAGE_CHANNELS": "3",
            "ML_MODEL_RESIZE_SIZE": str(self.resize_size),
            "ML_MODEL_DATA_LAYOUT": self.layout,
            "ML_MODEL_NORMALIZE_DATA": "YES",
            "ML_MODEL_NORMALIZE_LOWER": "0.0",
            "ML_MODEL_NORMALIZE_UPPER": "1.0",
            "ML_MODEL_SUBTRACT_MEAN": "YES",
            "ML_MODEL_GIVEN_CHANNEL_MEANS": " ".join(repr(v) for v in self.mean),
            "ML_MODEL_GIVEN_CHANNEL_STDS": " ".join(repr(v) for v in self.std),
            "ML_MODEL_COLOUR_CHANNELS_BGR": "YES" if self.color_order == "BGR" else "NO",
            "ML_MODEL_INPUT_DATA_TYPE": self.input_dtype,
            "ML_MODEL_LABEL_OFFSET": str(self.label_offset),
            "ML_MODEL_NUM_CLASSES": str(self.num_classes),
            "ML_MODEL_INPUT_LAYER_NAME": self.input_name,
            "ML_MODEL_OUTPUT_LAYER_NAME": self.output_name,
            "ML_MODEL_OUTPUT_KIND": self.output_kind,
            "ML_MODEL_PREPROCESS_LIBRARY": self.library,
            "ML_MODEL_PREPROCESS_INTERPOLATION": self.interpolation,
        }
        if self.max_batch > 0:  # ck-mlperf: the engine's max batch; absent = dynamic
            env["ML_MODEL_MAX_BATCH_SIZE"] = str(self.max_batch)
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ModelContract:
        """Read the contract back from ``ML_MODEL_*`` variables (ck-mlperf's meaning)."""
        if "ML_MODEL_MODEL_NAME" not in env:
            raise ConfigError("ML_MODEL_MODEL_NAME is not set: the model package's env is missing")

        def _int(key: str, default: int) -> int:
            text = env.get(key, "")
            if text == "":
                return default
            try:
                return int(text)
            except ValueError as err:
                raise ConfigError(f"{key}={text!r} is not an integer") from err

        height = _int("ML_MODEL_IMAGE_HEIGHT", 224)
        width = _int("ML_MODEL_IMAGE_WIDTH", height)
        if height != width:
            raise ConfigError(f"non-square inputs ({height}x{width}) are not supported")
        if _int("ML_MODEL_IMAGE_CHANNELS", 3) != 3:
            raise ConfigError("ML_MODEL_IMAGE_CHANNELS must be 3 (RGB or BGR images)")
        mean, std = _normalisation(env)
        return cls(
            name=env["ML_MODEL_MODEL_NAME"],
            image_size=height,
            resize_size=_int("ML_MODEL_RESIZE_SIZE", int(100.0 * height / 87.5)),  # MLPerf floors
            layout=env.get("ML_MODEL_DATA_LAYOUT", "NCHW"),
            mean=mean,
            std=std,
            color_order="BGR" if _yes(env, "ML_MODEL_COLOUR_CHANNELS_BGR", False) else "RGB",
            input_dtype=env.get("ML_MODEL_INPUT_DATA_TYPE", "float32"),
            label_offset=_int("ML_MODEL_LABEL_OFFSET", 0),
            num_classes=_int("ML_MODEL_NUM_CLASSES", 1000),
            input_name=env.get("ML_MODEL_INPUT_LAYER_NAME", "input"),
            output_name=env.get("ML_MODEL_OUTPUT_LAYER_NAME", "logits"),
            output_kind=env.get("ML_MODEL_OUTPUT_KIND", "scores"),
            max_batch=_int("ML_MODEL_MAX_BATCH_SIZE", 0),
            library=env.get("ML_MODEL_PREPROCESS_LIBRARY", "pillow"),
            interpolation=env.get("ML_MODEL_PREPROCESS_INTERPOLATION", "linear"),
        )

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("extra")
        return json.dumps(data, sort_keys=True)


# ck-mlperf ML_MODEL_* variable -> how ModelContract reads it (README "CK and CM citizenship").
UPSTREAM_MAPPING: dict[str, str] = {
    "ML_MODEL_MODEL_NAME": "name (MLPerf model key in mlperf.conf/user.conf)",
    "ML_MODEL_IMAGE_HEIGHT/_WIDTH": "image_size (square only)",
    "ML_MODEL_IMAGE_CHANNELS": "must be 3",
    "ML_MODEL_DATA_LAYOUT": "layout (NCHW/NHWC; CHW4 refused)",
    "ML_MODEL_COLOUR_CHANNELS_BGR": "color_order (YES -> BGR)",
    "ML_MODEL_INPUT_DATA_TYPE": "input_dtype",
    "ML_MODEL_NORMALIZE_DATA/_LOWER/_UPPER, ML_MODEL_SUBTRACT_MEAN, "
    "ML_MODEL_GIVEN_CHANNEL_MEANS/_STDS": "mean, std on [0, 1] pixels (exact conversion)",
    "ML_MODEL_MAX_BATCH_SIZE": "max_batch (absent = dynamic)",
}
_TRUE = ("yes", "on", "true", "1")
_FALSE = ("no", "off", "false", "0")


def _yes(env: Mapping[str, str], key: str, default: bool) -> bool:
    text = env.get(key, "").strip().lower()
    if text == "":
        return default
    if text not in _TRUE + _FALSE:
        raise ConfigError(f"{key}={env[key]!r} must be YES or NO")
    return text in _TRUE


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    text = env.get(key, "").strip()
    try:
        return float(text) if text else default
    except ValueError as err:
        raise ConfigError(f"{key}={text!r} is not a number") from err


def _normalisation(
    env: Mapping[str, str],
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """ck-mlperf's normalisation variables -> (mean, std) on [0, 1] pixels, exactly."""
    if _yes(env, "ML_MODEL_NORMALIZE_DATA", False):
        lower = _float(env, "ML_MODEL_NORMALIZE_LOWER", -1.0)
        scale = _float(env, "ML_MODEL_NORMALIZE_UPPER", 1.0) - lower
        if scale <= 0:
            raise ConfigError("ML_MODEL_NORMALIZE_UPPER must be above ML_MODEL_NORMALIZE_LOWER")
    else:
        lower, scale = 0.0, 255.0
    means: tuple[float, float, float] = (0.0, 0.0, 0.0)
    if _yes(env, "ML_MODEL_SUBTRACT_MEAN", True):
        given = env.get("ML_MODEL_GIVEN_CHANNEL_MEANS", "").strip()
        if not given:
            raise ConfigError(
                "ML_MODEL_SUBTRACT_MEAN=YES without ML_MODEL_GIVEN_CHANNEL_MEANS (per-image "
                "mean subtraction) is not supported; set the means or ML_MODEL_SUBTRACT_MEAN=NO"
            )
        means = _floats(given, "ML_MODEL_GIVEN_CHANNEL_MEANS")
    stds_text = env.get("ML_MODEL_GIVEN_CHANNEL_STDS", "").strip()
    stds = _floats(stds_text, "ML_MODEL_GIVEN_CHANNEL_STDS") if stds_text else (1.0, 1.0, 1.0)
    mean = tuple((m - lower) / scale for m in means)
    std = tuple(s / scale for s in stds)
    return mean, std  # type: ignore[return-value]
