"""PyTorch backend on CPU through the model contract, checked against ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ckvision.backends.base import BackendOptions
from ckvision.backends.registry import create_backend
from ckvision.errors import BackendError, ConfigError, ModelError
from ckvision.models.contract import ModelContract

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

TINY = ModelContract(name="tiny", image_size=16, resize_size=16, num_classes=5)


def _tiny_models(tmp_path: Path) -> tuple[Path, Path]:
    """The same tiny CNN as TorchScript and as ONNX."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    ).eval()
    example = torch.zeros(1, 3, 16, 16)
    script = tmp_path / "tiny.pt"
    torch.jit.trace(model, example).save(str(script))
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        model,
        (example,),
        str(onnx_path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}},
        opset_version=17,
        dynamo=False,
    )
    return script, onnx_path


def _ort(onnx_path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: batch})
    return np.asarray(out)


def test_torchscript_on_cpu_matches_onnxruntime(tmp_path: Path) -> None:
    script, onnx_path = _tiny_models(tmp_path)
    batch = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    threads = torch.get_num_threads()
    with create_backend("pytorch", script, TINY, BackendOptions(threads=1)) as backend:
        got = backend.predict(batch)
        assert got.dtype == np.float32 and got.shape == (4, 5)
        np.testing.assert_allclose(got, _ort(onnx_path, batch), rtol=1e-4, atol=1e-5)
        assert backend.version()["torch"] == torch.__version__
        assert backend.capabilities.device == "cpu"
    assert torch.get_num_threads() == 1
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (BackendOptions(precision="fp16"), ConfigError, "fp16 is not supported on CPU"),
        (BackendOptions(device="tpu"), ConfigError, "CK_DEVICE='tpu' unknown"),
        (BackendOptions(precision="bf16"), ConfigError, "CK_PRECISION='bf16' unknown"),
        (BackendOptions(cuda_graphs=True), ConfigError, "CUDA graphs need CK_DEVICE=cuda"),
    ],
)
def test_bad_options_refused(
    tmp_path: Path, options: BackendOptions, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        create_backend("pytorch", tmp_path / "x.pt", TINY, options).load()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_unavailable_is_one_line(tmp_path: Path) -> None:
    backend = create_backend("pytorch", tmp_path / "x.pt", TINY, BackendOptions(device="cuda"))
    with pytest.raises(BackendError, match="^CUDA is not available to PyTorch here") as info:
        backend.load()
    assert "\n" not in str(info.value)


def test_unknown_model_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="TorchScript model .* not found"):
        create_backend("pytorch", tmp_path / "x.pt", TINY).load()
    with pytest.raises(ModelError, match="no PyTorch definition for model 'tiny'"):
        create_backend("pytorch", tmp_path / "x.onnx", TINY).load()


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_fp16_and_graphs(tmp_path: Path, graphs: bool) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    script, onnx_path = _tiny_models(tmp_path)
    batch = np.random.default_rng(2).standard_normal((3, 3, 16, 16)).astype(np.float32)
    options = BackendOptions(device="cuda", precision="fp16", cuda_graphs=graphs)
    with create_backend("pytorch", script, TINY, options) as backend:
        for _ in range(2):
            got = backend.predict(batch)
            np.testing.assert_allclose(got, _ort(onnx_path, batch), rtol=2e-2, atol=2e-2)
