"""JPEG-in mode (issue 20): encoded files in the QSL, preprocessing in the measured path.

Real components: LoadGen, ONNX Runtime on the tiny model (conftest), Pillow, OpenCV,
and NVIDIA DALI's CPU pipeline where the ``dali`` extra is installed (else those tests
skip, naming why). The dataset is a folder of real JPEG files (ImageNet layout) and its
offline rgb8 cache, built by the project's own ``build_imagenet_cache``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import NUM_CLASSES, tiny_logits
from PIL import Image

from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.data.encoded import EncodedDataset, dali_available, pixel_difference
from ckvision.data.imagenet import build_imagenet_cache
from ckvision.data.preprocess import normalise, rgb8_file
from ckvision.data.variation import Preprocessing
from ckvision.errors import ConfigError, DataError, RunError
from ckvision.models.contract import ModelContract
from ckvision.program import ProgramInputs, run_program
from ckvision.sweeps.grid import throughput

COUNT = 24
FLIPPED = 6
BATCH = 4
needs_dali = pytest.mark.skipif(dali_available() is not None, reason=str(dali_available()))


def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth colour gradients plus noise: a resize changes pixels, a JPEG has detail."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    pixels = base * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 25, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _jpeg_folder(root: Path, contract: ModelContract) -> Path:
    """COUNT JPEGs of varied sizes + val_map.txt whose labels are the tiny model's own
    predictions on the offline pixels, FLIPPED of them changed (top-1 = 75.000%)."""
    folder = root / "val"
    folder.mkdir()
    rng = np.random.default_rng(20)
    spec = Preprocessing.for_model(contract)
    labels = []
    for i in range(COUNT):
        name = f"img{i:03d}.jpg"
        width, height = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        Image.fromarray(_photo(rng, width, height)).save(folder / name, "JPEG", quality=85)
        pixels = normalise(rgb8_file(folder / name, spec)[None], contract)
        predicted = int(tiny_logits(pixels).argmax())
        labels.append((predicted + 1) % NUM_CLASSES if i < FLIPPED else predicted)
    text = "".join(f"img{i:03d}.jpg {label}\n" for i, label in enumerate(labels))
    (folder / "val_map.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def jpeg_data(
    tmp_path_factory: pytest.TempPathFactory, tiny_contract: ModelContract
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jpeg")
    folder = _jpeg_folder(root, tiny_contract)
    caches = {}
    for library in ("pillow", "opencv"):
        contract = _contract(tiny_contract, library)
        caches[library] = build_imagenet_cache(folder, root / f"cache-{library}", contract).path
    return {"folder": folder, **caches}


def _contract(base: ModelContract, library: str) -> ModelContract:
    from dataclasses import replace

    return replace(base, library=library)


def _config(**changes: object) -> RunConfig:
    values: dict[str, object] = {
        "backend": "onnxruntime",
        "scenario": Scenario.OFFLINE,
        "mode": Mode.ACCURACY,
        "batch_size": BATCH,
        "threads": 1,
        "autotune": "off",
        "progress": "off",
    }
    values.update(changes)
    return RunConfig(**values)  # type: ignore[arg-type]


def _run(
    config: RunConfig, model: Path, contract: ModelContract, dataset: Path, out: Path
) -> dict[str, object]:
    inputs = ProgramInputs(model, contract, dataset, {"path": str(model)})
    return run_program(config, inputs, out, log=lambda _line: None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("library", ["pillow", "opencv"])
def test_engine_pixels_equal_the_offline_cache(
    jpeg_data: dict[str, Path], tiny_contract: ModelContract, library: str
) -> None:
    contract = _contract(tiny_contract, library)
    data = EncodedDataset.open(jpeg_data[library], contract, threads=2)
    assert data.engine == library  # "" = the model's library
    try:
        engine = data.preprocessor(BATCH)
        blobs = [data.read(i) for i in range(COUNT)]
        pixels = engine(blobs, list(data.files))
        reference = PreprocessedDataset.open(jpeg_data[library]).images
        assert pixels.dtype == np.uint8 and pixels.shape == reference.shape
        assert np.array_equal(pixels, reference)  # same pixels, bit for bit
        # and the model's input is the offline mode's normalisation of them
        offline = np.asarray(data.reference.images[:COUNT])
        assert np.array_equal(data.model_input(pixels), offline)
    finally:
        data.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("library", "scenario"),
    [
        ("pillow", Scenario.OFFLINE),
        ("opencv", Scenario.OFFLINE),
        ("pillow", Scenario.SINGLE_STREAM),
    ],
)
def test_jpeg_run_accuracy_equals_offline_run(
    jpeg_data: dict[str, Path],
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    tmp_path: Path,
    library: str,
    scenario: Scenario,
) -> None:
    contract = _contract(tiny_contract, library)
    config = _config(scenario=scenario)
    offline = _run(config, tiny_onnx_model, contract, jpeg_data[library], tmp_path / "offline")
    jpeg = _run(
        config.with_(input_format="jpeg", preprocess_threads=2),
        tiny_onnx_model,
        contract,
        jpeg_data[library],
        tmp_path / "jpeg",
    )
    accuracy = jpeg["accuracy"]
    assert isinstance(accuracy, dict) and isinstance(offline["accuracy"], dict)
    assert accuracy["top1"] == offline["accuracy"]["top1"] == pytest.approx(75.0)
    assert accuracy["top5"] == offline["accuracy"]["top5"]
    assert accuracy["total"] == COUNT
    # the record says, where tables and submissions look, that this is JPEG-in
    dataset = jpeg["dataset"]
    assert isinstance(dataset, dict)
    assert dataset["preprocessing_in_measured_path"] is True
    assert dataset["input_format"] == "jpeg" and dataset["storage"] == "encoded"
    assert dataset["preprocessing"]["engine"] == library
    assert f"using-{library}" in dataset["preprocessing"]["tags"]
    assert "input.jpeg" in dataset["preprocessing"]["tags"]
    assert jpeg["config"]["input_format"] == "jpeg"  # type: ignore[index]
    off = offline["dataset"]
    assert isinstance(off, dict) and off["preprocessing_in_measured_path"] is False


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("scenario", "prefetch"),
    [(Scenario.OFFLINE, 0), (Scenario.OFFLINE, 1), (Scenario.SERVER, 2)],
)
def test_jpeg_performance_run_times_the_preprocessing(
    jpeg_data: dict[str, Path],
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    tmp_path: Path,
    scenario: Scenario,
    prefetch: int,
) -> None:
    """In PerformanceOnly the batch's forming (= the preprocessing) is in the breakdown,
    prefetched or not, whether the batches wait to fill (Server) or not."""
    config = _config(
        scenario=scenario,
        mode=Mode.PERFORMANCE,
        input_format="jpeg",
        count_override=64,
        min_duration_s=0.05,
        target_qps=2000.0 if scenario is Scenario.OFFLINE else 200.0,
        target_latency_ms=None if scenario is Scenario.OFFLINE else 1000.0,
        workers=2,
        preprocess_prefetch=prefetch,
    )
    record = _run(config, tiny_onnx_model, tiny_contract, jpeg_data["pillow"], tmp_path / "perf")
    assert (throughput(record) or 0) > 0
    assert record["failures"] == 0
    histogram = record["latency_histogram"]
    assert isinstance(histogram, dict)
    breakdown = histogram["breakdown"]
    assert breakdown["batch_formation_ms"] > 0  # the preprocessing share is recorded


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["pillow", pytest.param("dali", marks=needs_dali)])
def test_prefetch_forms_batches_ahead_with_the_same_answers(
    jpeg_data: dict[str, Path],
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    tmp_path: Path,
    engine: str,
) -> None:
    """CK_PREPROCESS_PREFETCH=2: each worker keeps two batches formed ahead of the one
    it infers; every answer (the accuracy log, sample by sample) is prefetch 0's."""
    records, answers = {}, {}
    for depth in (0, 2):
        config = _config(input_format="jpeg", preprocess_engine=engine, preprocess_prefetch=depth)
        out = tmp_path / f"prefetch{depth}"
        records[depth] = _run(config, tiny_onnx_model, tiny_contract, jpeg_data["pillow"], out)
        log = json.loads((out / "mlperf_log_accuracy.json").read_text(encoding="utf-8"))
        answers[depth] = sorted((e["qsl_idx"], e["data"]) for e in log)
    assert answers[2] == answers[0] and len(answers[0]) == COUNT
    assert records[2]["accuracy"] == records[0]["accuracy"]
    ahead = records[2]["dataset"]["prefetch"]  # type: ignore[index]
    assert ahead == {"depth": 2, "most_ahead": 2}  # two batches were in flight ahead
    assert "prefetch" not in records[0]["dataset"]  # type: ignore[operator]
    assert records[2]["config"]["preprocess_prefetch"] == 2  # type: ignore[index]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("engine", "prefetch"),
    [("pillow", 0), ("pillow", 2), pytest.param("dali", 0, marks=needs_dali)],
)
def test_corrupt_jpeg_mid_run_fails_the_run_with_one_line(
    jpeg_data: dict[str, Path],
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    tmp_path: Path,
    engine: str,
    prefetch: int,
) -> None:
    folder = tmp_path / "val"
    shutil.copytree(jpeg_data["folder"], folder)
    cache = tmp_path / "cache"
    build_imagenet_cache(folder, cache, tiny_contract)
    bad = folder / "img013.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])  # truncated mid-scan
    config = _config(
        input_format="jpeg",
        preprocess_engine=engine,
        preprocess_threads=2,
        preprocess_prefetch=prefetch,
    )
    with pytest.raises(RunError) as caught:
        _run(config, tiny_onnx_model, tiny_contract, cache, tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message
    assert "img013.jpg" in message
    # every sample completed (the bad one's batch empty): LoadGen had all its responses
    assert f"{BATCH} of {COUNT} samples failed" in message
    # and the failed run's logs are set aside, never left looking like a result
    assert not (tmp_path / "out" / "mlperf_log_accuracy.json").exists()
    assert (tmp_path / "out" / "mlperf_log_accuracy.json.failed-run").exists()
    assert not (tmp_path / "out" / "ckvision-run.json").exists()


@pytest.mark.timeout(120)
def test_cli_jpeg_run_and_bad_values_are_one_line(
    jpeg_data: dict[str, Path], tiny_onnx_model: Path, tmp_path: Path
) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        ML_MODEL_MODEL_NAME="tiny",
        ML_MODEL_IMAGE_HEIGHT="16",
        ML_MODEL_IMAGE_WIDTH="16",
        ML_MODEL_RESIZE_SIZE="16",
        ML_MODEL_NUM_CLASSES=str(NUM_CLASSES),
        ML_MODEL_OUTPUT_LAYER_NAME="logits",
        CK_AUTOTUNE="off",
    )
    base = [sys.executable, "-m", "ckvision", "run", "--model", str(tiny_onnx_model)]
    base += ["--dataset", str(jpeg_data["pillow"]), "--quiet"]
    for flags, match in [
        (["--input-format", "png"], "CK_INPUT_FORMAT='png' unknown"),
        (["--input-format", "jpeg", "--preprocess-engine", "using-x;rm"], "unknown; use one of"),
        (["--input-format", "jpeg", "--preprocess-threads", "-1"], "must be >= 0"),
        (["--input-format", "jpeg", "--preprocess-prefetch", "9"], "between 0 and 8"),
        (["--input-format", "jpeg", "--preprocess-prefetch", "x"], "is not an integer"),
        (["--triton-instances", "0"], "CK_TRITON_INSTANCES=0 must be positive"),
        (["--triton-max-queue-delay-us", "-1"], "CK_TRITON_MAX_QUEUE_DELAY_US=-1 must be >= 0"),
    ]:
        done = subprocess.run(
            [*base, "--output-dir", str(tmp_path / "bad"), *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ckvision: error: "), done.stderr
        assert match in lines[0]


def test_a_dataset_without_a_folder_is_refused(tiny_dataset, tiny_contract) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="no folder of encoded files"):
        EncodedDataset.open(tiny_dataset.path, tiny_contract)


def test_unknown_engine_is_refused(jpeg_data: dict[str, Path], tiny_contract) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="using-pillow, using-opencv, using-dali"):
        EncodedDataset.open(jpeg_data["pillow"], tiny_contract, "turbo")


