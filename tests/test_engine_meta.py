"""Engine tags, metadata, compatibility and file checks: everything around TensorRT
that needs no GPU, run for real."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ckvision.errors import CkVisionError, ConfigError, ModelError
from ckvision.models import engine_meta
from ckvision.models.contract import ModelContract
from ckvision.models.engine_meta import (
    EngineMeta,
    EngineSpec,
    RuntimeInfo,
    check_batch,
    check_engine_compat,
    parse_engine_tags,
    read_engine_bytes,
    read_meta,
    write_bytes_atomic,
    write_meta,
)

BASE = "model,tensorrt,efficientnet-lite0,converted-from-onnx"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (f"{BASE},fp16,maxbatch.32", EngineSpec("efficientnet-lite0", "fp16", 32)),
        (f"{BASE},int8,maxbatch.1", EngineSpec("efficientnet-lite0", "int8", 1)),
        (f"{BASE},fp32", EngineSpec("efficientnet-lite0", "fp32", 1)),
        (BASE, EngineSpec("efficientnet-lite0", "fp32", 1)),
        (" maxbatch.8 , resnet50 , fp16 ", EngineSpec("resnet50", "fp16", 8)),
        (["model", "tensorrt", "resnet50", "maxbatch.128"], EngineSpec("resnet50", "fp32", 128)),
    ],
)
def test_parse_engine_tags_valid(tags: str | list[str], expected: EngineSpec) -> None:
    assert parse_engine_tags(tags) == expected


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        (f"{BASE},bf16,maxbatch.8", "unknown tags"),
        (f"{BASE},fp16,int8", "two precisions"),
        (f"{BASE},fp16,maxbatch.0", "bad batch limit 'maxbatch.0'"),
        (f"{BASE},fp16,maxbatch.x", "bad batch limit 'maxbatch.x'"),
        (f"{BASE},fp16,maxbatch.", "bad batch limit 'maxbatch.'"),
        (f"{BASE},fp16,maxbatch", "bad batch limit 'maxbatch'"),
        (f"{BASE},fp16,maxbatch.-2", "bad batch limit"),
        (f"{BASE},maxbatch.2,maxbatch.4", "two batch limits"),
        ("model,tensorrt,fp16", "no model name"),
    ],
)
def test_parse_engine_tags_invalid(tags: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        parse_engine_tags(tags)
    message = str(info.value)
    assert "\n" not in message
    assert "fp32|fp16|int8,maxbatch.N" in message


def test_spec_tags_round_trip_and_dir_name() -> None:
    spec = EngineSpec("resnet50", "int8", 16)
    assert parse_engine_tags(spec.tags) == spec
    assert spec.dir_name == "resnet50-int8-maxbatch16"
    others = {EngineSpec("resnet50", p, b).dir_name for p in ("fp32", "fp16") for b in (1, 16)}
    assert spec.dir_name not in others and len(others) == 4


def _meta(**changes: object) -> EngineMeta:
    values: dict[str, object] = dict(
        model="efficientnet-lite0",
        precision="fp16",
        max_batch=32,
        tensorrt_version="10.3.0.26",
        gpu_name="NVIDIA A100-SXM4-80GB",
        compute_capability=(8, 0),
        inputs={"input": [-1, 3, 224, 224]},
        outputs={"logits": [-1, 1000]},
        onnx_sha256="ab" * 32,
        engine_sha256="cd" * 32,
        engine_size=10,
        builder={"workspace_mib": 2048, "flags": ["FP16"]},
    )
    values.update(changes)
    return EngineMeta(**values)  # type: ignore[arg-type]


def test_metadata_round_trip(tmp_path: Path) -> None:
    meta = _meta()
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    data = json.loads((tmp_path / "engine.json").read_text())
    assert data["compute_capability"] == [8, 0]
    assert data["tensorrt_version"] == "10.3.0.26"


def test_metadata_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="engine.json is missing"):
        read_meta(tmp_path)
    (tmp_path / "engine.json").write_text('{"model": "x"}')
    with pytest.raises(ModelError, match="incomplete or malformed"):
        read_meta(tmp_path)
    (tmp_path / "engine.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        read_meta(tmp_path)


def test_compat_accepts_same_release_and_gpu() -> None:
    meta = _meta()
    check_engine_compat(meta, RuntimeInfo("10.3.0.26", "NVIDIA A100-SXM4-80GB", (8, 0)))


@pytest.mark.parametrize(
    "runtime",
    [
        RuntimeInfo("10.13.0.35", "NVIDIA H100 80GB HBM3", (9, 0)),
        RuntimeInfo("10.13.0.35", "NVIDIA A100-SXM4-80GB", (8, 0)),
        RuntimeInfo("10.3.0.26", "NVIDIA H100 80GB HBM3", (9, 0)),
        RuntimeInfo("10.3.0.26", "NVIDIA A100-PCIE-40GB", (8, 0)),
    ],
)
def test_compat_mismatch_message(runtime: RuntimeInfo) -> None:
    with pytest.raises(ModelError) as info:
        check_engine_compat(_meta(), runtime)
    message = str(info.value)
    assert message.startswith(
        "engine built with TensorRT 10.3 on NVIDIA A100-SXM4-80GB (sm_80); "
        f"this machine has TensorRT {'.'.join(runtime.tensorrt_version.split('.')[:2])} "
        f"on {runtime.gpu_name} ({runtime.sm}): "
    )
    assert f"({runtime.sm})" in message
    assert message.endswith(
        "rebuild it with: ck install package --tags=model,tensorrt,efficientnet-lite0,"
        "converted-from-onnx,fp16,maxbatch.32 --reinstall"
    )


def test_compat_patch_release_shown_in_full() -> None:
    with pytest.raises(ModelError, match=r"TensorRT 10\.3\.0 on .*TensorRT 10\.3\.1 on"):
        check_engine_compat(_meta(), RuntimeInfo("10.3.1.2", "NVIDIA A100-SXM4-80GB", (8, 0)))


def test_batch_limit() -> None:
    meta = _meta(max_batch=8)
    check_batch(meta, 1)
    check_batch(meta, 8)
    with pytest.raises(ConfigError, match="batch size 9 exceeds the engine's max batch 8") as info:
        check_batch(meta, 9)
    assert "maxbatch.9" in str(info.value)


def _plan(tmp_path: Path, data: bytes) -> tuple[Path, EngineMeta]:
    plan = tmp_path / "model.plan"
    plan.write_bytes(data)
    import hashlib

    return plan, _meta(engine_size=len(data), engine_sha256=hashlib.sha256(data).hexdigest())


def test_engine_bytes_checked(tmp_path: Path) -> None:
    plan, meta = _plan(tmp_path, b"serialized-engine" * 100)
    assert read_engine_bytes(plan, meta) == b"serialized-engine" * 100


def test_truncated_engine_detected(tmp_path: Path) -> None:
    plan, meta = _plan(tmp_path, b"serialized-engine" * 100)
    with open(plan, "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(ModelError, match="truncated or altered .1000 bytes, metadata says 1700"):
        read_engine_bytes(plan, meta)


def test_altered_engine_detected(tmp_path: Path) -> None:
    plan, meta = _plan(tmp_path, b"A" * 64)
    plan.write_bytes(b"B" * 64)
    with pytest.raises(ModelError, match="does not match its recorded sha256"):
        read_engine_bytes(plan, meta)
    plan.unlink()
    with pytest.raises(ModelError, match="cannot read engine"):
        read_engine_bytes(plan, meta)


def test_atomic_write_leaves_nothing_on_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.plan"
    target.write_bytes(b"old")

    def interrupted(_fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomic(target, b"new engine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.plan"]
    assert target.read_bytes() == b"old"


def test_engine_write_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ckvision.models import tensorrt_build

    write_meta(tmp_path, _meta())  # an old engine's metadata

    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tensorrt_build, "write_meta", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tensorrt_build._write_engine(tmp_path, b"engine", _meta(), lambda _m: None)
    assert list(tmp_path.iterdir()) == []


def test_int8_without_calibration_refused_before_tensorrt(tmp_path: Path) -> None:
    from ckvision.models.tensorrt_build import build_engine

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not needed: refused first")
    with pytest.raises(ConfigError, match="^INT8 needs a calibration set: "):
        build_engine(onnx, tmp_path / "out", EngineSpec("m", "int8", 8), ModelContract("m"))
    assert not (tmp_path / "out").exists()


def test_build_refuses_missing_onnx(tmp_path: Path) -> None:
    from ckvision.models.tensorrt_build import build_engine

    with pytest.raises(ModelError, match="not found"):
        build_engine(tmp_path / "none.onnx", tmp_path, EngineSpec("m"), ModelContract("m"))


def test_errors_are_user_errors() -> None:
    assert issubclass(ConfigError, CkVisionError) and issubclass(ModelError, CkVisionError)
    assert engine_meta.PLAN_FILE == "model.plan" and engine_meta.META_FILE == "engine.json"
