"""Install a registered model into a directory: ``model.onnx`` and its sidecar.

The sidecar (``model.json``, :data:`MODEL_SIDECAR`) sits next to every model file our
packages install: its name, version, source, sha256 and the contract's ``ML_MODEL_*``
env. ``ckvision install-model`` (the CK packages' and the MLC script's install step)
runs :func:`install_model`; every artefact is written to a temporary path and renamed,
so an interrupted install leaves nothing half-written for CK to detect.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError
from ckvision.fsutil import atomic_write_json, sha256_file
from ckvision.models.contract import MODEL_SIDECAR, ModelContract

__all__ = ["MODEL_SIDECAR", "install_model", "write_sidecar"]

Log = Callable[[str], None]


def install_model(
    name: str, install_dir: Path, *, tags: str = "", mirror: str = "", log: Log = print
) -> Path:
    """Export or download model ``name`` into ``install_dir/model.onnx`` + its sidecar.

    A download is verified against every checksum (and size) the registry declares;
    ``mirror`` (``CKVISION_MODEL_MIRROR``) fetches the same file name from another base URL.
    """
    from ckvision.models.registry import get_model_spec

    spec = get_model_spec(name)
    model_path = Path(install_dir) / "model.onnx"
    if (Path(install_dir) / MODEL_SIDECAR).is_file() and model_path.is_file():
        log(f"{name}: already installed at {model_path}")
        return model_path
    kind, _, where = spec.source.partition(":")
    if kind == "export":
        from ckvision.models.efficientnet import export_efficientnet_lite0

        export_efficientnet_lite0(model_path, progress=log)
    elif kind == "download":
        from ckvision.models.download import download, mirrored_url

        download(
            mirrored_url(where, mirror),
            model_path,
            sha256=spec.sha256,
            md5=spec.md5,
            size=spec.size,
            progress=log,
        )
    else:
        raise ConfigError(f"model {name}: unknown source {spec.source!r}")
    write_sidecar(model_path, spec.contract, tags=tags, source=spec.source)
    log(f"{name}: installed {model_path}")
    return model_path


def write_sidecar(model_path: Path, contract: ModelContract, *, tags: str, source: str) -> None:
    sidecar: dict[str, Any] = {
        "name": contract.name,
        "version": "1",
        "format": "onnx",
        "tags": [t for t in tags.split(",") if t],
        "source": source,
        "sha256": sha256_file(model_path),
        "env": {**contract.to_env(), "ML_MODEL_DATA_TYPE": "fp32"},  # weights precision
    }
    atomic_write_json(model_path.parent / MODEL_SIDECAR, sidecar)
