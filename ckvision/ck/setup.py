"""Set up classic CK for this repository: register it, detect software, install packages.

Idempotent: what is already registered, detected or installed is left alone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ckvision.errors import CkVisionError
from ckvision.experiments.ck_tool import ck_lines, run_ck

__all__ = ["REPO_ALIAS", "repo_root", "repo_known", "setup_ck", "DEFAULT_PACKAGES"]

REPO_ALIAS = "ck-mlperf-vision"
# Our soft entries by UID: upstream repositories (ck-env, ck-mlperf, ck-tensorrt) define soft
# entries with the same tags, so detection names ours explicitly and never asks which one.
PLATFORM_INIT_UID = "a7101da7560349a1"  # platform.init:generic-linux-ckvision
PYTHON_SOFT_UID = "a380fa809f07a727"  # soft:compiler.python.ckvision
# (tags of the soft entry, python module whose file CK registers, soft UID)
_PYTHON_LIBS = (
    ("lib,python-package,ckvision", "ckvision", "c373dee788e5ac41"),
    ("lib,python-package,loadgen", "mlperf_loadgen", "a9dbf582d6583d8e"),
    ("lib,python-package,onnxruntime", "onnxruntime", "3ceca44ab3067ada"),
    ("lib,python-package,numpy", "numpy", "c78a4a8be464c5b6"),
    ("lib,python-package,torch", "torch", "439b9b230bfe4819"),
    ("lib,python-package,tritonclient", "tritonclient", "b8b714f77dd3e28a"),
)
DEFAULT_PACKAGES = (
    "model,onnx,efficientnet-lite0,fp32",
    # the sample set in the demo model's preprocessing variation (side/crop/library/inter)
    "dataset,imagenet,preprocessed,ckvision-sample,side.224,crop.875,using-pillow,inter.linear,rgb8",
)


def repo_root() -> Path:
    """The checkout this package runs from (where .ckr.json is)."""
    root = Path(__file__).resolve().parents[2]  # ckvision/ck/setup.py -> checkout
    if not (root / ".ckr.json").is_file():
        raise CkVisionError(f"{root} is not a ck-mlperf-vision checkout (no .ckr.json)")
    return root


def _has_env(tags: str) -> bool:
    return any(":env:" in line for line in ck_lines(["search", "env", f"--tags={tags}"]))


def _has_env_for(tags: str, path: Path) -> bool:
    """An env entry with ``tags`` for this very file (ck-env may have detected another
    interpreter's numpy or python with the same tags: that one does not run ckvision)."""
    out = run_ck(
        ["search", "env", f"--tags={tags}", "--add_meta", "--out=json"], capture=True
    ).stdout
    try:
        found = json.loads(out[out.index("{") :]).get("lst", [])
    except ValueError:
        return False
    want = os.path.abspath(path)  # not resolved: a venv's python links to the system one
    return any(
        os.path.abspath(e.get("meta", {}).get("customize", {}).get("full_path", "")) == want
        for e in found
    )


def register_repo(log: Callable[[str], None] = print) -> None:
    root = repo_root()
    where = run_ck(["where", f"repo:{REPO_ALIAS}"], capture=True) if repo_known() else None
    if where is not None:
        registered = Path(where.stdout.strip().splitlines()[-1]).resolve()
        if registered != root:
            raise CkVisionError(
                f"repo:{REPO_ALIAS} is already registered at {registered}; remove it with "
                f"'ck rm repo:{REPO_ALIAS} --force' (keeps files) and run this again"
            )
        log(f"ck: repo:{REPO_ALIAS} already registered at {root}")
        return
    run_ck(["add", f"repo:{REPO_ALIAS}", f"--path={root}", "--quiet"], capture=True)
    log(f"ck: registered repo:{REPO_ALIAS} at {root}")


def repo_known() -> bool:
    """Whether this CK knows our repository (so its packages can be installed)."""
    return any(line == REPO_ALIAS for line in ck_lines(["list", "repo"]))


def detect_software(log: Callable[[str], None] = print) -> None:
    wanted = [("compiler,lang-python", Path(sys.executable), PYTHON_SOFT_UID)]
    for tags, module, soft_uid in _PYTHON_LIBS:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            log(f"ck: {module} is not installed; skipping its detection")
            continue
        wanted.append((tags, Path(spec.origin), soft_uid))
    for tags, path, soft_uid in wanted:
        if _has_env_for(tags, path):
            log(f"ck: {tags} already detected")
            continue
        run_ck(["detect", f"soft:{soft_uid}", f"--full_path={path}", "--quiet"], capture=True)
        log(f"ck: detected {tags} at {path}")


def install_packages(
    tags_list: tuple[str, ...] = DEFAULT_PACKAGES, log: Callable[[str], None] = print
) -> None:
    for tags in tags_list:
        if _has_env(tags):
            log(f"ck: package {tags} already installed")
            continue
        log(f"ck: installing package {tags} ...")
        run_ck(["install", "package", f"--tags={tags}", "--quiet"])


def setup_ck(log: Callable[[str], None] = print) -> None:
    register_repo(log)
    run_ck(
        ["detect", "platform.os", f"--platform_init_uoa={PLATFORM_INIT_UID}", "--quiet"],
        capture=True,
    )
    detect_software(log)
    install_packages(log=log)
