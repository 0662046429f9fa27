"""Soft (detection) hooks: what a detected component exports into its CK env.

Each ``soft/*/customize.py`` re-exports :func:`version_cmd` and :func:`setup`; the
entry's ``customize.ckvision_detect.kind`` picks the detector:

==================  ============================  ======================================
kind                full_path points at            env exported (besides the prefix vars)
==================  ============================  ======================================
python              the interpreter                ``CK_ENV_COMPILER_PYTHON_FILE``
python-package      the package's ``__init__``     ``<PREFIX>_VERSION``
onnx-model          ``model.onnx``                 ``CK_ENV_ONNX_MODEL_*``, ``ML_MODEL_*``
tensorrt-engine     ``model.plan``                 ``CK_ENV_TENSORRT_MODEL_*``, ``ML_MODEL_*``
dataset             ``dataset.json``               ``CK_ENV_DATASET_*``
triton-repository   ``ckvision-triton.json``       ``CK_ENV_TRITON_MODEL_*``, ``ML_MODEL_*``
imagenet-val        ``ILSVRC2012_val_00000001.JPEG``  ``CK_ENV_DATASET_IMAGENET_VAL`` (the
                                                   folder, as ck-env's), ``..._VAL_MAP``
==================  ============================  ======================================
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ckvision.ck.hooks import ck_fatal_hook, ck_hook
from ckvision.ck.hooks.shell import check_shell_safe, check_shell_safe_values
from ckvision.errors import ConfigError, DataError, ModelError
from ckvision.models.contract import MODEL_SIDECAR

__all__ = ["version_cmd", "setup", "limit", "MODEL_SIDECAR", "upstream_model_env"]


def _kind(i: dict[str, Any]) -> dict[str, Any]:
    spec = i.get("customize", {}).get("ckvision_detect")
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ConfigError("soft entry lacks customize.ckvision_detect.kind")
    return spec


def _python_of(i: dict[str, Any]) -> str:
    env = i.get("deps", {}).get("python", {}).get("dict", {}).get("env", {})
    return str(env.get("CK_ENV_COMPILER_PYTHON_FILE") or os.environ.get("CK_PYTHON", "python3"))


def _run_python(python: str, code: str, site: Path | None = None) -> str:
    env = None
    if site is not None:  # the package's own directory first, as its env entry will set it
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
        )
    try:
        out = subprocess.run(  # noqa: S603 - argument list, no shell
            [python, "-c", code], capture_output=True, text=True, timeout=120, check=True, env=env
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise ConfigError(f"cannot run {python}: {err}") from err
    return out.stdout.strip()


def _own_path(python: str) -> list[str]:
    """The directories ``python`` searches by itself (no PYTHONPATH), resolved."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run(  # noqa: S603 - argument list, no shell
            [python, "-c", "import sys; print('\\n'.join(sys.path))"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env=env,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(Path(p).resolve()) for p in out.splitlines() if p]


def _site_of(full_path: Path) -> Path:
    """The directory to put on PYTHONPATH for a package detected by its ``__init__.py``."""
    return full_path.parent.parent


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        error = DataError if what == "dataset" else ModelError
        raise error(f"cannot read {what} metadata {path}: {err}; reinstall the package") from err


def upstream_model_env(
    kind: str, prefix: str, full_path: Path, env: dict[str, str]
) -> dict[str, str]:
    """The variables ck-mlperf's and ck-tensorrt's model soft entries set, same meaning.

    soft:model.onnx (ck-mlperf) sets ``_ROOT``, ``_ONNX_FILENAME``, ``_ONNX_FILEPATH``,
    ``_INPUT_LAYER_NAME``, ``_OUTPUT_LAYER_NAME``, ``_IMAGE_HEIGHT``/``_WIDTH``;
    soft:model.tensorrt (ck-tensorrt) sets ``_ROOT`` and ``_FILENAME`` (the full path).
    """
    out = {f"{prefix}_ROOT": str(full_path.parent)}
    if kind == "tensorrt-engine":
        out[f"{prefix}_FILENAME"] = str(full_path)
        return out
    out[f"{prefix}_ONNX_FILENAME"] = full_path.name
    out[f"{prefix}_ONNX_FILEPATH"] = str(full_path)
    for ours, theirs in (
        ("ML_MODEL_INPUT_LAYER_NAME", "INPUT_LAYER_NAME"),
        ("ML_MODEL_OUTPUT_LAYER_NAME", "OUTPUT_LAYER_NAME"),
        ("ML_MODEL_IMAGE_HEIGHT", "IMAGE_HEIGHT"),
        ("ML_MODEL_IMAGE_WIDTH", "IMAGE_WIDTH"),
    ):
        if env.get(ours):
            out[f"{prefix}_{theirs}"] = env[ours]
    return out


