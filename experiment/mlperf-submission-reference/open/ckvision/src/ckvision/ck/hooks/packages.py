"""What the CK package installers do: put a model or a dataset into INSTALL_DIR.

Each ``package/*/install.sh`` is one line calling ``python -m ckvision install-model``
or ``install-dataset``; these functions are that command's body. Every artefact
is written to a temporary path and renamed, so an interrupted install leaves no
half-written model or cache for CK to detect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.ck.hooks.shell import check_shell_safe, check_shell_safe_values
from ckvision.errors import ConfigError
from ckvision.fsutil import atomic_write_json
from ckvision.models.contract import ModelContract
from ckvision.program import MODEL_SIDECAR

__all__ = ["install_model", "install_dataset", "sha256_of", "setup"]

Log = Callable[[str], None]


@ck_hook
def setup(i: dict[str, Any]) -> dict[str, Any]:
    """Package ``customize.py`` hook: CK calls it just before it writes the install script.

    Refuses (one line, nothing installed) any env name or value, install path or tag
    that CK would write unescaped into that script; see :mod:`ckvision.ck.hooks.shell`.
    """
    check_shell_safe(i.get("env") or {}, where="--env")
    check_shell_safe(i.get("new_env") or {}, where="install env")
    check_shell_safe_values([i.get("install_path", "")], where="install path")
    check_shell_safe_values(i.get("tags") or [], where="tag")
    return {"return": 0}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    _write_sidecar(model_path, spec.contract, tags=tags, source=spec.source)
    log(f"{name}: installed {model_path}")
    return model_path


def _write_sidecar(model_path: Path, contract: ModelContract, *, tags: str, source: str) -> None:
    sidecar: dict[str, Any] = {
        "name": contract.name,
        "version": "1",
        "format": "onnx",
        "tags": [t for t in tags.split(",") if t],
        "source": source,
        "sha256": sha256_of(model_path),
        "env": {**contract.to_env(), "ML_MODEL_DATA_TYPE": "fp32"},  # weights precision
    }
    atomic_write_json(model_path.parent / MODEL_SIDECAR, sidecar)


def install_dataset(
    kind: str,
    install_dir: Path,
    env: Mapping[str, str],
    *,
    source: Path | None = None,
    count: int = 0,
    log: Log = print,
) -> Path:
    """Preprocess the embedded sample set or a user's ImageNet val folder into the
    rgb8 cache of the variation in ``env`` (see :mod:`ckvision.data.install`)."""
    from ckvision.data.install import install_dataset as install

    return install(kind, install_dir, env, source=source, count=count, log=log)