# --- DALI (the optional extra): measured against the reference, never assumed equal ---


@needs_dali
@pytest.mark.timeout(120)
def test_dali_pixels_are_close_and_measured(
    jpeg_data: dict[str, Path], tiny_contract: ModelContract
) -> None:
    data = EncodedDataset.open(jpeg_data["pillow"], tiny_contract, "dali", threads=2)
    try:
        engine = data.preprocessor(BATCH)
        engine.prepare(2)
        blobs = [data.read(i) for i in range(COUNT)]
        pixels = engine(blobs, list(data.files))  # 6 batches of the pipeline's 4
        reference = np.asarray(PreprocessedDataset.open(jpeg_data["pillow"]).images)
        diff = pixel_difference(pixels, reference)
        assert pixels.shape == reference.shape and pixels.dtype == np.uint8
        assert diff["samples"] == COUNT
        assert 0 < diff["mean_abs"] < 12  # close to Pillow's, not identical
        one = engine(blobs[5:6], [data.files[5]])
        assert np.array_equal(one[0], pixels[5])  # a batch of one is the same sample
    finally:
        data.close()


@needs_dali
@pytest.mark.timeout(120)
def test_dali_run_records_engine_and_scores(
    jpeg_data: dict[str, Path],
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    tmp_path: Path,
) -> None:
    config = _config(input_format="jpeg", preprocess_engine="dali", preprocess_threads=2)
    record = _run(config, tiny_onnx_model, tiny_contract, jpeg_data["pillow"], tmp_path / "d")
    accuracy = record["accuracy"]
    assert isinstance(accuracy, dict) and accuracy["total"] == COUNT
    dataset = record["dataset"]
    assert isinstance(dataset, dict)
    assert dataset["preprocessing"]["engine"] == "dali"
    assert dataset["preprocessing"]["dali_device"] == "cpu"
    difference = dataset["preprocessing"]["reference_difference"]
    assert difference["samples"] == COUNT and 0 < difference["mean_abs"] < 12
    assert dataset["preprocessing_in_measured_path"] is True


