"""Triton model repositories: ``<repo>/<name>/config.pbtxt`` + ``<repo>/<name>/1/<model file>``.

The config is complete (the server runs with ``--disable-auto-complete-config``): its
input and output come from the model contract, so a server that loads it serves exactly
what the dataset was preprocessed for. Backends: ``onnxruntime`` and ``tensorrt`` (real
Triton deployments) and ``python`` (ONNX Runtime inside Triton's Python backend, for
servers that only have that one, such as PyPI's ``nvidia-pytriton``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError, ModelError
from ckvision.fsutil import atomic_dir, atomic_write_json
from ckvision.models.contract import ModelContract

__all__ = ["RepoSpec", "BACKENDS", "config_pbtxt", "parse_pbtxt", "write_repository", "REPO_INFO"]

REPO_INFO = "ckvision-triton.json"  # beside the model dirs: what was generated from what
SIDECAR = "model.json"  # ckvision.program.MODEL_SIDECAR: the contract, as for every model
# backend -> (model file name in the version dir, config line naming the backend)
BACKENDS: dict[str, tuple[str, str]] = {
    "python": ("model.onnx", 'backend: "python"'),
    "onnxruntime": ("model.onnx", 'backend: "onnxruntime"'),
    "tensorrt": ("model.plan", 'platform: "tensorrt_plan"'),
}
_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class RepoSpec:
    """How the model is served: the package's variations."""

    backend: str = "python"
    model_name: str = "classifier"
    max_batch: int = 8
    dynamic_batching: bool = True
    preferred_batch: tuple[int, ...] = ()
    max_queue_delay_us: int = 0  # Triton's default; raise it to trade latency for batches
    instances: int = 1
    kind: str = "KIND_CPU"  # KIND_CPU | KIND_GPU
    ort_threads: int = 1  # python backend: ONNX Runtime intra-op threads per instance
    execution_env: Path | None = None  # python backend: EXECUTION_ENV_PATH (a venv dir)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"Triton backend {self.backend!r} unknown; use one of: {', '.join(BACKENDS)}"
            )
        if not _NAME.match(self.model_name):
            raise ConfigError(
                f"Triton model name {self.model_name!r} must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        for name in ("max_batch", "instances", "ort_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"Triton {name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}"
                )
        if self.max_queue_delay_us < 0:
            raise ConfigError("Triton max queue delay must be >= 0 microseconds")
        if any(not 1 <= b <= self.max_batch for b in self.preferred_batch):
            raise ConfigError(
                f"Triton preferred batch sizes {list(self.preferred_batch)} "
                f"must lie in 1..{self.max_batch}"
            )
        if self.kind not in ("KIND_CPU", "KIND_GPU"):
            raise ConfigError(
                f"Triton instance kind {self.kind!r} unknown; use KIND_CPU or KIND_GPU"
            )


def _output_classes(model_file: Path, contract: ModelContract) -> int:
    """The model's real output width (ONNX), else the contract's classes + label offset."""
    if model_file.suffix == ".onnx":
        import onnx

        try:
            model = onnx.load(str(model_file), load_external_data=False)
        except Exception as err:  # onnx raises its own DecodeError and friends
            raise ModelError(f"cannot read ONNX model {model_file}: {err}") from err
        dims = model.graph.output[0].type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value"):
            return int(dims[-1].dim_value)
    return contract.num_classes + contract.label_offset


