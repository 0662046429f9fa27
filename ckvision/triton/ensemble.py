"""The JPEG-in Triton ensemble: ``preprocess`` (JPEG bytes -> model input) -> the classifier.

:func:`write_ensemble` adds two models beside a classifier that
:func:`~ckvision.triton.repository.write_repository` wrote:

* ``preprocess``: a Python-backend model (``preprocess_model.py``) running one of the
  in-process engines of :mod:`ckvision.data.encoded` (``pillow``, ``opencv``; ``dali``
  where the triton env has DALI), with the seed's knobs: instance count, dynamic
  batching delay, engine threads, max batch;
* ``<classifier>_jpeg``: the ensemble, input ``JPEG`` (``TYPE_STRING``, one encoded file
  per batch item), output the classifier's. LoadGen's Triton client or perf_analyzer
  send it JPEG bytes; its statistics (and the per-model ones) give the latency breakdown
  of the preprocessing step too.

The preprocess model imports ckvision from this checkout (its ``CKVISION_PATH``
parameter), so the triton env needs Pillow (``TRITON_VENV_PKGS`` in the Makefile).
"""

from __future__ import annotations

import base64
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.data.encoded import ENGINES
from ckvision.errors import ConfigError, ModelError
from ckvision.fsutil import atomic_dir, atomic_write_json
from ckvision.models.contract import ModelContract
from ckvision.triton.repository import _DTYPES, _NAME, parse_pbtxt

__all__ = [
    "EnsembleSpec",
    "write_ensemble",
    "write_jpeg_input_data",
    "JPEG_INPUT",
    "PREPROCESS_OUTPUT",
]

JPEG_INPUT = "JPEG"
PREPROCESS_OUTPUT = "PIXELS"