def test_tables_and_tags_tell_jpeg_in_from_preprocessed() -> None:
    import pandas as pd

    from ckvision.analysis.tables import summary_table
    from ckvision.data.encoded import input_tags

    frame = pd.DataFrame(
        [
            {"entry": "a", "loadgen.mode": "PerformanceOnly"},
            {
                "entry": "b",
                "loadgen.mode": "PerformanceOnly",
                "dataset.preprocessing_in_measured_path": False,
            },
            {
                "entry": "c",
                "loadgen.mode": "PerformanceOnly",
                "dataset.preprocessing_in_measured_path": True,
                "dataset.preprocessing.engine": "dali",
            },
        ]
    )
    assert list(summary_table(frame)["input"]) == ["preprocessed", "preprocessed", "jpeg/dali"]
    assert "input" not in summary_table(frame.iloc[:1])  # no JPEG-in run: no column
    assert input_tags({"CK_INPUT_FORMAT": "jpeg", "CK_PREPROCESS_ENGINE": "dali"}) == [
        "input.jpeg",
        "using-dali",
    ]
    assert input_tags({"CK_INPUT_FORMAT": "jpeg"}) == ["input.jpeg"]
    assert input_tags({"CK_PREPROCESS_ENGINE": "dali"}) == []


@pytest.mark.timeout(120)
def test_sample_set_as_a_jpeg_folder_runs_jpeg_in(tmp_path: Path) -> None:
    """The embedded sample set written as JPEG files: an ImageNet-style folder whose
    labels are the photos' classes, usable by the offline cache and the JPEG-in mode."""
    from ckvision.data.imagenet import read_val_map
    from ckvision.data.sample_set import sample_items, write_sample_folder

    folder = write_sample_folder(tmp_path / "jpeg", size=12)
    items = read_val_map(folder)
    assert [label for _f, label in items] == [v.photo.imagenet_class for v in sample_items(12)]
    assert all((folder / f).read_bytes()[:2] == b"\xff\xd8" for f, _l in items)  # JPEG SOI
    contract = ModelContract(name="m", image_size=32, resize_size=36)
    cache = build_imagenet_cache(folder, tmp_path / "cache", contract).path
    data = EncodedDataset.open(cache, contract, threads=2)
    try:
        pixels = data.preprocessor(4)([data.read(i) for i in range(12)], list(data.files))
    finally:
        data.close()
    assert np.array_equal(pixels, PreprocessedDataset.open(cache).images)
    with pytest.raises(DataError, match="quality"):
        write_sample_folder(tmp_path / "bad", size=2, quality=0)
    assert not (tmp_path / "bad").exists()


