"""TensorRT backend: the no-GPU parts for real everywhere; build + run + compare with
ONNX Runtime where TensorRT and a CUDA GPU exist (marked tensorrt / gpu)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_onnx

from ckvision.backends.base import BackendOptions
from ckvision.backends.registry import create_backend
from ckvision.errors import BackendError, ConfigError, DataError, ModelError
from ckvision.models.calibration import CalibrationBatches, CalibrationSource
from ckvision.models.contract import ModelContract
from ckvision.models.engine_meta import EngineMeta, EngineSpec, write_meta

CONTRACT = ModelContract(name="tiny", image_size=8, resize_size=8, num_classes=4)


def _tensorrt_problem() -> str | None:
    from ckvision.backends.tensorrt_backend import check_tensorrt_available

    try:
        check_tensorrt_available()
    except BackendError as err:
        return str(err)
    return None


def test_missing_tensorrt_message_where_tensorrt_absent() -> None:
    from ckvision.backends.tensorrt_backend import check_tensorrt_available, import_tensorrt

    try:
        import_tensorrt()
    except BackendError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendError) as info:
        check_tensorrt_available()
    message = str(info.value)
    assert message.startswith("TensorRT is not installed here (import tensorrt ")
    assert "run program:image-classification-onnxruntime-loadgen-py instead" in message
    assert message.endswith("or install TensorRT 10")
    assert "\n" not in message


def test_backend_registered_and_load_fails_cleanly_without_tensorrt(tmp_path: Path) -> None:
    if _tensorrt_problem() is None:
        pytest.skip("TensorRT and a GPU are available here")
    backend = create_backend("tensorrt", tmp_path / "model.plan", CONTRACT)
    assert backend.name == "tensorrt"
    with pytest.raises(BackendError, match="onnxruntime-loadgen-py"):
        backend.load()
    backend.close()
    backend.close()  # idempotent


def test_batch_checked_from_metadata_before_loading(tmp_path: Path) -> None:
    meta = EngineMeta(
        model="tiny",
        precision="fp32",
        max_batch=4,
        tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA H100",
        compute_capability=(9, 0),
        inputs={"input": [-1, 3, 8, 8]},
        outputs={"logits": [-1, 4]},
        onnx_sha256="0" * 64,
        engine_sha256="0" * 64,
        engine_size=0,
    )
    write_meta(tmp_path, meta)
    backend = create_backend("tensorrt", tmp_path, CONTRACT, BackendOptions(streams=2))
    backend.check_batch(4)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="exceeds the engine's max batch 4"):
        backend.check_batch(5)  # type: ignore[attr-defined]
    assert backend.capabilities.max_batch == 4


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            {"ArgMax:0": [-1], "softmax_tensor:0": [-1, 1001]},
            r"has no output 'logits' .*; its outputs: ArgMax:0, softmax_tensor:0$",
        ),
        (
            {"ArgMax:0": [-1], "logits": [-1, 4]},
            r"has 2 outputs; this backend binds one \('logits'\)",
        ),
    ],
)
def test_engine_output_is_bound_by_the_contract_name(
    tmp_path: Path, outputs: dict[str, list[int]], message: str
) -> None:
    meta = EngineMeta(
        model="tiny",
        precision="fp32",
        max_batch=4,
        tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA H100",
        compute_capability=(9, 0),
        inputs={"input": [-1, 3, 8, 8]},
        outputs=outputs,
        onnx_sha256="0" * 64,
        engine_sha256="0" * 64,
        engine_size=0,
    )
    backend = create_backend("tensorrt", tmp_path, CONTRACT)
    with pytest.raises(ModelError, match=message):
        backend._check_output(meta)  # type: ignore[attr-defined]


def _images(tmp_path: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        path = tmp_path / f"img{i}.npy"
        np.save(path, rng.standard_normal((3, 8, 8)).astype(np.float32))
        files.append(str(path))
    return files


def test_calibration_batches_and_cache(tmp_path: Path) -> None:
    files = _images(tmp_path, 5)
    source = CalibrationSource(files=files, load=np.load, batch_size=2)
    batches = CalibrationBatches(source, tmp_path / "calibration.cache")
    shapes = []
    while (batch := batches.next_batch()) is not None:
        assert batch.dtype == np.float32 and batch.flags["C_CONTIGUOUS"]
        shapes.append(batch.shape)
    assert shapes == [(2, 3, 8, 8), (2, 3, 8, 8)]  # whole batches only
    assert batches.read_cache() is None
    batches.write_cache(b"TRT-1013-EntropyCalibration2\n")
    again = CalibrationBatches(source, tmp_path / "calibration.cache")
    assert again.read_cache() == b"TRT-1013-EntropyCalibration2\n"


def test_calibration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="calibration list is empty"):
        CalibrationSource(files=[], load=np.load)
    source = CalibrationSource(files=[str(tmp_path / "missing.npy")], load=np.load, batch_size=1)
    with pytest.raises(DataError, match="calibration image"):
        CalibrationBatches(source, tmp_path / "c.cache").next_batch()


# ---- real TensorRT: build a tiny engine, run it, compare with ONNX Runtime ----------


def _tiny_onnx(path: Path) -> Path:
    """The tests' tiny model at CONTRACT's size (8x8 in, 4 classes out)."""
    return build_tiny_onnx(path, batch="batch", image=8, classes=4)


def _require_tensorrt() -> None:
    problem = _tensorrt_problem()
    if problem is not None:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {problem}")


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_build_run_and_compare_with_onnxruntime(tmp_path: Path, cuda_graphs: bool) -> None:
    _require_tensorrt()
    import onnxruntime as ort

    from ckvision.models.tensorrt_build import build_engine

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    cache = tmp_path / "timing.cache"
    plan = build_engine(
        onnx_path,
        tmp_path / "engine",
        EngineSpec("tiny", "fp32", 8),
        CONTRACT,
        workspace_mib=256,
        timing_cache=cache,
    )
    assert plan.is_file() and cache.is_file()
    recorded = (plan.parent / "engine.json").read_text()
    assert hashlib.sha256(plan.read_bytes()).hexdigest() in recorded
    batch = np.random.default_rng(2).standard_normal((5, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(["logits"], {"input": batch})
    options = BackendOptions(streams=2, cuda_graphs=cuda_graphs)
    with create_backend("tensorrt", plan.parent, CONTRACT, options) as backend:
        for size in (5, 1, 5):
            got = backend.predict(batch[:size])
            np.testing.assert_allclose(got, expected[:size], rtol=1e-3, atol=1e-4)
        with pytest.raises(ConfigError, match="max batch 8"):
            backend.predict(np.zeros((9, 3, 8, 8), np.float32))
        assert backend.capabilities.max_batch == 8


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_truncated_engine_refused_before_deserialising(tmp_path: Path) -> None:
    _require_tensorrt()
    from ckvision.errors import ModelError
    from ckvision.models.tensorrt_build import build_engine

    plan = build_engine(
        _tiny_onnx(tmp_path / "tiny.onnx"),
        tmp_path / "e",
        EngineSpec("tiny", "fp16", 4),
        CONTRACT,
        workspace_mib=256,
    )
    with open(plan, "r+b") as handle:
        handle.truncate(plan.stat().st_size // 2)
    with pytest.raises(ModelError, match="truncated"):
        create_backend("tensorrt", plan, CONTRACT).load()


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_int8_build_writes_and_reuses_calibration_cache(tmp_path: Path) -> None:
    _require_tensorrt()
    from ckvision.models.tensorrt_build import build_engine

    source = CalibrationSource(files=_images(tmp_path, 8), load=np.load, batch_size=4)
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    spec = EngineSpec("tiny", "int8", 4)
    plan = build_engine(
        onnx_path, tmp_path / "e", spec, CONTRACT, calibration=source, workspace_mib=256
    )
    cache = plan.parent / "calibration.cache"
    assert cache.is_file()
    messages: list[str] = []
    build_engine(
        onnx_path,
        tmp_path / "e",
        spec,
        CONTRACT,
        calibration=source,
        workspace_mib=256,
        log=messages.append,
    )
    assert any("reusing" in m for m in messages)
