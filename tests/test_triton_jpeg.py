"""The JPEG-in Triton ensemble (issue 20) on a real tritonserver 2.51 (python backend).

JPEG bytes go in, the classifier's logits come out; they equal the tiny model's function
(numpy, conftest) on the in-process engine's pixels. A corrupt JPEG gets an error
response and the rest of its batch is answered; a client that disconnects mid-request
leaves the server serving. Skips, with the reason, where there is no Triton env.
"""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import tiny_logits
from test_jpeg_input import _jpeg_folder

from ckvision.data.encoded import EncodedDataset
from ckvision.data.imagenet import build_imagenet_cache
from ckvision.errors import CkVisionError, ConfigError
from ckvision.models.contract import ModelContract
from ckvision.triton.ensemble import EnsembleSpec, write_ensemble
from ckvision.triton.repository import RepoSpec, write_repository


@pytest.fixture(scope="module")
def jpeg_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_onnx_model: Path, tiny_contract: ModelContract
) -> Iterator[dict[str, Any]]:
    pytest.importorskip("tritonclient.http")
    from ckvision.triton.server import TritonServer, find_triton

    try:
        install = find_triton()
    except CkVisionError as err:
        pytest.skip(f"no Triton server: {err}")
    tmp = tmp_path_factory.mktemp("triton-jpeg")
    folder = _jpeg_folder(tmp, tiny_contract)
    cache = build_imagenet_cache(folder, tmp / "cache", tiny_contract).path
    repo = tmp / "repo"
    write_repository(repo, tiny_onnx_model, tiny_contract, RepoSpec(backend="python", max_batch=8))
    spec = EnsembleSpec(engine="pillow", max_batch=8, max_queue_delay_us=500, threads=2)
    write_ensemble(repo, tiny_contract, spec)
    with TritonServer(install, repo, tmp / "logs") as server:
        yield {
            "url": server.http_url,
            "grpc": server.grpc_url,
            "cache": cache,
            "spec": spec,
            "log": server.log_path,
        }


def _infer(url: str, model: str, blobs: list[bytes]) -> Any:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url, network_timeout=30.0)
    try:
        data = httpclient.InferInput("JPEG", [len(blobs), 1], "BYTES")
        data.set_data_from_numpy(np.array(blobs, dtype=object).reshape(-1, 1))
        return client.infer(model, [data]).as_numpy("logits")
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_ensemble_answers_jpeg_bytes_with_the_in_process_pixels(
    jpeg_server: dict[str, Any], tiny_contract: ModelContract
) -> None:
    data = EncodedDataset.open(jpeg_server["cache"], tiny_contract, "pillow")
    try:
        blobs = [data.read(i) for i in range(6)]
        expected = tiny_logits(data.model_input(data.preprocessor(8)(blobs, list(data.files[:6]))))
    finally:
        data.close()
    logits = _infer(jpeg_server["url"], jpeg_server["spec"].ensemble_name, blobs)
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    assert np.array_equal(logits.argmax(1), expected.argmax(1))


@pytest.mark.timeout(60)
def test_the_preprocess_threads_served_are_recorded_and_others_refused(
    jpeg_server: dict[str, Any], tiny_contract: ModelContract
) -> None:
    """CK_TRITON_PREPROCESS_THREADS against a server by URL: its value is what the
    ensemble's preprocess step serves, or the run is refused with one line."""
    from ckvision.backends import BackendOptions, create_backend

    repo = Path(jpeg_server["cache"]).parent / "repo"
    served = jpeg_server["spec"].threads
    options = {
        "triton_urls": (jpeg_server["url"],),
        "triton_model": jpeg_server["spec"].ensemble_name,
    }
    same = BackendOptions(triton_preprocess_threads=served, **options)
    with create_backend("triton", repo, tiny_contract, same) as backend:
        backend.load()
        assert backend.served is not None
        assert backend.served["preprocess"]["preprocess_threads"] == served
        assert "preprocess_threads" not in backend.served["classifier"]
    other = BackendOptions(triton_preprocess_threads=served + 1, **options)
    backend = create_backend("triton", repo, tiny_contract, other)
    with pytest.raises(ConfigError, match=f"preprocesses with {served} threads, "
                       f"CK_TRITON_PREPROCESS_THREADS={served + 1}") as caught:  # fmt: skip
        backend.load()
    assert "\n" not in str(caught.value)
    backend.close()


