"""``python -m ckvision quantize-model``: what the INT8 model package's installer runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ckvision.errors import ConfigError

__all__ = ["add_parser", "dispatch", "COMMAND"]

COMMAND = "quantize-model"


def _max_batch(text: str) -> int:
    """``""``/``0`` = dynamic, else the N of ``maxbatch.N`` (the engine packages' parser)."""
    from ckvision.models.engine_meta import parse_engine_tags

    text = text.strip()
    if text in ("", "0"):
        return 0
    return parse_engine_tags(["model", "tensorrt", "any", f"maxbatch.{text}"]).max_batch


def _path_or_none(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    q = sub.add_parser(
        COMMAND,
        help="derive an INT8 (QDQ, per-channel) ONNX model from an installed FP32 one",
    )
    q.add_argument("--onnx", type=Path, required=True, help="the FP32 model.onnx (with model.json)")
    q.add_argument("--install-dir", type=Path, required=True)
    q.add_argument("--method", default="minmax", help="minmax | entropy | percentile")
    q.add_argument("--max-batch", default="", help="N of maxbatch.N; empty = dynamic")
    q.add_argument("--percentile", type=float, default=99.999)
    q.add_argument(
        "--calibration-dir",
        default="",
        help="folder of calibration images (default: the set-aside photos, not the scored set)",
    )
    q.add_argument("--calibration-list", default="", help="list file naming images in it")
    q.add_argument("--calibration-count", type=int, default=0, help="first N; 0 = all")
    q.add_argument(
        "--accuracy-dataset",
        default="",
        help="preprocessed dataset to compare INT8 and FP32 top-1 on (never calibrated on)",
    )
    q.add_argument("--accuracy-count", type=int, default=0, help="first N images; 0 = all")


def dispatch(args: argparse.Namespace) -> int:
    from ckvision.data.cache import PreprocessedDataset
    from ckvision.quantize import QuantizeSpec, _read_fp32, quantize_model
    from ckvision.quantize.calibration_images import calibration_source, describe_source

    spec = QuantizeSpec(
        method=args.method.strip().lower(),
        max_batch=_max_batch(args.max_batch),
        percentile=args.percentile,
    )
    if args.accuracy_count < 0:
        raise ConfigError(f"accuracy count {args.accuracy_count} must not be negative")
    contract, _info = _read_fp32(args.onnx)
    accuracy = _path_or_none(args.accuracy_dataset)
    scored = PreprocessedDataset.open(accuracy) if accuracy is not None else None
    folder = _path_or_none(args.calibration_dir)
    source = calibration_source(
        contract,
        folder=folder,
        list_file=_path_or_none(args.calibration_list),
        count=args.calibration_count,
        scored=scored,
    )
    quantize_model(
        args.onnx,
        args.install_dir,
        spec,
        source,
        calibration_record={"method": spec.method, **describe_source(source, folder)},
        accuracy_dataset=accuracy,
        accuracy_count=args.accuracy_count,
    )
    return 0
