"""One preprocessing choice of a dataset, in ck-env's vocabulary of variation tags.

A dataset cache holds the images resized and centre-cropped once, as 8-bit RGB
(``rgb8``, HWC). What is still model-specific (mean/std, layout, dtype, colour order) is
applied by the program at load time (:mod:`ckvision.data.normalise`), so one cached copy
serves every model whose *spatial* contract matches. The spatial contract is:

============  ==================  ================================================
tag           field               meaning
============  ==================  ================================================
side.N        ``side``            output square side in pixels (224)
crop.P        ``crop``            centre crop in per mille of the resized shorter
                                  side: crop.875 = 87.5 % (resize 224 -> 256),
                                  crop.1000 = no crop margin
using-opencv  ``library``         the library that resizes (pillow or opencv)
inter.X       ``interpolation``   linear | area | cubic | nearest
rgb8          ``storage``         8-bit RGB, 3 bytes per pixel
first.N       ``count``           the first N images (``full`` = all of them)
============  ==================  ================================================

The resize follows the MLPerf reference (``resize_with_aspectratio``): the shorter side
becomes ``floor(side * 1000 / crop)``, the longer one keeps the aspect ratio (floored),
then a centre crop of ``side`` x ``side`` whose offsets are floored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ckvision.errors import ConfigError
from ckvision.models.contract import ModelContract

__all__ = [
    "Preprocessing",
    "LIBRARIES",
    "INTERPOLATIONS",
    "STORAGES",
    "MAX_SIDE",
    "ENV_PREFIX",
    "as_spec",
    "dataset_tags",
    "SAMPLE_TAG",
]

SAMPLE_TAG = "ckvision-sample"  # the embedded sample set's package tag

LIBRARIES = ("pillow", "opencv")
INTERPOLATIONS = ("linear", "area", "cubic", "nearest")
STORAGES = ("rgb8",)
MAX_SIDE = 4096
ENV_PREFIX = "CKVISION_DATASET_"  # the variation's choice, as the package's extra_env sets it
_BYTES_PER_PIXEL = {"rgb8": 3}


def _positive_int(text: str, what: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"{what} {text!r} must be a positive whole number")
    return int(text)


@dataclass(frozen=True)
class Preprocessing:
    """How the pixels of a cached dataset were made (everything but normalisation)."""

    side: int = 224
    crop: int = 875  # per mille of the resized shorter side
    library: str = "pillow"
    interpolation: str = "linear"
    storage: str = "rgb8"

    def __post_init__(self) -> None:
        if not 0 < self.side <= MAX_SIDE:
            raise ConfigError(f"side.{self.side} is impossible: the side must be 1..{MAX_SIDE}")
        if not 0 < self.crop <= 1000:
            raise ConfigError(
                f"side.{self.side} with crop.{self.crop} is impossible: a centre crop takes "
                "at most the whole resized image (crop.1..crop.1000)"
            )
        if self.library not in LIBRARIES:
            raise ConfigError(f"library {self.library!r} unknown; use one of {LIBRARIES}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation {self.interpolation!r} unknown; use one of {INTERPOLATIONS}"
            )
        if self.storage not in STORAGES:
            raise ConfigError(f"storage {self.storage!r} unknown; use one of {STORAGES}")
        if self.resize > MAX_SIDE * 8:
            raise ConfigError(
                f"side.{self.side} with crop.{self.crop} is impossible: the shorter side "
                f"would be resized to {self.resize} pixels"
            )

    @property
    def resize(self) -> int:
        """The shorter side after the resize, before the centre crop."""
        return self.side * 1000 // self.crop

    @property
    def bytes_per_image(self) -> int:
        return self.side * self.side * _BYTES_PER_PIXEL[self.storage]

    def tags(self) -> list[str]:
        """The ck-env style tags of this choice (as the installed CK env carries them)."""
        return [
            f"side.{self.side}",
            f"crop.{self.crop}",
            f"using-{self.library}",
            f"inter.{self.interpolation}",
            self.storage,
        ]

    def key(self) -> str:
        """A directory-safe name unique to this choice."""
        return "-".join(self.tags())

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "crop": self.crop,
            "resize": self.resize,
            "library": self.library,
            "interpolation": self.interpolation,
            "storage": self.storage,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        try:
            return cls(
                side=int(data["side"]),
                crop=int(data["crop"]),
                library=str(data["library"]),
                interpolation=str(data["interpolation"]),
                storage=str(data["storage"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"dataset preprocessing {dict(data)!r} is incomplete: {err}") from err

    @classmethod
    def for_model(cls, contract: ModelContract) -> Preprocessing:
        """The choice a model's contract asks for (the packaged crop.875 / crop.1000 when
        they give the contract's resize, e.g. 341 for side 299 as MLPerf floors it)."""
        side, resize = contract.image_size, contract.resize_size
        exact = side * 1000 / resize
        packaged = [c for c in (875, 1000) if side * 1000 // c == resize]
        crop = min(packaged, key=lambda c: abs(c - exact)) if packaged else round(exact)
        spec = cls(
            side=contract.image_size,
            crop=crop,
            library=contract.library,
            interpolation=contract.interpolation,
        )
        if spec.resize != contract.resize_size:
            raise ConfigError(
                f"model {contract.name}: resize {contract.resize_size} for side "
                f"{contract.image_size} is not a whole crop.N (N per mille)"
            )
        return spec

    @classmethod
    def from_tags(cls, tags: Iterable[str], base: Preprocessing | None = None) -> Preprocessing:
        """Parse variation tags (``side.224``, ``crop.875``, ``using-opencv``,
        ``inter.area``, ``rgb8``); other tags are not this function's business, but a tag
        that *looks* like a variation and is not one is refused."""
        values: dict[str, Any] = dict((base or cls()).as_dict())
        values.pop("resize")
        seen: dict[str, str] = {}

        def put(field: str, value: Any, tag: str) -> None:
            if field in seen and seen[field] != tag:
                raise ConfigError(f"tags {seen[field]} and {tag} contradict each other")
            seen[field] = tag
            values[field] = value

        for tag in (t.strip() for t in tags):
            if tag.startswith("side."):
                put("side", _positive_int(tag[5:], "side"), tag)
            elif tag.startswith("crop."):
                put("crop", _positive_int(tag[5:], "crop"), tag)
            elif tag.startswith("using-"):
                if tag[6:] not in LIBRARIES:
                    raise ConfigError(
                        f"unknown variation tag {tag!r}; use one of "
                        + ", ".join(f"using-{x}" for x in LIBRARIES)
                    )
                put("library", tag[6:], tag)
            elif tag.startswith("inter."):
                if tag[6:] not in INTERPOLATIONS:
                    raise ConfigError(
                        f"unknown variation tag {tag!r}; use one of "
                        + ", ".join(f"inter.{x}" for x in INTERPOLATIONS)
                    )
                put("interpolation", tag[6:], tag)
            elif tag in ("rgbf32",):
                raise ConfigError(
                    f"variation {tag} is not offered: datasets are stored as rgb8 and "
                    "normalised at load time"
                )
            elif tag in STORAGES:
                put("storage", tag, tag)
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Preprocessing:
        """Read the choice from ``CKVISION_DATASET_*`` (the package variations' extra_env)."""
        base = cls()
        text = {
            k: env.get(ENV_PREFIX + k.upper(), "")
            for k in ("side", "crop", "library", "interpolation", "storage")
        }
        return cls(
            side=_positive_int(text["side"], "CKVISION_DATASET_SIDE")
            if text["side"]
            else base.side,
            crop=_positive_int(text["crop"], "CKVISION_DATASET_CROP")
            if text["crop"]
            else base.crop,
            library=text["library"] or base.library,
            interpolation=text["interpolation"] or base.interpolation,
            storage=text["storage"] or base.storage,
        )

    def mismatch(self, contract: ModelContract) -> list[str]:
        """What differs between this dataset choice and what ``contract`` asks for
        (crops compare by the resize they give: equal resizes are equal pixels)."""
        want = Preprocessing.for_model(contract)
        diffs = [
            f"{field} {getattr(want, field)!r} (dataset has {getattr(self, field)!r})"
            for field in ("side", "library", "interpolation")
            if getattr(want, field) != getattr(self, field)
        ]
        if want.resize != self.resize:
            diffs.append(
                f"crop {want.crop} = resize {want.resize} "
                f"(dataset has crop {self.crop} = resize {self.resize})"
            )
        return diffs


def as_spec(choice: Preprocessing | ModelContract) -> Preprocessing:
    """A preprocessing choice, or the one a model's contract asks for."""
    return choice if isinstance(choice, Preprocessing) else Preprocessing.for_model(choice)


def dataset_tags(contract: ModelContract, subset: str = SAMPLE_TAG) -> str:
    """The CK tags that select the one installed dataset a model can use: the subset
    (``ckvision-sample``, or ``full``/``first.N`` of the ImageNet val folder) plus the
    model's preprocessing variation. Used for ``--dep_add_tags.images`` and installs."""
    return ",".join(
        ["dataset", "imagenet", "preprocessed", subset, *Preprocessing.for_model(contract).tags()]
    )
