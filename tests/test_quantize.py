"""INT8 on the CPU (issue 19 part 2): the quantized model package and its refusals.

Real ONNX Runtime static quantization on the tests' tiny model, calibrated on a folder
of images written here (never the tiny scored set), compared with FP32 on that set.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from conftest import IMAGE
from onnx import TensorProto, helper
from PIL import Image

from ckvision.cli import main
from ckvision.config import Mode, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.models.contract import ModelContract
from ckvision.models.install import write_sidecar as _write_sidecar

pytestmark = pytest.mark.timeout(120)
INT8_PACKAGE_UID = "e7b4d744a3c91d6e"  # package/model-onnx-quantized-from-onnx


@pytest.fixture(scope="module")
def fp32_model(
    tmp_path_factory: pytest.TempPathFactory, tiny_onnx_model: Path, tiny_contract: ModelContract
) -> Path:
    """The tiny model installed as the FP32 model package installs one (with its sidecar)."""
    folder = tmp_path_factory.mktemp("fp32")
    model = folder / "model.onnx"
    shutil.copy(tiny_onnx_model, model)
    _write_sidecar(model, tiny_contract, tags="model,onnx,tiny,fp32", source="export:tiny")
    return model


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 random photos-to-be: not in the tiny scored set."""
    folder = tmp_path_factory.mktemp("calibration")
    rng = np.random.default_rng(3)
    for i in range(16):
        pixels = rng.integers(0, 256, size=(IMAGE + 4, IMAGE + 2, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"cal{i:02d}.png")
    return folder


def _quantize(fp32: Path, out: Path, *extra: str) -> int:
    return main(["quantize-model", "--onnx", str(fp32), "--install-dir", str(out), *extra])


@pytest.fixture(scope="module")
def int8_model(
    tmp_path_factory: pytest.TempPathFactory,
    fp32_model: Path,
    calibration_dir: Path,
    tiny_dataset: PreprocessedDataset,
) -> Path:
    out = tmp_path_factory.mktemp("int8") / "install"
    code = _quantize(
        fp32_model,
        out,
        "--method",
        "entropy",
        "--max-batch",
        "8",
        "--calibration-dir",
        str(calibration_dir),
        "--accuracy-dataset",
        str(tiny_dataset.path),
    )
    assert code == 0
    return out / "model.onnx"


def _sidecar(model: Path) -> dict[str, Any]:
    return dict(json.loads((model.parent / "model.json").read_text()))


def test_quantized_model_is_qdq_int8_with_per_channel_weights(int8_model: Path) -> None:
    graph = onnx.load(str(int8_model)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ, not QOperator
    int8_weights = [t for t in graph.initializer if t.data_type == TensorProto.INT8]
    assert int8_weights, "weights were not quantized to int8"
    # per-channel: the weight's scale has one value per output channel (10 classes)
    scales = {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT}
    weight_dq = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in {t.name for t in int8_weights}
    ]
    assert weight_dq and any(len(scales[n.input[1]].dims) == 1 for n in weight_dq)
    assert max(scales[n.input[1]].dims[0] for n in weight_dq if scales[n.input[1]].dims) == 10


def test_contract_carried_over_and_tags_in_the_engine_vocabulary(
    int8_model: Path, fp32_model: Path, tiny_contract: ModelContract
) -> None:
    side, base = _sidecar(int8_model), _sidecar(fp32_model)
    env = dict(side["env"])
    assert env.pop("ML_MODEL_DATA_TYPE") == "int8"
    assert env.pop("ML_MODEL_MAX_BATCH_SIZE") == "8"  # maxbatch.8
    base_env = dict(base["env"])
    base_env.pop("ML_MODEL_DATA_TYPE")
    assert env == base_env  # every other ML_MODEL_* variable carried over unchanged
    assert ModelContract.from_env(side["env"]).max_batch == 8
    for tag in ("int8", "entropy", "maxbatch.8", "tiny", "quantized-from-onnx"):
        assert tag in side["tags"]
    assert "fp32" not in side["tags"]
    q = side["quantization"]
    assert q["method"] == "entropy" and q["format"] == "qdq" and q["per_channel"] is True
    assert q["calibration"]["images"] == 16 and q["calibration_images"] == 16
    assert q["calibration"]["set"].endswith("calibration0")
    assert q["fp32_model"]["sha256"] == base["sha256"]
    assert side["source"] == f"quantized-from-onnx:{base['sha256']}"


def test_accuracy_is_compared_on_the_same_images(
    int8_model: Path, tiny_dataset: PreprocessedDataset
) -> None:
    acc = _sidecar(int8_model)["accuracy"]
    assert acc["images"] == tiny_dataset.size and acc["dataset"] == "tiny"
    assert acc["top1_fp32"] == pytest.approx(75.0)  # conftest: known by hand
    assert 0.0 <= acc["agreement"] <= 100.0
    assert acc["ratio"] == pytest.approx(acc["top1_int8"] / acc["top1_fp32"], abs=1e-4)
    assert acc["meets_mlperf_99"] is (acc["ratio"] >= 0.99)


def test_run_records_precision_and_calibration(
    int8_model: Path,
    tiny_dataset: PreprocessedDataset,
    quick_config: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ckvision.program import resolve_inputs, run_program

    inputs = resolve_inputs({}, "onnxruntime", int8_model, tiny_dataset.path)
    assert inputs.contract.max_batch == 8
    record = run_program(
        quick_config(scenario=Scenario.OFFLINE, mode=Mode.ACCURACY, batch_size=4),
        inputs,
        tmp_path / "run",
        log=lambda _: None,
    )
    from ckvision.analysis.console import print_run

    capsys.readouterr()
    print_run(record)
    assert "model precision int8: entropy calibration on " in capsys.readouterr().out
    model = record["model"]
    assert model["precision"] == "int8"
    assert model["quantization"]["method"] == "entropy"
    assert model["quantization"]["calibration"]["images"] == 16
    assert model["contract"]["max_batch"] == 8
    assert record["accuracy"]["top1"] == pytest.approx(
        _sidecar(int8_model)["accuracy"]["top1_int8"], abs=1e-3
    )


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ckvision: error: ") and "\n" not in err, err
    return err


def _nothing_installed(out: Path) -> None:
    assert not (out / "model.json").exists() and not (out / "model.onnx").exists()
    assert not [p for p in out.iterdir()] if out.exists() else True


def test_calibrating_on_the_scored_set_is_refused(
    tmp_path: Path,
    fp32_model: Path,
    calibration_dir: Path,
    tiny_dataset: PreprocessedDataset,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "cal"
    shutil.copytree(calibration_dir, folder)
    shutil.copy(folder / "cal00.png", folder / tiny_dataset.files[3])  # a scored image's name
    out = tmp_path / "out"
    code = _quantize(
        fp32_model,
        out,
        "--calibration-dir",
        str(folder),
        "--accuracy-dataset",
        str(tiny_dataset.path),
    )
    assert code != 0
    assert "also in the scored set tiny" in _one_line_error(capsys)
    _nothing_installed(out)


def test_a_renamed_copy_of_a_scored_image_is_refused_by_content(
    tmp_path: Path,
    fp32_model: Path,
    calibration_dir: Path,
    tiny_contract: ModelContract,
    tiny_images: np.ndarray,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The scored set is a folder of files (as ImageNet is); a calibration image with
    another name but the same bytes as one of them is the same image."""
    from ckvision.data.cache import write_cache

    source = tmp_path / "scored-src"
    source.mkdir()
    names = []
    for i in range(4):
        name = f"val{i}.png"
        shutil.copy(calibration_dir / f"cal{i + 8:02d}.png", source / name)
        names.append((name, i))
    scored = write_cache(
        tmp_path / "scored",
        name="scored",
        kind="folder",
        source=str(source),
        contract=tiny_contract,
        items=names,
        load=lambda file: tiny_images[0],
    )
    folder = tmp_path / "cal"
    folder.mkdir()
    for i in range(4):
        shutil.copy(calibration_dir / f"cal{i:02d}.png", folder / f"c{i}.png")
    shutil.copy(source / "val2.png", folder / "renamed.png")
    out = tmp_path / "out"
    code = _quantize(
        fp32_model, out, "--calibration-dir", str(folder), "--accuracy-dataset", str(scored.path)
    )
    assert code != 0
    line = _one_line_error(capsys)
    assert "overlaps the scored set: 1 image(s) in both" in line
    assert "renamed.png" in line and "val2.png" in line
    _nothing_installed(out)


def test_default_calibration_photos_are_not_the_sample_sets() -> None:
    from ckvision.data.sample_set import sample_photos
    from ckvision.quantize.calibration_images import set_aside_photos

    scored = {p.file for p in sample_photos()}
    aside = set_aside_photos()
    assert len(aside) >= 8 and not scored & {p.name for p in aside}


def test_an_operator_ort_cannot_quantize_is_named(
    tmp_path: Path,
    int8_model: Path,
    tiny_contract: ModelContract,
    calibration_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("FancyTopK", ["flat"], ["logits"], domain="com.example"),
        ],
        "custom",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, IMAGE, IMAGE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)],
    )
    (tmp_path / "fp32").mkdir()
    path = tmp_path / "fp32" / "model.onnx"
    onnx.save(model, str(path))
    _write_sidecar(path, tiny_contract, tags="", source="export:tiny")
    out = tmp_path / "out"
    assert _quantize(path, out, "--calibration-dir", str(calibration_dir)) != 0
    err = _one_line_error(capsys)
    assert "operator com.example.FancyTopK" in err
    _nothing_installed(out)
    # a failed re-install into an installed folder leaves the installed model as it was
    shutil.copytree(int8_model.parent, tmp_path / "installed")
    before = {p.name: p.read_bytes() for p in (tmp_path / "installed").iterdir()}
    assert _quantize(path, tmp_path / "installed", "--calibration-dir", str(calibration_dir))
    assert "FancyTopK" in _one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in (tmp_path / "installed").iterdir()} == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--method", "kl"], "calibration method 'kl' unknown"),
        (["--max-batch", "x"], "bad batch limit"),
        (["--calibration-count", "-1"], "must not be negative"),
        (["--calibration-list", "list.txt"], "needs its calibration folder"),
    ],
)
def test_bad_options_are_one_line(
    tmp_path: Path,
    fp32_model: Path,
    args: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert _quantize(fp32_model, out, *args) != 0
    assert expected in _one_line_error(capsys)
    _nothing_installed(out)


def test_calibration_list_naming_a_missing_file(
    tmp_path: Path,
    fp32_model: Path,
    calibration_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listing = tmp_path / "cal.txt"
    listing.write_text("cal00.png\nn01440764/ILSVRC2012_val_00000293.JPEG 0\n")
    out = tmp_path / "out"
    code = _quantize(
        fp32_model,
        out,
        "--calibration-dir",
        str(calibration_dir),
        "--calibration-list",
        str(listing),
    )
    assert code != 0
    line = _one_line_error(capsys)  # the one list reader: ckvision.data.calibration_set
    assert "1 of 2 images of calibration list" in line
    assert "(first: n01440764/ILSVRC2012_val_00000293.JPEG)" in line
    _nothing_installed(out)


def test_only_fp32_onnx_models_are_quantized(
    tmp_path: Path, int8_model: Path, calibration_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _quantize(int8_model, out, "--calibration-dir", str(calibration_dir)) != 0
    assert "is a int8 onnx model; quantize an FP32" in _one_line_error(capsys)
    missing = tmp_path / "nowhere" / "model.onnx"
    assert _quantize(missing, out, "--calibration-dir", str(calibration_dir)) != 0
    assert "ck install package --tags=model,onnx" in _one_line_error(capsys)


def _recorded(precision: str, scenario: str, mode: str, **values: float) -> Any:
    from ckvision.experiments.entries import RecordedRun

    model: dict[str, Any] = {"name": "m", "tags": ["model", "onnx", precision]}
    if precision == "int8":
        model.update(precision="int8", quantization={"method": "minmax"})
    loadgen = {"scenario": scenario, "mode": mode, "result_validity": "VALID"}
    if "qps" in values:
        loadgen["samples_per_second"] = values["qps"]
    if "p50" in values:
        loadgen["latency_p50_ns"] = values["p50"] * 1e6
        loadgen["latency_p90_ns"] = values["p50"] * 1.1e6
    record = {
        "loadgen": loadgen,
        "config": {"scenario": scenario, "mode": mode, "batch_size": 1},
        "model": model,
        "accuracy": {"top1": values["top1"]} if "top1" in values else None,
    }
    return RecordedRun("e", ("t",), "p", 1, record, Path("x"))


def test_report_puts_precisions_side_by_side() -> None:
    from ckvision.analysis.sections import precision_table

    runs = [
        _recorded("fp32", "Offline", "PerformanceOnly", qps=100.0),
        _recorded("fp32", "Offline", "PerformanceOnly", qps=120.0),
        _recorded("int8", "Offline", "PerformanceOnly", qps=242.0),
        _recorded("fp32", "SingleStream", "PerformanceOnly", p50=10.0),
        _recorded("int8", "SingleStream", "PerformanceOnly", p50=4.0),
        _recorded("fp32", "Offline", "AccuracyOnly", top1=80.0),
        _recorded("int8", "Offline", "AccuracyOnly", top1=79.0),
    ]
    table = precision_table(runs).set_index("precision")
    assert table.at["int8", "calibration"] == "minmax"
    assert table.at["fp32", "Offline samples/s"] == pytest.approx(110.0)  # mean of runs
    assert table.at["int8", "x FP32 samples/s"] == pytest.approx(2.2)
    assert table.at["int8", "x FP32 p50"] == pytest.approx(0.4)
    assert table.at["int8", "x FP32 top-1"] == pytest.approx(79 / 80)
    assert bool(table.at["int8", "meets 99%"]) is False  # 98.75% of FP32
    assert precision_table(runs[:2]).empty  # one precision: nothing to compare


def test_the_runs_table_names_the_precision_of_each_run() -> None:
    from ckvision.analysis import summary_table
    from ckvision.analysis.frame import run_row

    fp32 = _recorded("fp32", "Offline", "PerformanceOnly", qps=100.0)
    int8 = _recorded("int8", "Offline", "PerformanceOnly", qps=242.0)
    table = summary_table(pd.DataFrame([run_row(r) for r in (fp32, int8)]))
    # beside the model's name, which INT8 keeps (its contract is carried over)
    assert list(table.columns[table.columns.get_loc("model") :][:2]) == ["model", "precision"]
    assert list(table["precision"]) == ["fp32", "int8"]
    assert list(summary_table(pd.DataFrame([run_row(int8)]))["precision"]) == ["int8"]
    assert "precision" not in summary_table(pd.DataFrame([run_row(fp32)]))  # FP32 alone


@pytest.fixture(scope="module")
def ck_int8_world(ck_world: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A copy of the session's CK world (its env entries: python, the FP32 model, the
    sample set), so the INT8 env installed here never makes the other ck tests' model
    dependency ambiguous."""
    base = tmp_path_factory.mktemp("ck-int8")
    shutil.copytree(ck_world["CK_REPOS"], base / "repos", symlinks=True)
    (base / "tools").mkdir()
    return dict(ck_world, CK_REPOS=str(base / "repos"), CK_TOOLS=str(base / "tools"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ck_installs_the_int8_package_from_the_installed_fp32_model(
    ck_int8_world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckcli import ck

    env = ck_int8_world
    bad = ck(
        env,
        "install",
        "package:model-onnx-quantized-from-onnx",
        "--tags=int8,entropy",
        "--env.CKVISION_INT8_CALIBRATION_COUNT=-3",
        "--quiet",
    )
    assert bad.returncode != 0
    assert "calibration count -3 must not be negative" in bad.stdout + bad.stderr
    assert not ck(env, "show", "env", "--tags=int8").stdout.count("int8")  # nothing registered
    done = ck(
        env,
        "install",
        "package:model-onnx-quantized-from-onnx",
        "--tags=int8,percentile",
        "--env.CKVISION_INT8_CALIBRATION_COUNT=16",
        "--env.CKVISION_INT8_ACCURACY_COUNT=32",
        "--quiet",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "MLPerf's 99% of FP32 on this set" in done.stdout
    shown = ck(env, "show", "env", "--tags=model,onnx,int8,percentile,efficientnet-lite0").stdout
    assert "efficientnet-lite0" in shown
    (sidecar,) = Path(env["CK_TOOLS"]).glob("*/model.json")
    side = json.loads(sidecar.read_text())
    assert side["env"]["ML_MODEL_DATA_TYPE"] == "int8"
    assert side["quantization"]["calibration"]["set"] == "ckvision-set-aside-photos"
    assert side["quantization"]["calibration"]["images"] == 16
    assert side["accuracy"]["images"] == 32 and side["accuracy"]["dataset_kind"] == "sample"
    # plain FP32 queries still select one package (CK matches tags and variation names)
    from ckvision.ck.deps import check_package_tags

    monkeypatch.setenv("CK_REPOS", env["CK_REPOS"])
    monkeypatch.setenv("CK_TOOLS", env["CK_TOOLS"])
    for tags in ("model,onnx,resnet50", "model,onnx,efficientnet-lite0,fp32"):
        assert check_package_tags(tags)["package"] != INT8_PACKAGE_UID  # one match, not ours
    assert check_package_tags("model,onnx,int8,from.resnet50")["package"] == INT8_PACKAGE_UID
    # `make demo` after this install still runs the embedded FP32 model: its weights tags
    # (added to the program's dependency tags) select the FP32 env alone, not the INT8 one,
    # which carries the model's name too
    from ckvision.demo import PROGRAM, benchmark_args

    (added,) = [
        a.split("=", 1)[1]
        for a in benchmark_args("Offline", "AccuracyOnly", {})
        if a.startswith("--dep_add_tags.weights=")
    ]
    meta = Path(__file__).resolve().parents[1] / "program" / PROGRAM / ".cm" / "meta.json"
    dep_tags = json.loads(meta.read_text())["run_deps"]["weights"]["tags"]
    both = ck(env, "show", "env", f"--tags={dep_tags}").stdout
    assert "int8" in both and "fp32" in both  # without the demo's tags: two matches
    demo = [line for line in ck(env, "show", "env", f"--tags={dep_tags},{added}").stdout
            .splitlines() if "64bits" in line]  # fmt: skip
    assert len(demo) == 1 and ",fp32," in demo[0] and "int8" not in demo[0], demo


def _activation_scales(model: Path) -> dict[str, float]:
    graph = onnx.load(str(model)).graph
    values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    return {
        n.input[0]: float(values[n.input[1]])
        for n in graph.node
        if n.op_type == "QuantizeLinear" and values[n.input[1]].ndim == 0
    }


def test_the_calibration_method_decides_the_ranges(
    tmp_path: Path, fp32_model: Path, calibration_dir: Path, int8_model: Path
) -> None:
    """ORT's default entropy settings equal minmax; ours histogram 2048 bins (TensorRT's)."""
    out = tmp_path / "minmax"
    assert _quantize(fp32_model, out, "--calibration-dir", str(calibration_dir)) == 0
    minmax, entropy = _activation_scales(out / "model.onnx"), _activation_scales(int8_model)
    assert minmax.keys() == entropy.keys() and minmax
    assert any(entropy[k] < minmax[k] * 0.99 for k in minmax)  # entropy clips some tail