_PYTHON_NAME = re.compile(r"python3\.11$")  # ckvision's pins need Python 3.11


@ck_hook
def limit(i: dict[str, Any]) -> dict[str, Any]:
    """CK's search found every file named ``python3*`` (vim plugins, configs, ...): keep
    the Python 3.11 interpreters, one per real file, the one running ``ck`` first (with
    ``--quiet`` CK registers the first; that interpreter runs our hooks too)."""
    found: dict[str, str] = {}
    for candidate in [sys.executable, *[str(p) for p in i.get("list", [])]]:
        real = os.path.realpath(candidate)
        if real in found or not _PYTHON_NAME.search(os.path.basename(real)):
            continue
        if os.path.isfile(real) and os.access(real, os.X_OK):
            found[real] = candidate
    return {"return": 0, "list": list(found.values()), "skip_sort": "yes"}


@ck_fatal_hook
def version_cmd(i: dict[str, Any]) -> dict[str, Any]:
    spec = _kind(i)
    full_path = Path(i["full_path"])
    # CK calls this first; with --quiet it then deletes an env already registered for
    # the same version before setup() runs, so an unsafe path is refused here, first.
    check_shell_safe_values([full_path], where="detected file")
    kind = spec["kind"]
    if kind == "python":
        version = _run_python(str(full_path), "import platform; print(platform.python_version())")
    elif kind == "python-package":
        code = f"import importlib.metadata as m; print(m.version({spec['distribution']!r}))"
        version = _run_python(_python_of(i), code, site=_site_of(full_path))
    elif kind in ("onnx-model", "tensorrt-engine", "triton-repository"):
        version = str(_read_json(full_path.parent / MODEL_SIDECAR, "model").get("version", "1"))
    elif kind == "dataset":
        version = str(_read_json(full_path, "dataset").get("size", "0"))
    elif kind == "imagenet-val":
        version = "2012"
    else:
        raise ConfigError(f"unknown detector kind {kind!r}")
    # CK writes the version into env.sh (a comment line and the tags) unescaped
    check_shell_safe_values([version], where=f"version of {full_path}")
    return {"return": 0, "version": version, "cmd": ""}


@ck_hook
def setup(i: dict[str, Any]) -> dict[str, Any]:
    spec = _kind(i)
    full_path = Path(i["customize"]["full_path"])
    prefix = i["customize"]["env_prefix"]
    env: dict[str, str] = {prefix: str(full_path.parent), f"{prefix}_FILE": str(full_path)}
    kind = spec["kind"]
    if kind == "python":
        env["CK_ENV_COMPILER_PYTHON_BIN"] = str(full_path.parent)
    elif kind == "python-package":
        env[f"{prefix}_VERSION"] = str(i.get("version", ""))
        env[f"{prefix}_SITE"] = str(_site_of(full_path))  # read by add_dep_sites()
    elif kind in ("onnx-model", "tensorrt-engine", "triton-repository"):
        sidecar = _read_json(full_path.parent / MODEL_SIDECAR, "model")
        env.update({str(k): str(v) for k, v in sidecar.get("env", {}).items()})
        env.update(upstream_model_env(kind, prefix, full_path, env))
    elif kind == "dataset":
        meta = _read_json(full_path, "dataset")
        env[f"{prefix}_NAME"] = str(meta.get("name", ""))
        env[f"{prefix}_KIND"] = str(meta.get("kind", ""))
        env[f"{prefix}_SIZE"] = str(meta.get("size", ""))
    elif kind == "imagenet-val":
        val_map = full_path.parent / "val_map.txt"
        if val_map.is_file():
            env[f"{prefix}_VAL_MAP"] = str(val_map)
    # Everything CK writes into env.sh after this returns: the env (ours and the user's),
    # the install path, and the tags and version on its comment lines.
    merged = {**i.get("env", {}), **env}
    check_shell_safe(merged, where="detected env")
    check_shell_safe_values(
        [i["customize"].get("path_install", ""), i.get("version", "")],
        where=f"detected at {full_path}",
    )
    check_shell_safe_values(i.get("tags") or [], where="tag")
    i["env"].update(env)
    bat = ""
    site = env.get(f"{prefix}_SITE", "")
    if kind == "python-package" and str(Path(site).resolve()) not in _own_path(_python_of(i)):
        # installed beside the interpreter (package:lib-python-ckvision into CK_TOOLS): as
        # ck-env's lib-python softs do, that directory first. A package the interpreter
        # finds by itself gets no PYTHONPATH: it would leak into other Pythons we start.
        bat = f"export PYTHONPATH={site}:${{PYTHONPATH}}\n"
    return {"return": 0, "bat": bat}