@pytest.mark.timeout(120)
def test_corrupt_jpeg_fails_its_request_only(
    jpeg_server: dict[str, Any], tiny_contract: ModelContract
) -> None:
    from tritonclient.utils import InferenceServerException

    data = EncodedDataset.open(jpeg_server["cache"], tiny_contract, "pillow")
    good = data.read(0)
    with pytest.raises(InferenceServerException, match="preprocessing failed: cannot use image"):
        _infer(jpeg_server["url"], jpeg_server["spec"].ensemble_name, [good[: len(good) // 3]])
    # the server still serves
    assert _infer(jpeg_server["url"], jpeg_server["spec"].ensemble_name, [good]).shape == (1, 10)


@pytest.mark.timeout(120)
def test_a_client_that_disconnects_mid_request_leaves_the_server_serving(
    jpeg_server: dict[str, Any], tiny_contract: ModelContract
) -> None:
    host, port = jpeg_server["url"].split(":")
    name = jpeg_server["spec"].ensemble_name
    for _ in range(3):  # a body promised and cut short, then the socket closed
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.putrequest("POST", f"/v2/models/{name}/infer")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "100000")
        conn.endheaders()
        conn.send(b'{"inputs":[{"name":"JPEG","shape":[1,1],"datatype":"BYTES","data":["')
        conn.close()
    data = EncodedDataset.open(jpeg_server["cache"], tiny_contract, "pillow")
    blobs = [data.read(i) for i in range(3)]
    assert _infer(jpeg_server["url"], name, blobs).shape == (3, 10)
    assert "Segmentation" not in Path(jpeg_server["log"]).read_text(errors="replace")


def test_ensemble_spec_refuses_bad_values(tmp_path: Path, tiny_contract: ModelContract) -> None:
    with pytest.raises(ConfigError, match="using-pillow, using-opencv, using-dali"):
        EnsembleSpec(engine="magick")
    with pytest.raises(ConfigError, match="must be 1-64"):
        EnsembleSpec(classifier='x" } ] }')
    with pytest.raises(ConfigError, match="instances must be >= 1"):
        EnsembleSpec(instances=0)
    with pytest.raises(CkVisionError, match="no classifier 'classifier'"):
        write_ensemble(tmp_path, tiny_contract, EnsembleSpec())
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize(
    ("protocol", "shm"), [("http", "none"), ("grpc", "none"), ("grpc", "system")]
)
@pytest.mark.timeout(120)
def test_loadgen_sends_jpeg_bytes_through_the_ensemble(
    jpeg_server: dict[str, Any],
    tiny_contract: ModelContract,
    tmp_path: Path,
    protocol: str,
    shm: str,
) -> None:
    """LoadGen -> our Triton client -> ensemble: the accuracy of the in-process runs, the
    files sent in the request or through shared memory."""
    from ckvision.config import Mode, RunConfig, Scenario
    from ckvision.program import resolve_inputs, run_program

    repo = Path(jpeg_server["cache"]).parent / "repo"
    inputs = resolve_inputs({}, "triton", repo / "ckvision-triton.json", jpeg_server["cache"])
    url = jpeg_server["url"] if protocol == "http" else jpeg_server["grpc"]
    config = RunConfig(
        backend="triton",
        scenario=Scenario.OFFLINE,
        mode=Mode.ACCURACY,
        batch_size=4,
        workers=2,
        autotune="off",
        progress="off",
        input_format="jpeg",
        triton_urls=url,
        triton_protocol=protocol,
        triton_shm=shm,
        triton_model=jpeg_server["spec"].ensemble_name,
    )
    record = run_program(config, inputs, tmp_path / "out", log=lambda _line: None)
    assert record["backend"]["statistics"]["shared_memory"] == shm
    assert record["accuracy"]["top1"] == pytest.approx(75.0)
    assert record["accuracy"]["total"] == 24
    dataset = record["dataset"]
    assert dataset["preprocessing_in_measured_path"] is True
    assert dataset["preprocessing"]["preprocessed_by"] == "server"
    # a preprocessed-pixels run against the JPEG model is refused with one line
    with pytest.raises(CkVisionError, match="run it with CK_INPUT_FORMAT=jpeg"):
        run_program(
            config.with_(input_format="preprocessed"),
            inputs,
            tmp_path / "refused",
            log=lambda _line: None,
        )


def _default_run(
    jpeg_server: dict[str, Any], tmp_path: Path, log: Any, **given: Any
) -> dict[str, Any]:
    """THE pipeline (``program.run``) on the ensemble, a short Offline performance run
    with nothing tuned by hand but ``given``; returns the run's record."""
    from ckvision.program import run

    return run(
        {"CK_TUNING_CACHE": str(tmp_path / "tuning.json")},
        {
            "backend": "triton",
            "triton_model": jpeg_server["spec"].ensemble_name,
            "input_format": "jpeg",
            "scenario": "Offline",
            "mode": "PerformanceOnly",
            "min_duration_s": 1,
            "progress": "off",
            **given,
        },
        tmp_path / "out",
        model=Path(jpeg_server["cache"]).parent / "repo" / "ckvision-triton.json",
        dataset=jpeg_server["cache"],
        log=log,
    )


@pytest.mark.timeout(180)
def test_a_default_auto_tuned_run_probes_the_ensemble_with_jpeg_files(
    jpeg_server: dict[str, Any], tmp_path: Path
) -> None:
    """THE pipeline, nothing tuned by hand: the probe sends the ensemble what the run
    sends (the files; seen: it sent pixels and the default run failed), chooses the layout,
    and forms nothing here (no preprocessing threads or prefetch to choose)."""

    record = _default_run(jpeg_server, tmp_path, lambda _line: None, triton_urls=jpeg_server["url"])
    tuning = record["tuning"]
    assert tuning["layout"] and tuning["samples_per_s"] > 0
    assert "preprocess" not in tuning and "prefetch" not in tuning
    assert record["dataset"]["preprocessing"]["preprocessed_by"] == "server"
    assert float(record["loadgen"]["samples_per_second"]) > 0


@pytest.mark.timeout(180)
def test_cli_writes_the_ensemble_and_perf_analyzer_sends_it_jpeg_files(
    jpeg_server: dict[str, Any],
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`triton-repo --jpeg-ensemble`, then `triton-perf --jpeg-dataset` on its own server:
    perf_analyzer sends real JPEG files (a corrupt or wrong encoding would fail them)."""
    import json

    from ckvision.cli import main

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy2(tiny_onnx_model, model_dir / "model.onnx")
    (model_dir / "model.json").write_text(json.dumps({"env": tiny_contract.to_env()}))
    repo = tmp_path / "repo"
    assert (
        main(
            [
                "triton-repo",
                "--model",
                str(model_dir / "model.onnx"),
                "--install-dir",
                str(repo),
                "--jpeg-ensemble",
                "pillow",
                "--preprocess-threads",
                "2",
                "--preprocess-queue-delay-us",
                "200",
            ]
        )
        == 0
    )
    config = (repo / "preprocess" / "config.pbtxt").read_text()
    assert 'string_value: "pillow"' in config and "max_queue_delay_microseconds: 200" in config
    assert 'platform: "ensemble"' in (repo / "classifier_jpeg" / "config.pbtxt").read_text()
    out = tmp_path / "perf"
    assert (
        main(
            [
                "triton-perf",
                "--repository",
                str(repo),
                "--model-name",
                "classifier_jpeg",
                "--jpeg-dataset",
                str(jpeg_server["cache"]),
                "--request-count",
                "20",
                "--stability-percent",
                "90",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    assert "infer/s" in capsys.readouterr().out
    sent = json.loads((out / "jpeg-input.json").read_text())["data"]
    assert len(sent) == 24 and set(sent[0]) == {"JPEG"}
    log = (out / "tritonserver.log").read_text(errors="replace")
    assert "preprocessing failed" not in log


@pytest.mark.timeout(120)
def test_shared_memory_for_files_grows_for_a_larger_batch_and_is_removed(
    jpeg_server: dict[str, Any], tiny_contract: ModelContract, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoded files differ in size: the input region is made for the first batch and
    made anew when one does not fit; answers equal the request path's; every region is
    unregistered and gone after close."""
    from ckvision.backends import BackendOptions, create_backend
    from ckvision.data.encoded import encoded_batch

    dataset = EncodedDataset.open(jpeg_server["cache"], tiny_contract, "pillow")
    try:
        files = [dataset.read(i) for i in range(dataset.size)]
    finally:
        dataset.close()
    small = encoded_batch(sorted(files, key=len)[:1])  # one file, the smallest
    large = encoded_batch(sorted(files, key=len)[-8:])  # eight, the largest
    model = Path(jpeg_server["cache"]).parent / "repo"
    monkeypatch.setattr("ckvision.triton.client.MIN_REGION_BYTES", 0)  # small files here
    options = {
        "triton_urls": (jpeg_server["grpc"],),
        "triton_protocol": "grpc",
        "triton_model": jpeg_server["spec"].ensemble_name,
    }
    shared = create_backend(
        "triton", model, tiny_contract, BackendOptions(triton_shm="system", **options)
    )
    plain = create_backend("triton", model, tiny_contract, BackendOptions(**options))
    try:
        shared.load()
        plain.load()
        first = shared.predict(small)
        link = shared._link(0)
        size_before = link.regions["in"][2]
        second = shared.predict(large)
        assert link.regions["in"][2] > size_before  # made anew, larger
        np.testing.assert_allclose(first, plain.predict(small), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(second, plain.predict(large), rtol=1e-5, atol=1e-5)
        status = link.client.get_system_shared_memory_status(as_json=True)
        regions = status.get("regions", {})
        names = {r["name"] for r in (regions.values() if isinstance(regions, dict) else regions)}
        assert {link.regions["in"][0], link.regions["out"][0]} <= names
    finally:
        shared.close()
        plain.close()
    assert list(Path("/dev/shm").glob(f"ckv{os.getpid()}_*")) == []


@pytest.mark.timeout(300)
def test_a_default_run_that_starts_its_server_serves_the_knobs_it_chose(
    jpeg_server: dict[str, Any], tmp_path: Path
) -> None:
    """THE pipeline (program.run), nothing tuned by hand, no URL: the probe serves each
    (instances, delay) pair, then each preprocessing thread count at the pair chosen,
    from servers of its own; the run's own server serves what was chosen."""
    from ckvision.tuning.server_knobs import choose_knobs, knob_candidates, thread_candidates

    lines: list[str] = []
    record = _default_run(jpeg_server, tmp_path, lines.append)  # no URL: it starts one
    tuning = record["tuning"]
    server = tuning["server"]
    pairs = {
        (c["instances"], c["max_queue_delay_us"]): c["samples_per_s"] for c in server["candidates"]
    }
    assert set(pairs) == set(knob_candidates(2, None, None)) and min(pairs.values()) > 0
    pair = (server["instances"], server["max_queue_delay_us"])
    assert pair == choose_knobs(pairs)
    threads = {
        (c["preprocess_threads"],): c["samples_per_s"] for c in server["preprocess_candidates"]
    }
    assert set(threads) == set(thread_candidates(2))
    assert (server["preprocess_threads"],) == choose_knobs(threads)
    assert server["samples_per_s"] == threads[(server["preprocess_threads"],)]
    chosen = tuning["chosen"]
    assert (chosen["triton_instances"], chosen["triton_max_queue_delay_us"]) == pair
    assert chosen["triton_preprocess_threads"] == server["preprocess_threads"]
    # the run's own server serves what was chosen (checked against the served configs)
    served = record["backend"]["statistics"]["served_models"]
    assert served["preprocess"] == {
        "instances": pair[0],
        "max_queue_delay_us": pair[1],
        "preprocess_threads": server["preprocess_threads"],
    }
    assert served["classifier"] == {"instances": pair[0], "max_queue_delay_us": pair[1]}
    # the expectations follow what was chosen, and the check used them
    assert tuning["expected_samples_per_s"] <= server["samples_per_s"]
    assert tuning["validation"]["predicted_samples_per_s"] == tuning["expected_samples_per_s"]
    assert any("preprocessing thread(s) per instance" in line for line in lines)
    assert float(record["loadgen"]["samples_per_second"]) > 0
