"""What the TensorRT engine package installs: ``model.plan`` + ``engine.json`` + sidecar.

Called by ``python -m ckvision build-engine`` from ``package/model-tensorrt-converted-from-onnx``;
the choices arrive as the package's variation env (precision, maxbatch.N, model).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ckvision.errors import ConfigError, MissingPackageError, ModelError
from ckvision.fsutil import atomic_write_json
from ckvision.models.contract import ModelContract
from ckvision.program import MODEL_SIDECAR

__all__ = ["install_engine"]


def _onnx_contract(onnx: Path) -> tuple[ModelContract, dict[str, object]]:
    sidecar = onnx.parent / MODEL_SIDECAR
    if not onnx.is_file() or not sidecar.is_file():
        raise MissingPackageError(f"ONNX model {onnx}", "model,onnx,efficientnet-lite0,fp32")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {sidecar}: {err}; reinstall the ONNX model") from err
    return ModelContract.from_env(data.get("env", {})), data


def install_engine(args: argparse.Namespace) -> Path:
    from ckvision.models.engine_meta import parse_engine_tags

    spec = parse_engine_tags(
        [
            "model",
            "tensorrt",
            args.model,
            "converted-from-onnx",
            args.precision,
            f"maxbatch.{args.max_batch}",
        ]
    )
    contract, onnx_info = _onnx_contract(Path(args.onnx))
    contract = dataclasses.replace(contract, max_batch=spec.max_batch)
    calibration = None
    if spec.precision == "int8":
        calibration = _calibration(args.calibration_dataset, args.calibration_count, contract)
    from ckvision.models.tensorrt_build import build_engine

    out_dir = Path(args.install_dir)
    plan = build_engine(
        Path(args.onnx),
        out_dir,
        spec,
        contract,
        workspace_mib=args.workspace_mib,
        timing_cache=out_dir.parent / "tensorrt-timing.cache",
        calibration=calibration,
        log=print,
    )
    atomic_write_json(
        out_dir / MODEL_SIDECAR,
        {
            "name": contract.name,
            "version": "1",
            "format": "tensorrt",
            "tags": list(spec.tags),
            "source": f"converted-from-onnx:{onnx_info.get('sha256', '')}",
            "env": {**contract.to_env(), "ML_MODEL_DATA_TYPE": spec.precision},
        },
    )
    print(f"engine ready: {plan}")
    return plan


def _calibration(dataset_dir: str, count: int, contract: ModelContract):  # type: ignore[no-untyped-def]
    from ckvision.data.cache import PreprocessedDataset
    from ckvision.models.calibration import CalibrationSource

    if not dataset_dir:
        raise ConfigError(
            "INT8 needs a calibration set: install one first with "
            "ck install package --tags=dataset,imagenet,preprocessed (then reinstall the engine)"
        )
    dataset = PreprocessedDataset.open(Path(dataset_dir)).for_model(contract)
    n = min(count, dataset.size) if count > 0 else dataset.size
    return CalibrationSource(
        files=[str(i) for i in range(n)], load=lambda idx: dataset.images[int(idx)]
    )
