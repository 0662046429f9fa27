"""TensorRT engine specs, metadata and compatibility checks (pure Python, no TensorRT).

An engine package is selected by tags (``model,tensorrt,<model>,converted-from-onnx,
fp16,maxbatch.32``); :func:`parse_engine_tags` turns them into an :class:`EngineSpec`.
The builder writes ``model.plan`` and ``engine.json`` (an :class:`EngineMeta`) side by
side; the runtime reads the metadata first and refuses, with one line saying how to
rebuild, an engine built for another GPU or TensorRT version, a truncated plan, or a
batch larger than the engine's profile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError, ModelError

__all__ = [
    "PRECISIONS",
    "PLAN_FILE",
    "META_FILE",
    "CALIBRATION_CACHE_FILE",
    "EngineSpec",
    "EngineMeta",
    "RuntimeInfo",
    "parse_engine_tags",
    "check_engine_compat",
    "check_batch",
    "read_meta",
    "write_meta",
    "read_engine_bytes",
    "sha256_file",
    "write_bytes_atomic",
]

PRECISIONS = ("fp32", "fp16", "int8")
PLAN_FILE = "model.plan"
META_FILE = "engine.json"
CALIBRATION_CACHE_FILE = "calibration.cache"
_FIXED_TAGS = frozenset({"model", "tensorrt", "converted-from-onnx"})
_TAG_FORM = "model,tensorrt,<model>,converted-from-onnx,fp32|fp16|int8,maxbatch.N (N >= 1)"


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built for: model, precision and the largest batch it accepts."""

    model: str
    precision: str = "fp32"
    max_batch: int = 1

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} unknown; use one of {PRECISIONS}")
        if self.max_batch < 1:
            raise ConfigError(f"max batch {self.max_batch} must be >= 1")

    @property
    def tags(self) -> str:
        return (
            f"model,tensorrt,{self.model},converted-from-onnx,"
            f"{self.precision},maxbatch.{self.max_batch}"
        )

    @property
    def dir_name(self) -> str:
        """Cache key: the directory an engine for this spec lives in."""
        return f"{self.model}-{self.precision}-maxbatch{self.max_batch}"


def _tag_error(problem: str) -> ConfigError:
    return ConfigError(f"engine tags: {problem}; expected {_TAG_FORM}")


def parse_engine_tags(tags: str | Iterable[str]) -> EngineSpec:
    """Parse engine package tags (comma-separated string or list) into an EngineSpec."""
    items = tags.split(",") if isinstance(tags, str) else list(tags)
    items = [t.strip() for t in items if t.strip()]
    precisions = [t for t in items if t in PRECISIONS]
    batches = [t for t in items if t.startswith("maxbatch")]
    names = [t for t in items if t not in _FIXED_TAGS and t not in precisions + batches]
    if len(precisions) > 1:
        raise _tag_error(f"two precisions ({', '.join(precisions)})")
    if len(batches) > 1:
        raise _tag_error(f"two batch limits ({', '.join(batches)})")
    if len(names) != 1:
        what = f"unknown tags {names}" if names else "no model name"
        raise _tag_error(f"{what} (a precision must be one of {', '.join(PRECISIONS)})")
    max_batch = _parse_maxbatch(batches[0]) if batches else 1
    return EngineSpec(
        model=names[0], precision=precisions[0] if precisions else "fp32", max_batch=max_batch
    )


def _parse_maxbatch(tag: str) -> int:
    _prefix, dot, number = tag.partition(".")
    if tag != f"maxbatch.{number}" or not dot or not number.isdigit() or int(number) < 1:
        raise _tag_error(f"bad batch limit {tag!r}")
    return int(number)