def _tuner(  # type: ignore[no-untyped-def]
    data: Path, model: Path, contract: ModelContract, tmp: Path, lines: list[str], budget: float
):
    """``tune(config, explicit)``: the auto-tuner on ``data`` with its own tuning cache."""
    from ckvision.tuning import autotune

    env = {"CK_TUNING_CACHE": str(tmp / "tuning.json")}

    def tune(config: RunConfig, explicit: set[str]) -> tuple[RunConfig, dict | None]:
        return autotune(
            config, model, contract, data, explicit, log=lines.append, env=env, budget_s=budget
        )

    return tune


@pytest.mark.timeout(120)
def test_the_probe_chooses_the_preprocessing_threads_unless_given(
    jpeg_data: dict[str, Path],
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JPEG input, CK_PREPROCESS_THREADS unset: the auto-tuner times the engine at a few
    thread counts and records its choice; a given value is never overridden."""
    import ckvision.tuning as tuning
    from ckvision.tuning import explicit_settings
    from ckvision.tuning.preprocess import thread_candidates
    from ckvision.tuning.probe import usable_cores

    config = _config(input_format="jpeg", mode=Mode.PERFORMANCE, autotune="on")
    lines: list[str] = []
    tune = _tuner(jpeg_data["pillow"], tiny_onnx_model, tiny_contract, tmp_path, lines, 0.4)
    monkeypatch.setattr(tuning, "SPREAD_LIMIT", float("inf"))  # a busy machine still caches

    tuned, record = tune(config, {"workers", "threads"})
    assert record is not None
    chosen = tuned.preprocess_threads
    assert chosen == record["chosen"]["preprocess_threads"] == record["preprocess"]["threads"]
    candidates = record["preprocess"]["candidates"]
    assert [c["threads"] for c in candidates] == thread_candidates(usable_cores())
    assert all(c["images_per_s"] > 0 for c in candidates)
    assert record["preprocess"]["batch"] == tuned.batch_size  # at the run's batch
    assert f"{chosen} preprocessing threads (pillow" in lines[-1]
    assert record["preprocess"]["from_cache"] is False
    again, cached = tune(config, {"workers", "threads"})
    assert cached is not None and cached["preprocess"]["from_cache"] is True
    assert again.preprocess_threads == chosen
    # given (env or flag): never overridden, never probed
    given = explicit_settings({"CK_PREPROCESS_THREADS": "3"}, {}) | {"workers", "threads"}
    kept, record = tune(config.with_(preprocess_threads=3), given)
    assert kept.preprocess_threads == 3
    assert record is None or "preprocess" not in record
    assert record is None or "preprocess_threads" not in record["chosen"]
    # and a preprocessed (MLPerf) run has no preprocessing to tune
    _plain, record = tune(config.with_(input_format="preprocessed"), {"workers", "threads"})
    assert record is None or ("preprocess" not in record and "prefetch" not in record)


@pytest.mark.timeout(120)
def test_the_probe_chooses_the_prefetch_depth_at_the_runs_layout_unless_given(
    jpeg_data: dict[str, Path],
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JPEG input, CK_PREPROCESS_PREFETCH unset: the pipeline probe times each depth at
    the run's layout and preprocessing threads, the run gets the choice, the entry what
    was measured; a given depth, SingleStream (inline) and preprocessed input: no probe."""
    import ckvision.tuning as tuning
    from ckvision.tuning import explicit_settings, pipeline
    from ckvision.tuning.pipeline import DEPTHS

    config = _config(
        input_format="jpeg", mode=Mode.PERFORMANCE, autotune="on", preprocess_threads=2
    )
    lines: list[str] = []
    tune = _tuner(jpeg_data["pillow"], tiny_onnx_model, tiny_contract, tmp_path, lines, 0.6)
    monkeypatch.setattr(tuning, "SPREAD_LIMIT", float("inf"))  # a busy machine still caches

    fixed = {"workers", "threads", "batch_size", "preprocess_threads"}
    tuned, record = tune(config, fixed)
    assert record is not None and "preprocess" not in record  # the threads were given
    ahead = record["prefetch"]
    assert [c["depth"] for c in ahead["candidates"]] == list(DEPTHS)
    assert all(c["images_per_s"] > 0 for c in ahead["candidates"])
    assert tuned.preprocess_prefetch == ahead["depth"] == record["chosen"]["preprocess_prefetch"]
    assert f"{ahead['depth']} batch(es) formed ahead" in lines[-1]
    measured = json.loads((tmp_path / "tuning.json").read_text())
    keys = [k for entry in measured.values() for k in entry["measured"] if "prefetch" in k]
    want = f"prefetch.pillow.cpu.p2.w{config.workers}.t{config.threads}.b{config.batch_size}"
    assert sorted(keys) == [f"{want}.d{d}" for d in DEPTHS]  # the run's layout and threads
    again, cached = tune(config, fixed)
    assert cached is not None and cached["prefetch"]["from_cache"] is True
    assert again.preprocess_prefetch == tuned.preprocess_prefetch
    given = fixed | explicit_settings({"CK_PREPROCESS_PREFETCH": "3"}, {})
    kept, record = tune(config.with_(preprocess_prefetch=3), given)
    assert kept.preprocess_prefetch == 3 and (record is None or "prefetch" not in record)
    single = config.with_(scenario=Scenario.SINGLE_STREAM)
    kept, record = tune(single, fixed)
    assert kept.preprocess_prefetch == 0 and (record is None or "prefetch" not in record)
    # the layout left open: the inference probe's near-best layouts are screened as
    # pipelines (one batch ahead) and the run takes the fastest, then its depth
    open_layout = {"preprocess_threads"}
    monkeypatch.setattr(pipeline, "LAYOUT_NEAR", 1.0)  # the tiny model's batches differ a lot
    tuned, record = tune(config, open_layout)
    assert record is not None
    ahead = record["prefetch"]
    screened = ahead["screened"]
    assert len(screened) >= 2 and all(s["images_per_s"] > 0 for s in screened)
    fastest = max(screened, key=lambda s: s["images_per_s"])
    picked = ahead["layout"]
    assert (picked["workers"], picked["threads"], picked["batch"]) == (
        fastest["workers"],
        fastest["threads"],
        fastest["batch"],
    )
    assert (tuned.workers, tuned.threads, tuned.batch_size) == tuple(picked.values())
    assert tuned.batch_size == picked["batch"] == record["chosen"]["batch_size"]