def config_pbtxt(spec: RepoSpec, contract: ModelContract, classes: int) -> str:
    """The model's ``config.pbtxt`` text."""
    dtype = _DTYPES.get(contract.input_dtype)
    if dtype is None:
        raise ConfigError(f"input dtype {contract.input_dtype!r} has no Triton type")
    dims = list(contract.input_shape(1)[1:])
    lines = [
        f'name: "{spec.model_name}"',
        BACKENDS[spec.backend][1],
        f"max_batch_size: {spec.max_batch}",
        f'input [ {{ name: "{contract.input_name}" data_type: {dtype} '
        f"dims: [ {', '.join(map(str, dims))} ] }} ]",
        f'output [ {{ name: "{contract.output_name}" data_type: TYPE_FP32 dims: [ {classes} ] }} ]',
        f"instance_group [ {{ count: {spec.instances} kind: {spec.kind} }} ]",
    ]
    if spec.dynamic_batching:
        preferred = (
            f"preferred_batch_size: [ {', '.join(map(str, spec.preferred_batch))} ] "
            if spec.preferred_batch
            else ""
        )
        lines.append(
            f"dynamic_batching {{ {preferred}"
            f"max_queue_delay_microseconds: {spec.max_queue_delay_us} }}"
        )
    params = {}
    if spec.backend == "python":
        params["ORT_THREADS"] = str(spec.ort_threads)
        if spec.execution_env is not None:
            params["EXECUTION_ENV_PATH"] = str(spec.execution_env)
    for key, value in params.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([\[\]{}:,])|([^\s\[\]{}:,"]+))')


def parse_pbtxt(text: str) -> dict[str, Any]:
    """Protobuf text format -> dict; repeated fields (and ``[...]`` lists) become lists.

    Enough of the format for Triton model configs: messages, lists, scalars, strings.
    """
    tokens = [
        m.group(2) or m.group(3) or m.group(4)
        for m in _TOKEN.finditer(text)
        if not m.group(1) and m.group(0).strip()
    ]
    pos = 0

    def value() -> Any:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        if tok.startswith('"'):
            return tok[1:-1].replace('\\"', '"')
        try:
            return int(tok)
        except ValueError:
            try:
                return float(tok)
            except ValueError:
                return tok

    def message(end: str | None) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            item = value()
            if key in out:
                if not isinstance(out[key], list) or not isinstance(item, list):
                    out[key] = [*(out[key] if isinstance(out[key], list) else [out[key]]), item]
                else:
                    out[key] = [*out[key], *item]
            else:
                out[key] = item
            if pos < len(tokens) and tokens[pos] == ",":
                pos += 1
        pos += 1
        return out

    try:
        return message(None)
    except IndexError:
        raise ConfigError("config.pbtxt ends in the middle of a message") from None


def write_repository(repo: Path, model_file: Path, contract: ModelContract, spec: RepoSpec) -> Path:
    """Write (atomically replace) ``repo/<spec.model_name>``; returns that model dir."""
    model_file = Path(model_file)
    want = BACKENDS[spec.backend][0]
    if not model_file.is_file():
        raise ModelError(f"model file {model_file} not found")
    if model_file.suffix != Path(want).suffix:
        raise ModelError(
            f"Triton backend {spec.backend} serves {Path(want).suffix} files, not {model_file.name}"
        )
    classes = _output_classes(model_file, contract)
    if classes < contract.num_classes:
        raise ModelError(
            f"model {model_file.name} outputs {classes} classes but the "
            f"contract says {contract.num_classes}"
        )
    text = config_pbtxt(spec, contract, classes)
    final = Path(repo) / spec.model_name
    with atomic_dir(final) as tmp:
        (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
        version = tmp / "1"
        version.mkdir()
        shutil.copy2(model_file, version / want)
        if spec.backend == "python":
            shutil.copy2(Path(__file__).with_name("python_model.py"), version / "model.py")
    atomic_write_json(
        Path(repo) / SIDECAR,
        {
            "name": contract.name,
            "version": "1",
            "format": f"triton-{spec.backend}",
            "tags": ["model", "triton", contract.name, spec.backend, f"maxbatch.{spec.max_batch}"],
            "source": str(model_file),
            "env": contract.to_env(),
        },
    )
    atomic_write_json(
        Path(repo) / REPO_INFO,
        {
            "model_name": spec.model_name,
            "backend": spec.backend,
            "source": str(model_file),
            "max_batch": spec.max_batch,
            "dynamic_batching": spec.dynamic_batching,
            "instances": spec.instances,
            "kind": spec.kind,
            "contract": contract.to_env(),
        },
    )
    return final
