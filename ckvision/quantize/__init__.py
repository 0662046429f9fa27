"""INT8 on the CPU: derive a quantized ONNX model from an installed FP32 one.

ONNX Runtime static quantization, QDQ format, per-channel int8 weights and uint8
activations (U8S8, what ORT's VNNI kernels run fastest), calibrated with ``minmax``,
``entropy`` or ``percentile`` on a calibration set (:mod:`.calibration_images`, never
the scored set) fed through the calibration module the TensorRT INT8 path uses
(:func:`ckvision.models.calibration.ort_calibration_reader`).

The result is a model package like the FP32 one: ``model.onnx`` and its ``model.json``
sidecar with the FP32 model's contract carried over (``ML_MODEL_DATA_TYPE=int8``, the
max batch of ``maxbatch.N``), the tags of the TensorRT engine packages' vocabulary
(precision, calibration method, ``maxbatch.N``), and an honest accuracy check: top-1 of
the INT8 and the FP32 model on the same images, their agreement, and whether INT8 keeps
MLPerf's 99 % of FP32 on that set. A run on the model records all of it in its entry
(``model`` in ``ckvision-run.json``). Nothing is installed half-way: the files are made
in a temporary folder, and the sidecar, which detection needs, is moved in last.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.errors import BackendError, ConfigError, DataError, MissingPackageError, ModelError
from ckvision.fsutil import atomic_write_json, sha256_file
from ckvision.models.calibration import CalibrationSource, ort_calibration_reader
from ckvision.models.contract import MODEL_SIDECAR as SIDECAR
from ckvision.models.contract import ModelContract

__all__ = [
    "METHODS",
    "MLPERF_ACCURACY_TARGET",
    "QuantizeSpec",
    "quantize_model",
    "quantize_onnx",
    "check_quantizable",
    "compare_accuracy",
    "quantized_tags",
]

METHODS = ("minmax", "entropy", "percentile")
MLPERF_ACCURACY_TARGET = 0.99  # MLPerf closed division: >= 99% of the FP32 reference
MODEL_FILE = "model.onnx"
ENTROPY_BINS = 2048  # histogram bins of the entropy method (TensorRT's)
_FP32_TAGS = "model,onnx,efficientnet-lite0,fp32"
_STANDARD_DOMAINS = ("", "ai.onnx")

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class QuantizeSpec:
    """What the package's variations chose."""

    method: str = "minmax"
    max_batch: int = 0  # 0 = dynamic (no maxbatch.N tag)
    percentile: float = 99.999  # the percentile method's cut

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"calibration method {self.method!r} unknown; use one of {METHODS}")
        if self.max_batch < 0:
            raise ConfigError(f"max batch {self.max_batch} must be >= 0 (0 = dynamic)")
        if not 90.0 <= self.percentile < 100.0:
            raise ConfigError(f"percentile {self.percentile} must be in [90, 100)")


def quantized_tags(model: str, spec: QuantizeSpec) -> list[str]:
    """The env's tags, in the TensorRT engine packages' vocabulary."""
    tags = ["model", "onnx", model, "quantized-from-onnx", "int8", spec.method, "qdq"]
    if spec.max_batch:
        tags.append(f"maxbatch.{spec.max_batch}")
    return tags


