"""Shared fixtures: a tiny model contract, a tiny ONNX model built here, a tiny dataset.

The tiny model is GlobalAveragePool -> Flatten -> MatMul(W): its class is decided by the
three channel means. The dataset's labels are the model's own predictions with exactly
``FLIPPED`` of them changed, so its top-1 accuracy is known by hand: 30 of 40 = 75.000%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ckvision.config import RunConfig
from ckvision.data.cache import PreprocessedDataset, write_cache
from ckvision.models.contract import ModelContract

SAMPLES = 40
FLIPPED = 10  # labels changed from the model's prediction: top-1 = 30/40 = 75.000%
NUM_CLASSES = 10
IMAGE = 16
_WEIGHT = np.random.default_rng(7).normal(size=(3, NUM_CLASSES)).astype(np.float32)


@dataclass(frozen=True)
class TinyTruth:
    """What the tiny model predicts for the tiny dataset, computed with numpy."""

    logits: np.ndarray  # (SAMPLES, NUM_CLASSES)
    labels: np.ndarray  # ImageNet-style labels written into the dataset
    top1: float
    top5: float


def tiny_logits(images: np.ndarray) -> np.ndarray:
    """The tiny model's function, in numpy."""
    logits: np.ndarray = images.mean(axis=(2, 3)) @ _WEIGHT
    return logits


def build_tiny_onnx(path: Path, batch: int | str = "N", image: int = IMAGE,
                    classes: int = NUM_CLASSES) -> Path:
    """input [batch,3,image,image] -> GlobalAveragePool -> Flatten -> MatMul -> logits."""
    weight = _WEIGHT if classes == NUM_CLASSES else np.ones((3, classes), np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weight"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_contract() -> ModelContract:
    return ModelContract(name="tiny", image_size=IMAGE, resize_size=IMAGE,
                         num_classes=NUM_CLASSES, output_name="logits")


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_images() -> np.ndarray:
    rng = np.random.default_rng(11)
    return rng.normal(size=(SAMPLES, 3, IMAGE, IMAGE)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_truth(tiny_images: np.ndarray) -> TinyTruth:
    logits = tiny_logits(tiny_images)
    predicted = logits.argmax(axis=1)
    labels = predicted.copy()
    labels[:FLIPPED] = (predicted[:FLIPPED] + 1) % NUM_CLASSES
    top5 = np.argsort(-logits, axis=1)[:, :5]
    in_top5 = (top5 == labels[:, None]).any(axis=1)
    return TinyTruth(logits, labels, top1=75.0, top5=100.0 * in_top5.mean())


@pytest.fixture(scope="session")
def tiny_dataset(
    tmp_path_factory: pytest.TempPathFactory, tiny_contract: ModelContract,
    tiny_images: np.ndarray, tiny_truth: TinyTruth,
) -> PreprocessedDataset:
    items = [(f"img{i:03d}.png", int(label)) for i, label in enumerate(tiny_truth.labels)]
    return write_cache(
        tmp_path_factory.mktemp("data") / "tiny",
        name="tiny", kind="sample", source="generated", contract=tiny_contract,
        items=items, load=lambda file: tiny_images[int(file[3:6])],
    )


@pytest.fixture()
def quick_config() -> Callable[..., RunConfig]:
    """A RunConfig whose LoadGen test ends in well under a second."""

    def make(**changes: Any) -> RunConfig:
        values: dict[str, Any] = {"backend": "onnxruntime", "min_duration_s": 0.05,
                                  "max_duration_s": 10.0, "count_override": 32,
                                  "threads": 1, "target_qps": 2000.0}
        values.update(changes)
        return RunConfig(**values)

    return make


@pytest.fixture(scope="session")
def ck_session_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One temporary CK_REPOS/CK_TOOLS for every test that drives the real ``ck``: this
    checkout registered, software detected, the real EfficientNet-Lite0 ONNX export and
    the sample set installed (``python -m ckvision ck-setup``). ``MARKER`` names a file
    that hostile values try to create."""
    import os
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("ck")
    env = dict(os.environ, CK_REPOS=str(base / "repos"), CK_TOOLS=str(base / "tools"),
               MARKER=str(base / "EXECUTED"))
    setup = subprocess.run([sys.executable, "-m", "ckvision", "ck-setup"], env=env,
                           capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    return env
