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


def build_tiny_onnx(
    path: Path,
    batch: int | str = "N",
    image: int = IMAGE,
    classes: int = NUM_CLASSES,
    ballast: int = 0,
) -> Path:
    """input [batch,3,image,image] -> GlobalAveragePool -> Flatten -> MatMul -> logits.

    ``ballast`` > 0 adds work that does not change the logits (a [3*image*image, ballast]
    MatMul whose sum is multiplied by 0 and added): a model whose per-sample time is not
    dwarfed by the harness's fixed costs, with the same answers as :func:`tiny_logits`."""
    if classes == NUM_CLASSES:
        weight = _WEIGHT
    else:  # other widths (a wrong model, TensorRT's 4 classes) get their own fixed weights
        weight = np.random.default_rng(classes).normal(size=(3, classes)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weight"], ["logits" if not ballast else "core"]),
    ]
    initializers = [numpy_helper.from_array(weight, "weight")]
    if ballast:
        rng = np.random.default_rng(7)
        big = rng.normal(size=(3 * image * image, ballast)).astype(np.float32) / image
        initializers += [
            numpy_helper.from_array(big, "ballast"),
            numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("Flatten", ["input"], ["pixels"], axis=1),
            helper.make_node("MatMul", ["pixels", "ballast"], ["busy"]),
            helper.make_node("ReduceSum", ["busy"], ["busy_sum"], keepdims=1),
            helper.make_node("Mul", ["busy_sum", "zero"], ["nothing"]),
            helper.make_node("Add", ["core", "nothing"], ["logits"]),
        ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


TINY_CONTRACT = ModelContract(
    name="tiny", image_size=IMAGE, resize_size=IMAGE, num_classes=NUM_CLASSES, output_name="logits"
)


@pytest.fixture(scope="session")
def tiny_contract() -> ModelContract:
    return TINY_CONTRACT


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
    tmp_path_factory: pytest.TempPathFactory,
    tiny_contract: ModelContract,
    tiny_images: np.ndarray,
    tiny_truth: TinyTruth,
) -> PreprocessedDataset:
    items = [(f"img{i:03d}.png", int(label)) for i, label in enumerate(tiny_truth.labels)]
    return write_cache(
        tmp_path_factory.mktemp("data") / "tiny",
        name="tiny",
        kind="sample",
        source="generated",
        contract=tiny_contract,
        items=items,
        load=lambda file: tiny_images[int(file[3:6])],
    )


@pytest.fixture()
def quick_config() -> Callable[..., RunConfig]:
    """A RunConfig whose LoadGen test ends in well under a second."""

    def make(**changes: Any) -> RunConfig:
        values: dict[str, Any] = {
            "backend": "onnxruntime",
            "min_duration_s": 0.05,
            "max_duration_s": 10.0,
            "count_override": 32,
            "threads": 1,
            "target_qps": 2000.0,
        }
        values.update(changes)
        return RunConfig(**values)

    return make


@pytest.fixture(scope="session")
def ck_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One prepared CK_REPOS/CK_TOOLS per session, shared by the slow ck tests.

    This checkout is registered first, then stand-ins of ck-env, ck-mlperf, ck-tensorrt,
    ck-ml, ck-crowdtuning and ck-docker (tests/ck_upstream.py: same aliases, UIDs, tags),
    then ``python -m ckvision ck-setup`` detects software and installs the default model
    and dataset, with stdin closed (a prompt would fail it).
    """
    import os
    import subprocess
    import sys

    from ck_upstream import build_standins

    base = tmp_path_factory.mktemp("ck-world")
    env = dict(os.environ, CK_REPOS=str(base / "repos"), CK_TOOLS=str(base / "tools"))
    ck = str(Path(sys.executable).with_name("ck"))
    root = Path(__file__).resolve().parents[1]

    def run(*args: str) -> None:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"

    run(ck, "add", "repo:ck-mlperf-vision", f"--path={root}", "--quiet")
    for name, path in build_standins(base / "upstream").items():
        run(ck, "add", f"repo:{name}", f"--path={path}", "--quiet")
    run(sys.executable, "-m", "ckvision", "ck-setup")
    return env


@pytest.fixture(scope="session")
def ck_session_env(
    ck_world: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The session's prepared CK (:func:`ck_world`) plus ``MARKER``: a file that hostile
    values try to create (tests/test_ck_trust.py)."""
    return dict(ck_world, MARKER=str(tmp_path_factory.mktemp("marker") / "EXECUTED"))