@dataclass(frozen=True)
class EnsembleSpec:
    """How the preprocessing step is served (the knobs the seed tunes)."""

    engine: str = "pillow"
    classifier: str = "classifier"
    preprocess_name: str = "preprocess"
    max_batch: int = 8
    instances: int = 1
    max_queue_delay_us: int = 0
    threads: int = 1  # engine threads per instance (DALI's num_threads, else a pool)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(
                f"preprocessing engine {self.engine!r} unknown; use one of "
                + ", ".join(f"using-{e}" for e in ENGINES)
            )
        for name in (self.classifier, self.preprocess_name):
            if not _NAME.match(name):
                raise ConfigError(f"Triton model name {name!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        for field_name in ("max_batch", "instances", "threads"):
            if getattr(self, field_name) < 1:
                raise ConfigError(
                    f"ensemble {field_name.replace('_', ' ')} must be >= 1, "
                    f"got {getattr(self, field_name)}"
                )
        if self.max_queue_delay_us < 0:
            raise ConfigError("Triton max queue delay must be >= 0 microseconds")

    @property
    def ensemble_name(self) -> str:
        return f"{self.classifier}_jpeg"


def _classifier_io(repo: Path, name: str) -> tuple[str, str, int, int]:
    """(input name, output name, output classes, max batch) of the classifier's config."""
    path = repo / name / "config.pbtxt"
    if not path.is_file():
        raise ModelError(f"no classifier {name!r} in {repo}: write it first (ckvision triton-repo)")
    config = parse_pbtxt(path.read_text(encoding="utf-8"))
    inputs, outputs = config.get("input"), config.get("output")
    first_in: Any = (inputs if isinstance(inputs, list) else [inputs])[0]
    first_out: Any = (outputs if isinstance(outputs, list) else [outputs])[0]
    if not isinstance(first_in, dict) or not isinstance(first_out, dict):
        raise ModelError(f"{path}: no input or output; regenerate the classifier")
    dims = first_out["dims"]
    return (
        str(first_in["name"]),
        str(first_out["name"]),
        int(dims[-1] if isinstance(dims, list) else dims),
        int(config.get("max_batch_size", 0)),
    )


def write_ensemble(repo: Path, contract: ModelContract, spec: EnsembleSpec) -> Path:
    """Write (atomically replace) the preprocess model and the ensemble; returns the
    ensemble's model dir."""
    repo = Path(repo)
    dtype = _DTYPES.get(contract.input_dtype)
    if dtype is None:
        raise ConfigError(f"input dtype {contract.input_dtype!r} has no Triton type")
    in_name, out_name, classes, classifier_batch = _classifier_io(repo, spec.classifier)
    if classifier_batch and spec.max_batch > classifier_batch:
        raise ConfigError(
            f"ensemble max batch {spec.max_batch} is above the classifier's {classifier_batch}"
        )
    dims = ", ".join(map(str, contract.input_shape(1)[1:]))
    root = Path(__file__).resolve().parents[2]  # the checkout holding the ckvision package
    params = {
        "ENGINE": spec.engine,
        "THREADS": str(spec.threads),
        "CKVISION_PATH": str(root),
    }
    pre = [
        f'name: "{spec.preprocess_name}"',
        'backend: "python"',
        f"max_batch_size: {spec.max_batch}",
        f'input [ {{ name: "{JPEG_INPUT}" data_type: TYPE_STRING dims: [ 1 ] }} ]',
        f'output [ {{ name: "{PREPROCESS_OUTPUT}" data_type: {dtype} dims: [ {dims} ] }} ]',
        f"instance_group [ {{ count: {spec.instances} kind: KIND_CPU }} ]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {spec.max_queue_delay_us} }}",
        *(
            f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
            for k, v in params.items()
        ),
    ]
    with atomic_dir(repo / spec.preprocess_name) as tmp:
        (tmp / "config.pbtxt").write_text("\n".join(pre) + "\n", encoding="utf-8")
        (tmp / "1").mkdir()
        shutil.copy2(Path(__file__).with_name("preprocess_model.py"), tmp / "1" / "model.py")
        atomic_write_json(tmp / "1" / "contract.json", contract.to_env())
    ensemble = [
        f'name: "{spec.ensemble_name}"',
        'platform: "ensemble"',
        f"max_batch_size: {spec.max_batch}",
        f'input [ {{ name: "{JPEG_INPUT}" data_type: TYPE_STRING dims: [ 1 ] }} ]',
        f'output [ {{ name: "{out_name}" data_type: TYPE_FP32 dims: [ {classes} ] }} ]',
        "ensemble_scheduling { step [",
        f'  {{ model_name: "{spec.preprocess_name}" model_version: -1 '
        f'input_map {{ key: "{JPEG_INPUT}" value: "{JPEG_INPUT}" }} '
        f'output_map {{ key: "{PREPROCESS_OUTPUT}" value: "pixels" }} }},',
        f'  {{ model_name: "{spec.classifier}" model_version: -1 '
        f'input_map {{ key: "{in_name}" value: "pixels" }} '
        f'output_map {{ key: "{out_name}" value: "{out_name}" }} }}',
        "] }",
    ]
    final = repo / spec.ensemble_name
    with atomic_dir(final) as tmp:
        (tmp / "config.pbtxt").write_text("\n".join(ensemble) + "\n", encoding="utf-8")
        (tmp / "1").mkdir()  # an ensemble's version directory is empty
    return final


def write_jpeg_input_data(path: Path, blobs: Sequence[bytes]) -> Path:
    """perf_analyzer's ``--input-data`` JSON sending these encoded files to the ensemble's
    ``JPEG`` input, one per request item in turn (a BYTES element is serialised as its
    4-byte little-endian length, then the bytes)."""
    if not blobs:
        raise ConfigError("perf_analyzer input data needs at least one file")
    data = {
        "data": [
            {JPEG_INPUT: {"b64": base64.b64encode(struct.pack("<I", len(b)) + b).decode()}}
            for b in blobs
        ]
    }
    atomic_write_json(Path(path), data)
    return Path(path)
