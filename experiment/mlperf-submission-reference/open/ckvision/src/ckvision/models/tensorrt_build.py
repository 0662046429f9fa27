"""Build a TensorRT 10 engine from an ONNX model: ``model.plan`` + ``engine.json``.

One optimisation profile covers batches 1..max_batch of the (single) input; FP16 and
INT8 (with an entropy calibrator) are builder flags; a timing cache shared across builds
is loaded from and saved to a file. Both outputs are written atomically, the metadata
last, so a failed or interrupted build (Ctrl-C included) leaves no half-written file and
never a plan whose metadata describes another engine.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckvision.errors import ConfigError, ModelError
from ckvision.models.calibration import CalibrationSource
from ckvision.models.contract import ModelContract
from ckvision.models.engine_meta import (
    CALIBRATION_CACHE_FILE,
    META_FILE,
    PLAN_FILE,
    EngineMeta,
    EngineSpec,
    sha256_file,
    write_bytes_atomic,
    write_meta,
)

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["build_engine", "DEFAULT_WORKSPACE_MIB"]

DEFAULT_WORKSPACE_MIB = 2048
Log = Callable[[str], None]


def _silent(_msg: str) -> None:
    pass


def build_engine(
    onnx_path: Path,
    out_dir: Path,
    spec: EngineSpec,
    contract: ModelContract,
    *,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache: Path | None = None,
    calibration: CalibrationSource | None = None,
    log: Log = _silent,
) -> Path:
    """Build ``spec``'s engine from ``onnx_path`` into ``out_dir``; return the plan path."""
    if spec.precision == "int8" and calibration is None:
        raise ConfigError(
            "INT8 needs a calibration set: give a list of dataset images (CalibrationSource) "
            "or build fp16/fp32 instead"
        )
    if workspace_mib < 1:
        raise ConfigError(f"TensorRT workspace {workspace_mib} MiB must be >= 1")
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX model {onnx_path} not found; install the ONNX model package")
    from ckvision.backends.tensorrt_backend import check_tensorrt_available

    check_tensorrt_available()
    import tensorrt as trt

    builder = trt.Builder(_make_logger(log))
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, builder.logger)
    _parse(parser, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile = _add_profile(builder, network, config, spec, contract)
    settings: dict[str, Any] = {"workspace_mib": workspace_mib, "profile": profile}
    cleanup = _set_precision(config, spec, calibration, out_dir, log)
    flags = {"FP16": trt.BuilderFlag.FP16, "INT8": trt.BuilderFlag.INT8}
    settings["flags"] = [name for name, flag in flags.items() if config.get_flag(flag)]
    cache = _load_timing_cache(config, timing_cache)
    log(f"building TensorRT {trt.__version__} engine {spec.dir_name} from {onnx_path}")
    try:  # the calibrator's device buffer is freed whatever happens
        serialized = builder.build_serialized_network(network, config)
    finally:
        cleanup()
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path} (see log above)")
    _save_timing_cache(cache, timing_cache)
    engine = bytes(serialized)
    meta = _metadata(spec, network, onnx_path, engine, settings)
    return _write_engine(out_dir, engine, meta, log)


def _metadata(
    spec: EngineSpec,
    network: trt.INetworkDefinition,
    onnx_path: Path,
    engine: bytes,
    settings: dict[str, Any],
) -> EngineMeta:
    import tensorrt as trt

    from ckvision import cuda as cuda_util

    device = cuda_util.device_info(0)
    return EngineMeta(
        model=spec.model,
        precision=spec.precision,
        max_batch=spec.max_batch,
        tensorrt_version=trt.__version__,
        gpu_name=device.name,
        compute_capability=device.compute_capability,
        inputs=_shapes(network.get_input(i) for i in range(network.num_inputs)),
        outputs=_shapes(network.get_output(i) for i in range(network.num_outputs)),
        onnx_sha256=sha256_file(onnx_path),
        engine_sha256=_sha256(engine),
        engine_size=len(engine),
        builder=settings,
    )