@dataclass(frozen=True)
class RuntimeInfo:
    """The TensorRT version and GPU of the machine about to run an engine."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass(frozen=True)
class EngineMeta:
    """Everything ``engine.json`` records about a built engine."""

    model: str
    precision: str
    max_batch: int
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    inputs: dict[str, list[int]]  # name -> shape, -1 for the dynamic batch
    outputs: dict[str, list[int]]
    onnx_sha256: str
    engine_sha256: str
    engine_size: int
    builder: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> EngineSpec:
        return EngineSpec(self.model, self.precision, self.max_batch)

    @property
    def runtime(self) -> RuntimeInfo:
        return RuntimeInfo(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["compute_capability"] = list(self.compute_capability)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineMeta:
        try:
            major, minor = (int(v) for v in data["compute_capability"])
            values = {**data, "compute_capability": (major, minor)}
            return cls(**values)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"engine metadata is incomplete or malformed ({err})") from err


def _version_key(version: str) -> tuple[str, ...]:
    """Engines are tied to the TensorRT release: major.minor.patch must match."""
    return tuple(version.split(".")[:3])


def _shown_versions(built: str, here: str) -> tuple[str, str]:
    """major.minor when that tells them apart, else as much as it takes."""
    for parts in (2, 3):
        a, b = ".".join(built.split(".")[:parts]), ".".join(here.split(".")[:parts])
        if a != b:
            return a, b
    short = ".".join(built.split(".")[:2])
    return short, short  # the same release: the GPU is what differs


def check_engine_compat(meta: EngineMeta, runtime: RuntimeInfo) -> None:
    """Raise ModelError when the engine was built for another GPU or TensorRT release."""
    built = meta.runtime
    same_trt = _version_key(built.tensorrt_version) == _version_key(runtime.tensorrt_version)
    same_gpu = (built.compute_capability, built.gpu_name) == (
        runtime.compute_capability,
        runtime.gpu_name,
    )
    if same_trt and same_gpu:
        return
    was, now = _shown_versions(built.tensorrt_version, runtime.tensorrt_version)
    raise ModelError(
        f"engine built with TensorRT {was} on {built.gpu_name} ({built.sm}); "
        f"this machine has TensorRT {now} on {runtime.gpu_name} ({runtime.sm}): "
        f"rebuild it with: ck install package --tags={meta.spec.tags} --reinstall"
    )


def check_batch(meta: EngineMeta, batch_size: int) -> None:
    """Raise ConfigError before the run starts when a batch exceeds the engine's profile."""
    if batch_size > meta.max_batch:
        raise ConfigError(
            f"batch size {batch_size} exceeds the engine's max batch {meta.max_batch}; "
            f"use CK_BATCH_SIZE<={meta.max_batch} or build an engine with "
            f"ck install package --tags={EngineSpec(meta.model, meta.precision, batch_size).tags}"
        )


def read_meta(engine_dir: Path) -> EngineMeta:
    path = Path(engine_dir) / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelError(
            f"{path} is missing: the engine was not built completely; "
            "rebuild it with ck install package ... --reinstall"
        ) from err
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read engine metadata {path}: {err}") from err
    if not isinstance(data, dict):
        raise ModelError(f"engine metadata {path} is not a JSON object")
    return EngineMeta.from_dict(data)


def write_meta(engine_dir: Path, meta: EngineMeta) -> Path:
    path = Path(engine_dir) / META_FILE
    text = json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def read_engine_bytes(plan: Path, meta: EngineMeta) -> bytes:
    """The plan's bytes, after checking its size and sha256 against the metadata."""
    rebuild = f"rebuild it with: ck install package --tags={meta.spec.tags} --reinstall"
    try:
        size = plan.stat().st_size
        if size != meta.engine_size:
            raise ModelError(
                f"engine {plan} is truncated or altered ({size} bytes, "
                f"metadata says {meta.engine_size}); {rebuild}"
            )
        data = plan.read_bytes()
    except OSError as err:
        raise ModelError(f"cannot read engine {plan}: {err}; {rebuild}") from err
    if hashlib.sha256(data).hexdigest() != meta.engine_sha256:
        raise ModelError(f"engine {plan} does not match its recorded sha256; {rebuild}")
    return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, rename; nothing left on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
