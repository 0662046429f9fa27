"""What the Ray cluster tests share: a point's quick settings and the tiny model installed
with its sidecar, so a node learns the model's contract from the file it is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ckvision.models.contract import ModelContract
from ckvision.program import MODEL_SIDECAR, resolve_inputs

QUICK = {  # a LoadGen run of well under a second on the tiny model
    "CK_AUTOTUNE": "off",
    "CK_ORT_THREADS": "1",
    "CK_LOADGEN_WORKERS": "1",
    "CK_LOADGEN_MIN_DURATION_S": "0.05",
    "CK_LOADGEN_COUNT_OVERRIDE": "32",
    "CK_LOADGEN_TARGET_QPS": "2000",
}


def tiny_inputs(tmp_path: Path, model: Path, contract: ModelContract, dataset: Any) -> Any:
    """The tiny model copied with its sidecar (the contract travels with it), the tiny data."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    copy = model_dir / "tiny.onnx"
    copy.write_bytes(model.read_bytes())
    (model_dir / MODEL_SIDECAR).write_text(json.dumps({"env": contract.to_env()}))
    return resolve_inputs({}, "onnxruntime", copy, Path(dataset.path))
