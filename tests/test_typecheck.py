"""mypy over the whole package, --strict over the TensorRT / CUDA modules: TensorRT API
misuse fails CI even where TensorRT cannot run.

The tensorrt-stubs wheel (``pip install --no-deps tensorrt-stubs==10.13.0.35.1``) puts
``tensorrt/__init__.pyi`` and ``tensorrt_bindings/*.pyi`` into site-packages without a
``py.typed`` marker, so mypy ignores them (PEP 561), and a few generated signatures are
not valid Python (a parameter named ``in``, a required parameter after defaults). This
test copies them into a temporary stub directory, repairing those lines, and points
``MYPYPATH`` at it. Run it by hand with ``python tests/test_typecheck.py``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRICT_MODULES = (
    "ckvision/models/engine_meta.py",
    "ckvision/models/tensorrt_build.py",
    "ckvision/models/calibration.py",
    "ckvision/backends/tensorrt_backend.py",
    "ckvision/cuda.py",
    "ckvision/availability.py",
)
_STUBS = "tensorrt-stubs"
_FIXES = (
    (re.compile(r"\bin: "), "in_: "),  # `in` is a keyword
    (re.compile(r"(channel_axis: int)\)"), r"\1 = ...)"),  # required after defaults
    (re.compile(r"^import tensorrt_libs.*$", re.M), ""),  # not part of the stubs
)


def prepare_stubs(dest: Path) -> Path:
    """Copy the installed tensorrt stubs into ``dest`` with generator bugs repaired."""
    try:
        files = importlib.metadata.distribution(_STUBS).files or []
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError(
            f"{_STUBS} is not installed: pip install --no-deps {_STUBS}==10.13.0.35.1"
        ) from err
    for file in files:
        if file.suffix != ".pyi":
            continue
        text = Path(str(file.locate())).read_text(encoding="utf-8")
        for pattern, replacement in _FIXES:
            text = pattern.sub(replacement, text)
        target = dest / str(file)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return dest


def run_mypy(
    stub_dir: Path, paths: tuple[str, ...] = STRICT_MODULES
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(prepare_stubs(stub_dir))}
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "mypy.ini"),
        "--no-incremental",
        *paths,
    ]
    return subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_tensorrt_modules_pass_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    result = run_mypy(tmp_path / "stubs")
    assert result.returncode == 0, result.stdout + result.stderr


def test_whole_package_passes_mypy(tmp_path: Path) -> None:
    """Every module of ckvision (the TensorRT / CUDA ones strictly, see mypy.ini)."""
    pytest.importorskip("mypy")
    result = run_mypy(tmp_path / "stubs", ("ckvision",))
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_sees_the_tensorrt_stubs(tmp_path: Path) -> None:
    """Misuse is caught: the stubs are really used, not silently replaced by Any."""
    pytest.importorskip("mypy")
    bad = tmp_path / "misuse.py"
    bad.write_text(
        "import tensorrt as trt\n\n\n"
        "def run(context: trt.IExecutionContext, stream: int) -> None:\n"
        "    context.execute_async_v2([0], stream)\n"
        "    context.set_tensor_address('input', 'not an address')\n",
        encoding="utf-8",
    )
    result = run_mypy(tmp_path / "stubs", (str(bad),))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "execute_async_v2" in result.stdout
    assert 'incompatible type "str"; expected "int"' in result.stdout


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        done = run_mypy(Path(tmp))
    print(done.stdout + done.stderr, end="")
    sys.exit(done.returncode)
