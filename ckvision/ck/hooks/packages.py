"""What the CK package installers do: put a model or a dataset into INSTALL_DIR.

Each ``package/*/install.sh`` is one line calling ``python -m ckvision install-model``
or ``install-dataset``; those commands' bodies are :func:`ckvision.models.install.
install_model` and :func:`ckvision.data.install.install_dataset` (names kept here). Every artefact
is written to a temporary path and renamed, so an interrupted install leaves no
half-written model or cache for CK to detect.
"""

from __future__ import annotations

from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.ck.hooks.shell import check_shell_safe, check_shell_safe_values
from ckvision.fsutil import sha256_file
from ckvision.models.install import install_model

__all__ = ["install_model", "install_dataset", "sha256_of", "setup"]  # noqa: F822 - lazy


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


sha256_of = sha256_file  # the one sha256 of a file (kept under this name)


def __getattr__(name: str) -> Any:
    """``install_dataset`` is :func:`ckvision.data.install.install_dataset`, imported on
    first use: the package hooks import this module in ck's Python, without numpy."""
    if name == "install_dataset":
        from ckvision.data.install import install_dataset

        return install_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
