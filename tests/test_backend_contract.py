"""One contract every registered backend passes; a new backend gets it by registering.

For each name in the registry: the same inputs from many threads at once give exactly
the serial results (this catches shared per-call buffers, e.g. the padding of a
fixed-batch model); batch 1 and odd batches give one checked output row per sample, as
the model contract says (:func:`ckvision.harness.outputs.decode` accepts them); a batch
of the wrong shape or dtype is one clear :class:`BackendError`. A backend that cannot
run here (TensorRT needs an NVIDIA GPU) is skipped with the reason; a registered backend
this file knows nothing about fails, so none goes untested by accident.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import _WEIGHT, IMAGE, TINY_CONTRACT, build_tiny_onnx, tiny_logits

from ckvision.backends import BackendOptions, create_backend
from ckvision.backends.base import Backend
from ckvision.backends.registry import backend_names
from ckvision.errors import BackendError
from ckvision.harness.outputs import decode

pytestmark = pytest.mark.timeout(120)

CONTRACT = TINY_CONTRACT
ODD_BATCHES = (1, 3, 5, 7, 8)


def _torchscript(path: Path) -> Path:
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):  # the tiny ONNX model's function
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.from_numpy(_WEIGHT), requires_grad=False)

        def forward(self, x: object) -> object:
            return x.mean(dim=(2, 3)) @ self.weight  # type: ignore[attr-defined]

    torch.jit.trace(Tiny().eval(), torch.zeros(1, 3, IMAGE, IMAGE)).save(str(path))
    return path


def _tensorrt(path: Path) -> Path:
    from ckvision.backends.tensorrt_backend import check_tensorrt_available
    from ckvision.errors import CkVisionError

    try:
        check_tensorrt_available()
    except CkVisionError as err:
        pytest.skip(f"tensorrt cannot run here: {err}")
    pytest.skip("tensorrt: its engine fixture lives in tests/test_tensorrt_backend.py (GPU)")
    return path


def _triton(d: Path) -> Path:
    """A python-backend repository of the tiny model; the backend starts its own server."""
    pytest.importorskip("tritonclient.grpc")
    from ckvision.errors import CkVisionError
    from ckvision.triton.repository import RepoSpec, write_repository
    from ckvision.triton.server import find_triton

    try:
        find_triton()
    except CkVisionError as err:
        pytest.skip(f"no Triton server here: {err}")
    write_repository(d / "repo", build_tiny_onnx(d / "tiny.onnx"), CONTRACT, RepoSpec(max_batch=8))
    return d / "repo"


# registry name -> (variant, how to make its model file in a temp dir, tolerance to truth)
MODELS: dict[str, list[tuple[str, Callable[[Path], Path], float | None]]] = {
    "null": [("null", lambda d: d / "none", None)],
    "onnxruntime": [
        ("dynamic", lambda d: build_tiny_onnx(d / "tiny.onnx"), 1e-5),
        ("fixed-batch-8", lambda d: build_tiny_onnx(d / "tiny8.onnx", batch=8), 1e-5),
    ],
    "pytorch": [("torchscript", lambda d: _torchscript(d / "tiny.pt"), 1e-5)],
    "tensorrt": [("engine", _tensorrt, None)],
    "triton": [("python-backend", _triton, 1e-5)],
}
CASES = [
    (name, variant)
    for name in backend_names()
    for variant, _make, _tol in MODELS.get(name, [("unknown", lambda d: d, None)])
]


def test_every_registered_backend_has_a_case_here() -> None:
    """Adding a backend is one module and one registration; its contract case here is
    the third thing, and this fails until it exists."""
    missing = sorted(set(backend_names()) - set(MODELS))
    assert not missing, f"registered backends without a case in MODELS: {missing}"


@pytest.fixture(params=CASES, ids=[f"{n}-{v}" for n, v in CASES])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name, variant = request.param
    if name not in MODELS:
        pytest.fail(
            f"backend {name!r} is registered but tests/test_backend_contract.py has "
            "no model for it: add one to MODELS (or a skip with the reason)"
        )
    _variant, make, tolerance = next(m for m in MODELS[name] if m[0] == variant)
    made = create_backend(name, make(tmp_path), CONTRACT, BackendOptions(threads=1))
    made.load()
    made.tolerance = tolerance  # type: ignore[attr-defined]
    return made


def _batches(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 3, IMAGE, IMAGE)).astype(np.float32) for n in ODD_BATCHES]


def test_batch_one_and_odd_batches_fit_the_contract(backend: Backend) -> None:
    for batch in _batches(1):
        out = np.asarray(backend.predict(batch))
        classes, top = decode(out, len(batch), CONTRACT, backend.name)  # the harness's check
        assert out.shape == (len(batch), CONTRACT.output_width)
        assert classes.shape == (len(batch),) and top.shape[0] == len(batch)
        tolerance = backend.tolerance  # type: ignore[attr-defined]
        if tolerance is not None:
            np.testing.assert_allclose(out, tiny_logits(batch), rtol=tolerance, atol=tolerance)
    backend.close()


def test_many_threads_at_once_give_the_serial_results(backend: Backend) -> None:
    batches = _batches(2) * 3
    serial = [np.array(backend.predict(b)) for b in batches]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(worker, len(batches), 8):
                for _ in range(25):
                    results.setdefault(i, np.array(backend.predict(batches[i])))
                    np.testing.assert_array_equal(backend.predict(batches[i]), serial[i])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[0]
    for i, got in results.items():
        np.testing.assert_array_equal(got, serial[i])
    backend.close()


@pytest.mark.parametrize(
    "shape", [(2, 3, IMAGE + 1, IMAGE), (2, 3, IMAGE), (2, IMAGE, IMAGE, 3), (0, 3, IMAGE, IMAGE)]
)
def test_wrong_input_shape_is_one_clear_error(backend: Backend, shape: tuple[int, ...]) -> None:
    with pytest.raises(BackendError, match=f"^backend {backend.name}: ") as info:
        backend.predict(np.zeros(shape, np.float32))
    assert "\n" not in str(info.value)
    with pytest.raises(BackendError, match="batch of float64; model tiny takes float32"):
        backend.predict(np.zeros((1, 3, IMAGE, IMAGE), np.float64))
    backend.close()
