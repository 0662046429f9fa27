"""The ONNX Runtime backend against tiny models built in the fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from conftest import build_tiny_onnx, tiny_logits

from ckvision.backends import BackendOptions, create_backend
from ckvision.backends.onnxruntime_backend import OnnxRuntimeBackend
from ckvision.errors import BackendError, ModelError
from ckvision.models.contract import ModelContract


def test_predicts_like_numpy(
    tiny_onnx_model: Path, tiny_contract: ModelContract, tiny_images: np.ndarray
) -> None:
    backend = create_backend(
        "onnxruntime", tiny_onnx_model, tiny_contract, BackendOptions(threads=1)
    )
    assert isinstance(backend, OnnxRuntimeBackend)
    with backend:
        backend.load()  # idempotent
        logits = backend.predict(tiny_images[:5])
        assert logits.dtype == np.float32 and logits.shape == (5, 10)
        np.testing.assert_allclose(logits, tiny_logits(tiny_images[:5]), rtol=1e-4, atol=1e-5)
        assert backend.capabilities.max_batch == 0
        version = backend.version()
        assert version["onnxruntime"] == onnxruntime.__version__
        assert version["providers"] == "CPUExecutionProvider"
    backend.close()  # idempotent


def test_fixed_batch_model_pads_small_batches(
    tmp_path: Path, tiny_contract: ModelContract, tiny_images: np.ndarray
) -> None:
    model = build_tiny_onnx(tmp_path / "b4.onnx", batch=4)
    with create_backend("onnxruntime", model, tiny_contract) as backend:
        assert backend.capabilities.max_batch == 4
        logits = backend.predict(tiny_images[:1])
        assert logits.shape == (1, 10)
        np.testing.assert_allclose(logits, tiny_logits(tiny_images[:1]), rtol=1e-4, atol=1e-5)
        with pytest.raises(BackendError, match="above the model's fixed batch 4"):
            backend.predict(tiny_images[:5])


def test_input_mismatch_is_a_model_error(tmp_path: Path, tiny_contract: ModelContract) -> None:
    model = build_tiny_onnx(tmp_path / "big.onnx", image=32)
    backend = create_backend("onnxruntime", model, tiny_contract)
    with pytest.raises(
        ModelError,
        match=r"model big.onnx expects input \['N', 3, 32, 32\] but "
        r"the dataset/contract gives \['N', 3, 16, 16\]",
    ):
        backend.load()


def test_too_few_classes_is_a_model_error(tmp_path: Path, tiny_contract: ModelContract) -> None:
    model = build_tiny_onnx(tmp_path / "few.onnx", classes=5)
    wrong = r"output 'logits' has shape \[.*5\]; the contract says \[N, 10\]"
    with pytest.raises(ModelError, match=wrong):
        create_backend("onnxruntime", model, tiny_contract).load()


def test_missing_and_corrupt_model_files(tmp_path: Path, tiny_contract: ModelContract) -> None:
    with pytest.raises(ModelError, match="not found"):
        create_backend("onnxruntime", tmp_path / "none.onnx", tiny_contract).load()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load model") as info:
        create_backend("onnxruntime", bad, tiny_contract).load()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("provider", "missing"),
    [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")],
)
def test_missing_provider_is_a_backend_error(
    tiny_onnx_model: Path, tiny_contract: ModelContract, provider: str, missing: str
) -> None:
    if missing in onnxruntime.get_available_providers():
        pytest.skip(f"{missing} is available here")
    backend = create_backend(
        "onnxruntime", tiny_onnx_model, tiny_contract, BackendOptions(execution_provider=provider)
    )
    with pytest.raises(BackendError, match=f"onnxruntime has no {missing} here; install"):
        backend.load()


def test_cpu_and_gpu_onnxruntime_together_is_one_line() -> None:
    """onnxruntime and onnxruntime-gpu share one module: both installed is refused, naming
    both versions; one of them (this venv: the CPU one) passes."""
    from ckvision.backends.onnxruntime_backend import check_one_onnxruntime
    from ckvision.errors import ConfigError

    both = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}
    with pytest.raises(ConfigError, match=r"onnxruntime 1\.32\.0 .*onnxruntime-gpu 1\.31\.1"):
        check_one_onnxruntime(both.get)
    check_one_onnxruntime({"onnxruntime-gpu": "1.31.1"}.get)
    check_one_onnxruntime({"onnxruntime": "1.32.0"}.get)
    check_one_onnxruntime()  # the real environment has exactly one