def _make_logger(log: Log) -> trt.ILogger:
    import tensorrt as trt

    shown = (
        trt.ILogger.Severity.INTERNAL_ERROR,
        trt.ILogger.Severity.ERROR,
        trt.ILogger.Severity.WARNING,
    )

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in shown:
                log(f"TensorRT: {msg}")

    return _Logger()


def _parse(parser: trt.OnnxParser, onnx_path: Path) -> None:
    if parser.parse_from_file(str(onnx_path)):
        return
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    lines = "; ".join(f"{e.node_name() or 'model'}: {e.desc()}" for e in errors)
    raise ModelError(f"TensorRT's ONNX parser rejected {onnx_path}: {lines or 'unknown error'}")


def _dims(tensor: trt.ITensor) -> list[int]:
    shape = tensor.shape
    return [shape[i] for i in range(len(shape))]


def _shapes(tensors: Any) -> dict[str, list[int]]:
    return {t.name: _dims(t) for t in tensors}


def _add_profile(
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    spec: EngineSpec,
    contract: ModelContract,
) -> dict[str, list[int]]:
    """One profile: min (1, ...), opt and max (N, ...); refuse shapes it cannot cover."""
    import tensorrt as trt

    if network.num_inputs != 1:
        raise ModelError(f"the ONNX model has {network.num_inputs} inputs; ckvision needs one")
    tensor = network.get_input(0)
    dims = _dims(tensor)
    want = list(contract.input_shape(1)[1:])
    if len(dims) != 4 or any(d < 0 for d in dims[1:]):
        raise ModelError(
            f"ONNX input {tensor.name} has shape {dims}; only the batch (first) dimension "
            f"may be dynamic: export it with a fixed {want} sample shape"
        )
    if dims[1:] != want:
        raise ModelError(
            f"ONNX input {tensor.name} samples are {dims[1:]}, the model contract says {want}"
        )
    if dims[0] >= 0 and dims[0] != spec.max_batch:
        raise ModelError(
            f"ONNX input {tensor.name} has a fixed batch of {dims[0]}; "
            f"export it with a dynamic batch to build maxbatch.{spec.max_batch}"
        )
    low, high = [1, *want], [spec.max_batch, *want]
    if dims[0] >= 0:
        low = high
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, trt.Dims(low), trt.Dims(high), trt.Dims(high))
    if config.add_optimization_profile(profile) < 0:
        raise ModelError(f"TensorRT rejected the profile {low}..{high} for {tensor.name}")
    if spec.precision == "int8":
        config.set_calibration_profile(profile)
    return {"min": low, "opt": high, "max": high}


def _set_precision(
    config: trt.IBuilderConfig,
    spec: EngineSpec,
    calibration: CalibrationSource | None,
    out_dir: Path,
    log: Log,
) -> Callable[[], None]:
    """Set FP16/INT8 flags (INT8 with FP16 fallback); return what frees the calibrator."""
    import tensorrt as trt

    from ckvision.models.calibration import make_calibrator

    if spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.precision != "int8" or calibration is None:
        return lambda: None
    config.set_flag(trt.BuilderFlag.INT8)
    cache_path = calibration.cache_path or out_dir / CALIBRATION_CACHE_FILE
    calibrator, free = make_calibrator(calibration, cache_path, log)
    config.int8_calibrator = calibrator
    return free


def _load_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> trt.ITimingCache:
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        # A cache from another GPU or TensorRT release: start an empty one.
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(cache: trt.ITimingCache, path: Path | None) -> None:
    if path is not None:
        write_bytes_atomic(path, bytes(cache.serialize()))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_engine(out_dir: Path, engine: bytes, meta: EngineMeta, log: Log) -> Path:
    """Plan first, metadata last; the old metadata goes first so no mismatch survives."""
    plan, meta_path = out_dir / PLAN_FILE, out_dir / META_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        meta_path.unlink()
    try:
        write_bytes_atomic(plan, engine)
        write_meta(out_dir, meta)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            plan.unlink()
        raise
    log(f"wrote {plan} ({len(engine) / 1e6:.1f} MB) and {meta_path}")
    return plan
