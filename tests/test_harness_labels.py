"""Label offset end to end: an MLPerf-ResNet50-v1.5-shaped model (1001 classes, class 0 =
background, outputs ``ArgMax:0`` then ``softmax_tensor:0``) scores exactly like the
1000-class tiny model it wraps, bound by either output name, through real LoadGen."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import _WEIGHT, IMAGE, NUM_CLASSES, SAMPLES, TinyTruth
from onnx import TensorProto, helper, numpy_helper

from ckvision.backends import BackendOptions, create_backend
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import ModelError
from ckvision.harness import run_benchmark
from ckvision.models.contract import ModelContract

OUTPUTS = 1001  # MLPerf's ResNet50-v1.5: index 0 is "background", index c + 1 is class c


def build_resnet50_shaped(path: Path) -> Path:
    """input -> GAP -> Flatten -> MatMul(W) + b -> softmax_tensor:0 and ArgMax:0 (listed first).

    Column c + 1 holds the tiny model's class c; every other column gets a -100 bias, so
    the winner is always 1 + the tiny model's winner."""
    weight = np.zeros((3, OUTPUTS), np.float32)
    weight[:, 1 : NUM_CLASSES + 1] = _WEIGHT
    bias = np.full(OUTPUTS, -100.0, np.float32)
    bias[1 : NUM_CLASSES + 1] = 0.0
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weight"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["softmax_tensor:0"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["ArgMax:0"], axis=1, keepdims=0),
        ],
        "resnet50-shaped",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, IMAGE, IMAGE])],
        [
            helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("softmax_tensor:0", TensorProto.FLOAT, ["N", OUTPUTS]),
        ],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("output", "kind"), [("softmax_tensor:0", "scores"), ("ArgMax:0", "argmax")]
)
@pytest.mark.parametrize("scenario", [Scenario.OFFLINE, Scenario.SINGLE_STREAM])
def test_resnet50_layout_scores_like_the_1000_class_model(
    output: str,
    kind: str,
    scenario: Scenario,
    tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset,
    tiny_truth: TinyTruth,
    quick_config: Callable[..., RunConfig],
    tmp_path: Path,
) -> None:
    contract = replace(
        tiny_contract, label_offset=1, num_classes=1000, output_name=output, output_kind=kind
    )
    assert contract.output_width == OUTPUTS
    model = build_resnet50_shaped(tmp_path / "resnet50.onnx")
    backend = create_backend("onnxruntime", model, contract, BackendOptions(threads=1))
    config = quick_config(scenario=scenario, mode=Mode.ACCURACY, batch_size=4)
    result = run_benchmark(
        config, backend, tiny_dataset, tmp_path / "out", model_name="r50", log=lambda _line: None
    )
    assert result.accuracy is not None
    assert (result.accuracy["good"], result.accuracy["total"]) == (30, SAMPLES)  # 75.000%
    # the log holds ImageNet classes (output index - 1), as MLPerf's reference writes them
    entries = json.loads((tmp_path / "out" / "mlperf_log_accuracy.json").read_text())
    found = {
        e["qsl_idx"]: int(np.frombuffer(bytes.fromhex(e["data"]), np.float32)[0]) for e in entries
    }
    predicted = tiny_truth.logits.argmax(axis=1)
    assert found == {i: int(predicted[i]) for i in range(SAMPLES)}
    if kind == "scores":
        assert result.accuracy["top5"] == pytest.approx(tiny_truth.top5)
    else:  # an ArgMax output carries the top-1 only
        assert result.accuracy["good_top5"] == 30


def test_outputs_are_bound_by_name_never_by_position(
    tiny_contract: ModelContract, tmp_path: Path
) -> None:
    model = build_resnet50_shaped(tmp_path / "resnet50.onnx")
    contract = replace(tiny_contract, label_offset=1, num_classes=1000, output_name="probs")
    with pytest.raises(
        ModelError,
        match=r"has no output 'probs' .*; its outputs: ArgMax:0, "
        r"softmax_tensor:0$",
    ):
        create_backend("onnxruntime", model, contract).load()
    wrong_offset = replace(tiny_contract, num_classes=1000, output_name="softmax_tensor:0")
    with pytest.raises(
        ModelError,
        match=r"the contract says \[N, 1000\] \(1000 classes \+ "
        r"label offset 0\)",
    ):
        create_backend("onnxruntime", model, wrong_offset).load()


def test_null_backend_honours_the_offset(tiny_contract: ModelContract) -> None:
    contract = replace(tiny_contract, label_offset=1, num_classes=1000)
    out = create_backend("null", Path("none"), contract).predict(
        np.zeros((2, 3, IMAGE, IMAGE), np.float32)
    )
    assert out.shape == (2, 1001) and list(out.argmax(axis=1)) == [1, 1]  # ImageNet class 0


def test_background_is_a_real_answer_in_the_top5_record(tmp_path: Path) -> None:
    """A 1001-class model may rank "background" (class -1 after the offset) first."""
    from ckvision.accuracy.scoring import read_top5
    from ckvision.harness.ledger import NO_CLASS
    from ckvision.harness.run import _write_top5

    top5 = np.full((3, 5), NO_CLASS, np.int32)
    top5[0] = [-1, 4, 2, 7, 0]
    top5[2, 0] = 5  # an ArgMax output: the top-1 only
    _write_top5(tmp_path / "top5.json", top5)
    assert read_top5(tmp_path / "top5.json") == {0: [-1, 4, 2, 7, 0], 2: [5]}