def _read_fp32(onnx_path: Path) -> tuple[ModelContract, dict[str, Any]]:
    sidecar = onnx_path.parent / SIDECAR
    if not onnx_path.is_file() or not sidecar.is_file():
        raise MissingPackageError(f"FP32 ONNX model {onnx_path}", _FP32_TAGS)
    try:
        info = dict(json.loads(sidecar.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {sidecar}: {err}; reinstall the ONNX model") from err
    env = dict(info.get("env", {}))
    precision = str(env.get("ML_MODEL_DATA_TYPE", "fp32")).lower()
    if precision != "fp32" or info.get("format", "onnx") != "onnx":
        raise ModelError(
            f"{onnx_path} is a {precision} {info.get('format', 'onnx')} model; quantize an "
            f"FP32 ONNX model ({_FP32_TAGS})"
        )
    return ModelContract.from_env(env), info


def check_quantizable(onnx_path: Path) -> list[str]:
    """The operator types ORT will quantize in this model; ModelError naming the operator
    that stops it (an operator ORT cannot run on the CPU), or saying none is quantizable."""
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError and friends: all mean "not a model"
        raise ModelError(f"{onnx_path} is not a readable ONNX model: {err}") from err
    ops = [(node.domain, node.op_type) for node in model.graph.node]
    for domain, op in ops:
        if domain not in _STANDARD_DOMAINS and domain != "com.microsoft":
            raise ModelError(
                f"ONNX Runtime cannot quantize {onnx_path.name}: operator {domain}.{op} is not "
                "an ONNX Runtime CPU operator"
            )
    quantizable = sorted({op for _d, op in ops if op in QDQRegistry})
    if not quantizable:
        kinds = ", ".join(sorted({op for _d, op in ops})) or "none"
        raise ModelError(
            f"ONNX Runtime cannot quantize {onnx_path.name}: none of its operators ({kinds}) "
            "has an INT8 kernel"
        )
    return quantizable


def _operator_from(err: BaseException, onnx_path: Path) -> ModelError:
    """ORT's failure during quantization as one line naming the operator it names."""
    text = " ".join(str(err).split())
    found = re.search(r"(?:op(?:erator)?|node)[ _]?(?:type)?[:= ]+['\"]?([A-Za-z0-9_.]+)", text)
    what = f"operator {found.group(1)}" if found else "an operator"
    return ModelError(f"ONNX Runtime cannot quantize {onnx_path.name} at {what}: {text[:300]}")


def quantize_onnx(
    fp32: Path,
    out: Path,
    contract: ModelContract,
    calibration: CalibrationSource,
    spec: QuantizeSpec,
    log: Log = print,
) -> dict[str, Any]:
    """Write the QDQ INT8 model of ``fp32`` to ``out``; returns what was done."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quantizable = check_quantizable(fp32)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[spec.method]
    options: dict[str, Any] = {"max_intermediate_outputs": 64}
    if spec.method == "entropy":
        # ORT's defaults (128 bins, 128 quantized bins) make "entropy" keep the full range,
        # i.e. minmax; TensorRT's entropy calibration histograms 2048 bins into 128
        options.update(num_bins=ENTROPY_BINS, num_quantized_bins=128)
    elif spec.method == "percentile":
        options.update(percentile=spec.percentile)
    reader = ort_calibration_reader(calibration, contract.input_name)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".quantize.", dir=out.parent) as work:
        prepared, ranges = Path(work) / "prepared.onnx", Path(work) / "ranges.json"
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            log(f"quantizing {fp32.name}: {spec.method} calibration, QDQ, per-channel weights")
            # the ranges are computed here (quantize_static cannot set the histogram's
            # bins), then handed to quantize_static as its calibration cache
            calibrator = create_calibrator(
                prepared,
                [],
                augmented_model_path=str(Path(work) / "augmented.onnx"),
                calibrate_method=method,
                extra_options=options,
            )
            calibrator.collect_data(reader)
            save_tensors_data(calibrator.compute_data(), ranges)
            del calibrator
            quantize_static(
                str(prepared),
                str(out),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                calibration_cache_path=ranges,
            )
        except (ModelError, ConfigError, DataError):
            raise
        except Exception as err:  # ORT raises bare RuntimeError/ValueError/Fail: name the op
            raise _operator_from(err, fp32) from err
    return {
        "format": "qdq",
        "per_channel": True,
        "activations": "uint8",
        "weights": "int8",
        "quantized_operators": quantizable,
        "calibration_images": reader.seen,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _predict_all(
    model: Path, contract: ModelContract, images: Any, batch: int, threads: int
) -> np.ndarray:
    from ckvision.backends import BackendOptions, create_backend
    from ckvision.harness.outputs import top1

    backend = create_backend("onnxruntime", model, contract, BackendOptions(threads=threads))
    classes = []
    with backend:
        for start in range(0, len(images), batch):
            chunk = np.ascontiguousarray(images[start : start + batch])
            classes.append(top1(backend.predict(chunk), len(chunk), contract, "onnxruntime"))
    return np.concatenate(classes).astype(np.int64)


def compare_accuracy(
    fp32: Path,
    int8: Path,
    contract: ModelContract,
    dataset_dir: Path,
    *,
    count: int = 0,
    threads: int = 0,
) -> dict[str, Any]:
    """Top-1 of both models on the same images, their agreement, and MLPerf's 99 % rule."""
    from ckvision.data.cache import PreprocessedDataset

    dataset = PreprocessedDataset.open(dataset_dir).for_model(contract)
    n = min(count, dataset.size) if count > 0 else dataset.size
    images, labels = dataset.images[:n], np.asarray(dataset.labels[:n])
    batch = contract.max_batch or 16
    ours = _predict_all(int8, contract, images, min(batch, 16), threads)
    base = _predict_all(fp32, dataclasses.replace(contract, max_batch=0), images, 16, threads)
    top1_int8 = float((ours == labels).mean())
    top1_fp32 = float((base == labels).mean())
    ratio = top1_int8 / top1_fp32 if top1_fp32 > 0 else None
    return {
        "dataset": dataset.name,
        "dataset_kind": dataset.kind,
        "images": int(n),
        "top1_fp32": round(100 * top1_fp32, 3),
        "top1_int8": round(100 * top1_int8, 3),
        "ratio": None if ratio is None else round(ratio, 5),
        "agreement": round(100 * float((ours == base).mean()), 3),
        "target": f">= {MLPERF_ACCURACY_TARGET:.0%} of FP32 top-1 (MLPerf)",
        "meets_mlperf_99": bool(ratio is not None and ratio >= MLPERF_ACCURACY_TARGET),
        "note": dataset.meta.get("accuracy_note", "")
        or f"measured on {n} images of {dataset.name}",
    }


def quantize_model(
    fp32: Path,
    install_dir: Path,
    spec: QuantizeSpec,
    calibration: CalibrationSource,
    *,
    calibration_record: dict[str, Any],
    accuracy_dataset: Path | None = None,
    accuracy_count: int = 0,
    log: Log = print,
) -> Path:
    """Install the INT8 model of ``fp32`` into ``install_dir`` (model.onnx + model.json)."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as err:
        raise BackendError(
            "onnxruntime (with its quantization tools) is needed; install with: "
            "pip install 'ckvision[onnxruntime]'"
        ) from err
    contract, info = _read_fp32(Path(fp32))
    contract = dataclasses.replace(contract, max_batch=spec.max_batch)
    install_dir = Path(install_dir)
    install_dir.mkdir(parents=True, exist_ok=True)
    final_model, final_sidecar = install_dir / MODEL_FILE, install_dir / SIDECAR
    work = Path(tempfile.mkdtemp(prefix=".int8.", suffix=".partial", dir=install_dir))
    try:
        staged = work / MODEL_FILE
        done = quantize_onnx(Path(fp32), staged, contract, calibration, spec, log)
        accuracy = None
        if accuracy_dataset is not None:
            log(f"accuracy check: INT8 vs FP32 on {accuracy_dataset}")
            accuracy = compare_accuracy(
                Path(fp32), staged, contract, accuracy_dataset, count=accuracy_count
            )
            verdict = "meets" if accuracy["meets_mlperf_99"] else "MISSES"
            log(
                f"top-1 INT8 {accuracy['top1_int8']:.3f}% vs FP32 {accuracy['top1_fp32']:.3f}% "
                f"over {accuracy['images']} images ({accuracy['dataset']}), agreement "
                f"{accuracy['agreement']:.3f}%: {verdict} MLPerf's 99% of FP32 on this set"
            )
        sidecar = {
            "name": contract.name,
            "version": "1",
            "format": "onnx",
            "precision": "int8",
            "tags": quantized_tags(contract.name, spec),
            "source": f"quantized-from-onnx:{info.get('sha256', '')}",
            "sha256": sha256_file(staged),
            "quantization": {
                **done,
                "method": spec.method,
                **({"percentile": spec.percentile} if spec.method == "percentile" else {}),
                "calibration": calibration_record,
                "fp32_model": {"path": str(fp32), "sha256": info.get("sha256", "")},
            },
            "accuracy": accuracy,
            "env": {**contract.to_env(), "ML_MODEL_DATA_TYPE": "int8"},
        }
        # a model without its sidecar is not installed: the sidecar goes first, and comes
        # back last, so a reader never pairs the old sidecar with the new model
        final_sidecar.unlink(missing_ok=True)
        os.replace(staged, final_model)
        atomic_write_json(final_sidecar, sidecar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"INT8 model ready: {final_model}")
    return final_model
