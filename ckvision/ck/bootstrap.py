"""Install ckvision and its pinned dependencies into a CK package's install directory.

``package:lib-python-ckvision`` runs this with the interpreter CK detected, which may have
nothing but the standard library: this module imports nothing else, so ``ck pull repo``
followed by ``ck run program:... --quiet`` works on a machine where only ``ck`` is
installed. It does what ck-env's ``lib-python-*`` packages do (``pip install --target``
into CK_TOOLS, never into the user's environment), with the exact pins of this
repository's ``pyproject.toml`` (the runtime dependencies plus the ``export`` and
``sample`` extras the embedded model and sample dataset packages need). The target is
built beside its final name and renamed into place: an interrupted install leaves nothing
that looks installed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

from ckvision.errors import CkVisionError, ConfigError
from ckvision.fsutil import atomic_dir

__all__ = ["requirements", "install", "main", "SITE_DIR", "EXTRAS"]

SITE_DIR = "python"  # <install dir>/python holds ckvision and every dependency
EXTRAS = ("export", "sample")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def requirements(pyproject: Path, extras: Sequence[str] = EXTRAS) -> list[str]:
    """The pinned requirements: ``project.dependencies`` plus the named extras."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot read the pins in {pyproject}: {err}") from err
    pins = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise ConfigError(f"{pyproject} has no extra {extra!r}")
        pins.extend(optional[extra])
    unpinned = [p for p in pins if "==" not in p]
    if unpinned:
        raise ConfigError(f"unpinned requirements in {pyproject}: {', '.join(unpinned)}")
    return pins


def install(
    install_dir: Path, *, root: Path | None = None, log: Callable[[str], None] = print
) -> Path:
    """pip-install ckvision (from ``root``) and its pins into ``install_dir/python``."""
    root = root or repo_root()
    pins = requirements(root / "pyproject.toml")
    site = Path(install_dir) / SITE_DIR
    log(f"ckvision: installing ckvision and {len(pins)} pinned packages into {site}")
    with atomic_dir(site) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--target",
            str(tmp),
            *pins,
            str(root),
        ]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)  # noqa: S603
        if done.returncode != 0:
            raise CkVisionError(
                f"pip could not install ckvision's pinned dependencies for {sys.executable} "
                f"(exit {done.returncode}; see pip's output above); nothing was installed"
            )
    return site / "ckvision" / "__init__.py"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ckvision.ck.bootstrap", description=__doc__)
    parser.add_argument("--install-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        install(args.install_dir)
    except CkVisionError as err:
        print(f"ckvision: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
