"""Set up classic CK for this repository: register it, detect software, install packages.

Idempotent: what is already registered, detected or installed is left alone.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from ckvision.ck.tool import ck_lines, run_ck
from ckvision.errors import CkVisionError

__all__ = ["REPO_ALIAS", "repo_root", "setup_ck", "DEFAULT_PACKAGES"]

REPO_ALIAS = "ck-mlperf-vision"
# (tags of the soft entry, python module whose file CK registers)
_PYTHON_LIBS = (
    ("lib,python-package,ckvision", "ckvision"),
    ("lib,python-package,loadgen", "mlperf_loadgen"),
    ("lib,python-package,onnxruntime", "onnxruntime"),
    ("lib,python-package,numpy", "numpy"),
    ("lib,python-package,torch", "torch"),
)
DEFAULT_PACKAGES = (
    "model,onnx,efficientnet-lite0,fp32",
    "dataset,imagenet,preprocessed,sample",
)


def repo_root() -> Path:
    """The checkout this package runs from (where .ckr.json is)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".ckr.json").is_file():
        raise CkVisionError(f"{root} is not a ck-mlperf-vision checkout (no .ckr.json)")
    return root


def _has_env(tags: str) -> bool:
    return any(":env:" in line for line in ck_lines(["search", "env", f"--tags={tags}"]))


def register_repo(log: Callable[[str], None] = print) -> None:
    root = repo_root()
    where = run_ck(["where", f"repo:{REPO_ALIAS}"], capture=True) if _repo_known() else None
    if where is not None:
        registered = Path(where.stdout.strip().splitlines()[-1]).resolve()
        if registered != root:
            raise CkVisionError(
                f"repo:{REPO_ALIAS} is already registered at {registered}; remove it with "
                f"'ck rm repo:{REPO_ALIAS} --quiet' (keeps files) and run this again"
            )
        log(f"ck: repo:{REPO_ALIAS} already registered at {root}")
        return
    run_ck(["add", f"repo:{REPO_ALIAS}", f"--path={root}", "--quiet"], capture=True)
    log(f"ck: registered repo:{REPO_ALIAS} at {root}")


def _repo_known() -> bool:
    return any(line == REPO_ALIAS for line in ck_lines(["list", "repo"]))


def detect_software(log: Callable[[str], None] = print) -> None:
    wanted = [("compiler,lang-python", Path(sys.executable))]
    for tags, module in _PYTHON_LIBS:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            log(f"ck: {module} is not installed; skipping its detection")
            continue
        wanted.append((tags, Path(spec.origin)))
    for tags, path in wanted:
        if _has_env(tags):
            log(f"ck: {tags} already detected")
            continue
        run_ck(["detect", "soft", f"--tags={tags}", f"--full_path={path}", "--quiet"],
               capture=True)
        log(f"ck: detected {tags} at {path}")


def install_packages(tags_list: tuple[str, ...] = DEFAULT_PACKAGES,
                     log: Callable[[str], None] = print) -> None:
    for tags in tags_list:
        if _has_env(tags):
            log(f"ck: package {tags} already installed")
            continue
        log(f"ck: installing package {tags} ...")
        run_ck(["install", "package", f"--tags={tags}", "--quiet"])


def setup_ck(log: Callable[[str], None] = print) -> None:
    register_repo(log)
    run_ck(["detect", "platform.os", "--platform_init_uoa=generic-linux", "--quiet"],
           capture=True)
    detect_software(log)
    install_packages(log=log)
