"""One run pipeline (``ckvision.program.run``) whichever way a user comes in.

The CLI and the MLC script run the same pipeline: both record what auto-tuning chose,
and the probe builds its backends with the run's own options (one builder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ckvision.backends import BackendOptions
from ckvision.config import Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.models.contract import ModelContract


@pytest.mark.timeout(120)
def test_cli_and_mlc_script_run_one_pipeline_with_auto_tuning(
    tiny_run_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckvision import tuning
    from ckvision.ck.hooks.mlc import loadgen_run
    from ckvision.cli import main
    from ckvision.experiments.record import collect_run

    for key, value in tiny_run_env.items():
        monkeypatch.setenv(key, value)
    # a busy test machine's probe disagrees with itself and is then not cached (by design);
    # this test is about both entry points sharing one cache, not about the spread
    monkeypatch.setattr(tuning, "SPREAD_LIMIT", float("inf"))
    assert main(["run", "--output-dir", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = collect_run(tmp_path / "cli")

    monkeypatch.setenv("CK_REPOS", str(tmp_path / "ck-repos"))  # the real ck records it
    monkeypatch.chdir(tmp_path)
    env: dict[str, Any] = dict(tiny_run_env)
    assert loadgen_run({"env": env}) == {"return": 0}
    point = json.loads(Path(env["CKVISION_EXPERIMENT_POINT"]).read_text(encoding="utf-8"))
    mlc = point["characteristics_list"][0]["run"]

    for record in (cli, mlc):  # the MLC script used to skip auto-tuning silently
        assert record["tuning"] is not None, record
        assert set(record["tuning"]["chosen"]) == {"target_latency_ms"}
        assert (
            record["config"]["target_latency_ms"] == record["tuning"]["chosen"]["target_latency_ms"]
        )
        assert record["loadgen"]["scenario"] == "SingleStream"
    assert set(cli) <= set(mlc)  # the MLC point adds ck-mlperf's keys only
    assert mlc["tuning"]["from_cache"]  # the same cache: the same probe, not a second one
    assert Path(env["CKVISION_RUN_DIR"], "user.conf").is_file()


@pytest.mark.timeout(60)
def test_autotune_probe_builds_backends_with_the_runs_options(
    tiny_onnx_model: Path,
    tiny_contract: ModelContract,
    tiny_dataset: PreprocessedDataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ckvision.tuning as tuning

    made: list[BackendOptions] = []
    real = tuning.create_backend

    def recording(name: str, model: Path, contract: ModelContract, options: Any) -> Any:
        made.append(options)  # the real backend is still created and probed
        return real(name, model, contract, options)

    monkeypatch.setattr(tuning, "create_backend", recording)
    config = RunConfig(
        scenario=Scenario.SINGLE_STREAM,
        mode=Mode.PERFORMANCE,
        threads=1,
        triton_urls="http://127.0.0.1:9, http://127.0.0.1:10",
        triton_protocol="grpc",
        triton_timeout_s=7.0,
        triton_model="other",
    )
    _tuned, record = tuning.autotune(
        config, tiny_onnx_model, tiny_contract, tiny_dataset.path, set(), log=lambda _: None
    )
    assert record is not None and made
    from dataclasses import replace

    from ckvision.tuning.probe import ACCEL_WORKERS

    run = BackendOptions.from_config(config, tiny_onnx_model)
    for options in made:
        # one builder: the probe never drops the Triton fields (a second server) or the
        # cache; only its runner count is its own (one for each worker of its largest layout)
        assert replace(options, streams=run.streams) == run
        assert options.streams == max(config.workers, *ACCEL_WORKERS)
        assert options.triton_urls == ("http://127.0.0.1:9", "http://127.0.0.1:10")
        assert options.triton_protocol == "grpc" and options.triton_model == "other"
        assert options.cache_dir == tiny_onnx_model.parent / "ort-trt-cache"


def test_run_options_come_from_the_one_builder(tiny_onnx_model: Path, tmp_path: Path) -> None:
    config = RunConfig(threads=3, triton_urls="a:1", triton_shm="system", triton_python="/py")
    options = BackendOptions.from_config(config, tiny_onnx_model, tmp_path)
    assert (options.threads, options.run_dir) == (3, tmp_path)
    assert (options.triton_urls, options.triton_shm, options.triton_python) == (
        ("a:1",),
        "system",
        "/py",
    )
    assert BackendOptions.from_config(RunConfig()).cache_dir is None
    assert RunConfig.from_record(config.as_record()) == config


def test_each_backend_is_described_once_and_every_table_reads_it() -> None:
    from ckvision.backends.registry import BACKENDS, backend_names, check_available
    from ckvision.errors import BackendError, ConfigError
    from ckvision.program import MODEL_ENV, resolve_inputs
    from ckvision.sweeps.points import PROGRAMS

    assert set(backend_names()) == {"onnxruntime", "null", "pytorch", "tensorrt", "triton"}
    assert PROGRAMS["triton"] == "image-classification-triton-loadgen-py"  # was missing
    assert set(PROGRAMS) == {n for n, s in BACKENDS.items() if s.sweep}
    assert MODEL_ENV["tensorrt"] == (
        BACKENDS["tensorrt"].model_env,
        BACKENDS["tensorrt"].model_tags,
    )
    check_available("onnxruntime")  # nothing to check: no error
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="^TensorRT is not installed here"):
            check_available("tensorrt")
    with pytest.raises(ConfigError, match="backend 'nope' unknown; use one of: null, "):
        resolve_inputs({}, "nope")


def test_every_ck_program_and_sweep_point_runs_the_cli_pipeline() -> None:
    """The CK programs (``ck run``/``ck benchmark``, the sweeps' and the demo's points)
    run ``python -m ckvision run``, i.e. :func:`ckvision.program.run`; each backend's
    program in the registry is one of them."""
    from ckvision.backends.registry import BACKENDS

    root = Path(__file__).resolve().parents[1] / "program"
    metas = {
        meta.parent.parent.name: json.loads(meta.read_text(encoding="utf-8"))
        for meta in root.glob("*/.cm/meta.json")
    }
    assert metas, root
    for name, meta in metas.items():
        for cmd in meta["run_cmds"].values():
            assert cmd["run_time"]["run_cmd_main"].endswith(" -m ckvision run"), name
        backend = meta["run_vars"]["CK_BACKEND"]  # the program's default backend runs it
        assert BACKENDS[backend].program == name
    assert {spec.program for spec in BACKENDS.values()} <= set(metas)