# --- Triton: one real server per session (tritonserver 2.51 from `make triton-venv`) ---


@dataclass(frozen=True)
class TritonFixture:
    """A running server on a python-backend repository of the tiny model."""

    repo: Path  # the model repository (the `triton` backend's model path)
    http: str
    grpc: str
    log: Path

    def options(self, protocol: str = "http", shm: str = "none", **more: Any) -> Any:
        from ckvision.backends.base import BackendOptions

        url = self.grpc if protocol == "grpc" else self.http
        return BackendOptions(
            triton_urls=(url,),
            triton_protocol=protocol,
            triton_shm=shm,
            triton_timeout_s=20.0,
            **more,
        )


@pytest.fixture(scope="session")
def triton_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_onnx_model: Path, tiny_contract: ModelContract
) -> Any:
    """Skips (with the reason) where no triton env exists; the server always stops."""
    pytest.importorskip("tritonclient.grpc")
    from ckvision.errors import CkVisionError
    from ckvision.triton.repository import RepoSpec, write_repository
    from ckvision.triton.server import TritonServer, find_triton

    try:
        install = find_triton()
    except CkVisionError as err:
        pytest.skip(f"no Triton server: {err}")
    tmp = tmp_path_factory.mktemp("triton")
    write_repository(
        tmp / "repo",
        tiny_onnx_model,
        tiny_contract,
        RepoSpec(backend="python", max_batch=8, max_queue_delay_us=500),
    )
    with TritonServer(install, tmp / "repo", tmp / "logs") as server:
        yield TritonFixture(tmp / "repo", server.http_url, server.grpc_url, server.log_path)


@pytest.fixture(autouse=True, scope="session")
def _tuning_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Auto-tuning caches its probes; tests keep that cache out of the home directory."""
    import os

    os.environ.setdefault("CK_TUNING_CACHE", str(tmp_path_factory.mktemp("tuning") / "tuning.json"))


@pytest.fixture()
def tiny_run_env(
    tiny_onnx_model: Path, tiny_contract: ModelContract, tiny_dataset: PreprocessedDataset
) -> dict[str, str]:
    """A CK-style env for one tiny run through the pipeline (``ckvision.program.run``), as
    the CK/MLC deps export it: the model file, its ``ML_MODEL_*`` contract, the dataset,
    and LoadGen settings that end a test in well under a second."""
    return {
        "CK_ENV_ONNX_MODEL_ONNX_FILEPATH": str(tiny_onnx_model),
        "CK_ENV_DATASET_IMAGENET_PREPROCESSED": str(tiny_dataset.path),
        **tiny_contract.to_env(),
        "CK_LOADGEN_SCENARIO": "SingleStream",
        "CK_LOADGEN_MODE": "PerformanceOnly",
        "CK_LOADGEN_MIN_DURATION_S": "0.05",
        "CK_LOADGEN_COUNT_OVERRIDE": "16",
        "CK_PROGRESS": "off",
    }


TinyRun = Callable[..., Any]  # (config, backend, output_dir, *, log=..., observers=...)


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: PreprocessedDataset) -> TinyRun:
    """One LoadGen test of ``backend`` on the tiny dataset (model name ``tiny``):
    ``tiny_run(config, backend, output_dir, log=..., observers=...)``, the harness's
    :func:`~ckvision.harness.run.run_benchmark` with the tiny run's constants filled in."""
    from ckvision.harness.run import run_benchmark

    def run(config: RunConfig, backend: Any, output_dir: Path, **options: Any) -> Any:
        return run_benchmark(
            config, backend, tiny_dataset, output_dir, model_name="tiny", **options
        )

    return run
