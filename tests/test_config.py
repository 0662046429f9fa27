"""RunConfig: parsing from CK env vars and every validation error, table-driven."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ckvision.config import (
    ENV_VARS,
    REFUSED_ENV,
    SETTINGS,
    Mode,
    RunConfig,
    Scenario,
    settings_table_markdown,
)
from ckvision.errors import CkVisionError, ConfigError

BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"batch_size": 0}, r"CK_BATCH_SIZE=0 must be positive"),
    ({"workers": -1}, r"CK_LOADGEN_WORKERS=-1 must be positive"),
    ({"multistreamness": 0}, r"CK_LOADGEN_MULTISTREAMNESS=0 must be positive"),
    ({"count_override": 0}, r"CK_LOADGEN_COUNT_OVERRIDE=0 must be positive"),
    ({"buffer_size": -5}, r"CK_LOADGEN_BUFFER_SIZE=-5 must be positive"),
    ({"target_qps": 0.0}, r"CK_LOADGEN_TARGET_QPS=0.0 must be positive"),
    ({"target_latency_ms": -1.0}, r"CK_LOADGEN_TARGET_LATENCY=-1.0 must be positive"),
    ({"max_duration_s": 0.0}, r"CK_LOADGEN_MAX_DURATION_S=0.0 must be positive"),
    ({"min_duration_s": -2.0}, r"CK_LOADGEN_MIN_DURATION_S=-2.0 must be positive"),
    ({"dataset_size": -1}, r"CK_LOADGEN_DATASET_SIZE=-1 must be >= 0"),
    ({"threads": -1}, r"CK_ORT_THREADS=-1 must be >= 0"),
    ({"server_batch_timeout_us": -1}, r"CK_SERVER_BATCH_TIMEOUT_US=-1 must be >= 0"),
    ({"verbose": 4}, r"CK_VERBOSE=4 must be between 0 and 3"),
    ({"preprocess_prefetch": 9}, r"CK_PREPROCESS_PREFETCH=9 must be between 0 and 8"),
    ({"preprocess_prefetch": -1}, r"CK_PREPROCESS_PREFETCH=-1 must be >= 0"),
    ({"triton_instances": 0}, r"CK_TRITON_INSTANCES=0 must be positive"),
    ({"triton_max_queue_delay_us": -1}, r"CK_TRITON_MAX_QUEUE_DELAY_US=-1 must be >= 0"),
    ({"compliance_test": "TEST05"}, r"CK_MLPERF_COMPLIANCE_TEST='TEST05' unknown"),
    ({"execution_provider": "rocm"}, r"CK_ORT_PROVIDER='rocm' unknown; use one of: cpu, cuda"),
    ({"precision": "int8"}, r"CK_PRECISION='int8' unknown"),
    ({"device": "tpu"}, r"CK_DEVICE='tpu' unknown"),
    ({"conf_file": Path("/nonexistent/mlperf.conf")}, r"CK_LOADGEN_CONF_FILE=.*no such file"),
    ({"user_conf": Path("/nonexistent/user.conf")}, r"CK_LOADGEN_USER_CONF=.*no such file"),
]

BAD_ENV: list[tuple[dict[str, str], str]] = [
    ({"CK_LOADGEN_SCENARIO": "Batch"}, r"CK_LOADGEN_SCENARIO='Batch' unknown; use one of"),
    ({"CK_LOADGEN_MODE": "Submission"}, r"CK_LOADGEN_MODE='Submission' unknown"),
    ({"CK_BATCH_SIZE": "eight"}, r"CK_BATCH_SIZE='eight' is not an integer"),
    ({"CK_LOADGEN_TARGET_QPS": "fast"}, r"CK_LOADGEN_TARGET_QPS='fast' is not a number"),
    ({"CK_BATCH_SIZE": "-3"}, r"CK_BATCH_SIZE=-3 must be positive"),
    ({"CK_TRITON_INSTANCES": "two"}, r"CK_TRITON_INSTANCES='two' is not an integer"),
    ({"CK_TRITON_MAX_QUEUE_DELAY_US": "1.5"}, r"CK_TRITON_MAX_QUEUE_DELAY_US='1.5' is not an"),
    ({"CK_PREPROCESS_PREFETCH": "deep"}, r"CK_PREPROCESS_PREFETCH='deep' is not an integer"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_FIELDS)
def test_bad_field_is_a_config_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


@pytest.mark.parametrize(("env", "message"), BAD_ENV)
def test_bad_env_is_a_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_env(env)


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'batchsize'"):
        RunConfig.from_env({}, {"batchsize": 3})


def test_errors_are_one_line_ckvision_errors() -> None:
    for changes, _message in BAD_FIELDS:
        with pytest.raises(CkVisionError) as info:
            RunConfig(**changes)
        assert "\n" not in str(info.value)
        assert info.value.exit_code == 2


def test_env_parsing_and_precedence() -> None:
    env = {
        "CK_LOADGEN_SCENARIO": "offline",
        "CK_LOADGEN_MODE": "Performance",
        "CK_BATCH_SIZE": "8",
        "CK_LOADGEN_COUNT_OVERRIDE": "100",
        "CK_LOADGEN_TARGET_QPS": "12.5",
        "CK_LOADGEN_BUFFER_SIZE": " ",  # blank means unset
        "CK_BACKEND": "null",
    }
    config = RunConfig.from_env(env, {"batch_size": "16", "verbose": None})
    assert config.scenario is Scenario.OFFLINE
    assert config.mode is Mode.PERFORMANCE
    assert config.batch_size == 16  # the override wins over the env
    assert config.count_override == 100
    assert config.target_qps == 12.5
    assert config.buffer_size is None
    assert config.backend == "null"
    assert config.verbose == 0


def test_defaults_and_record() -> None:
    config = RunConfig()
    assert config.scenario is Scenario.SINGLE_STREAM and config.mode is Mode.ACCURACY
    assert config.samples_per_query == 1
    assert RunConfig(scenario=Scenario.MULTI_STREAM).samples_per_query == 8
    assert RunConfig(scenario=Scenario.MULTI_STREAM, multistreamness=4).samples_per_query == 4
    record = config.as_record()
    assert record["scenario"] == "SingleStream" and record["mode"] == "AccuracyOnly"
    assert set(ENV_VARS) <= set(record)


def test_existing_conf_files_are_accepted(tmp_path: Path) -> None:
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.target_qps = 10\n")
    assert RunConfig(user_conf=conf, conf_file=conf).user_conf == conf


ROOT = Path(__file__).resolve().parents[1]


def test_readme_env_table_is_the_settings_table() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- settings-table:")
    table = text[text.index("\n", start) + 1 : text.index("<!-- /settings-table -->")]
    assert table.strip() == settings_table_markdown()


def test_every_setting_has_its_flag_and_env_var() -> None:
    from ckvision.cli import build_parser

    parser = build_parser()
    run = parser.parse_args(["run", *[f"{s.flag}=1" for s in SETTINGS.values()]])
    for spec in SETTINGS.values():
        assert getattr(run, spec.name) == "1", spec.flag
        assert ENV_VARS[spec.name][0] == spec.env
    names = [s.env for s in SETTINGS.values()] + [a for s in SETTINGS.values() for a in s.aliases]
    assert len(names) == len(set(names))  # one env var, one setting
    assert {
        "CK_LOADGEN_MAX_QUERY_COUNT",
        "CK_BATCH_TIMEOUT_S",
        "CK_LOADGEN_MIN_QUERY_COUNT",
        "CK_LOADGEN_SAMPLES_PER_QUERY",
        "CK_LOADGEN_OFFLINE_EXPECTED_QPS",
    } <= set(names)


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"CK_LOADGEN_MAX_QUERY_COUNT": "9"}, "max_query_count", 9),
        ({"CK_LOADGEN_MIN_QUERY_COUNT": "3"}, "min_query_count", 3),
        ({"CK_LOADGEN_SAMPLES_PER_QUERY": "4"}, "multistreamness", 4),
        ({"CK_LOADGEN_OFFLINE_EXPECTED_QPS": "2.5"}, "target_qps", 2.5),
        ({"CK_BATCH_TIMEOUT_S": "0.5"}, "batch_timeout_s", 0.5),
        ({"CK_LOADGEN_TARGET_LATENCY": "0.5"}, "target_latency_ms", 0.5),
    ],
)
def test_ck_mlperf_variables_are_honoured(env: dict[str, str], field: str, value: Any) -> None:
    assert getattr(RunConfig.from_env(env), field) == value


@pytest.mark.parametrize("var", sorted(REFUSED_ENV))
def test_ck_mlperf_variables_we_do_not_implement_are_refused(var: str) -> None:
    with pytest.raises(ConfigError, match=f"^{var}='x' is not supported by ckvision: "):
        RunConfig.from_env({var: "x"})
    assert RunConfig.from_env({var: " "}) == RunConfig()  # blank is unset


def test_float32_accuracy_type_is_accepted_and_conflicts_are_refused() -> None:
    assert RunConfig.from_env({"CK_MLPERF_ACCURACY_IMAGENET_TYPE": "float32"}) == RunConfig()
    with pytest.raises(
        ConfigError,
        match="conflicting values for one setting: "
        "CK_LOADGEN_MULTISTREAMNESS='4', "
        "CK_LOADGEN_SAMPLES_PER_QUERY='8'",
    ):
        RunConfig.from_env({"CK_LOADGEN_MULTISTREAMNESS": "4", "CK_LOADGEN_SAMPLES_PER_QUERY": "8"})
    with pytest.raises(ConfigError, match="COUNT_OVERRIDE sets both query counts"):
        RunConfig(count_override=5, max_query_count=9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nan", "is not a finite number"),
        ("inf", "is not a finite number"),
        ("1e400", "is not a finite number"),
    ],
)
def test_non_finite_numbers_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"CK_LOADGEN_TARGET_QPS='{text}' {message}"):
        RunConfig.from_env({"CK_LOADGEN_TARGET_QPS": text})


def test_a_flag_error_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="^--batch-size='x' is not an integer$"):
        RunConfig.from_env({}, {"batch_size": "x"})


def test_overrides_after_an_unset_one_still_apply() -> None:
    config = RunConfig.from_env(
        {"CK_BACKEND": "onnxruntime"}, {"batch_size": None, "backend": "null", "verbose": "2"}
    )
    assert (config.backend, config.verbose, config.batch_size) == ("null", 2, 1)


def test_paths_and_short_enum_spellings(tmp_path: Path) -> None:
    conf = tmp_path / "mlperf.conf"
    conf.write_text("*.Offline.target_qps = 10\n")
    config = RunConfig.from_env(
        {
            "CK_LOADGEN_CONF_FILE": str(conf),
            "CK_LOADGEN_MODE": "Perf",
            "CK_LOADGEN_SCENARIO": "multistream",
        }
    )
    assert config.conf_file == conf and isinstance(config.conf_file, Path)
    assert (config.mode, config.scenario) == (Mode.PERFORMANCE, Scenario.MULTI_STREAM)
    with pytest.raises(
        ConfigError,
        match="^CK_LOADGEN_SCENARIO='off' unknown; use one of: "
        "SingleStream, MultiStream, Server, Offline$",
    ):
        RunConfig.from_env({"CK_LOADGEN_SCENARIO": "off"})  # too short to be a prefix


def test_values_given_directly_are_checked_as_strictly_as_env_text(tmp_path: Path) -> None:
    for bad, message in (
        (True, "CK_BATCH_SIZE=True is not a number"),
        ("8", "CK_BATCH_SIZE='8' is not a number"),
        (float("nan"), "CK_BATCH_SIZE=nan is not a number"),
        (float("inf"), "CK_BATCH_SIZE=inf must be finite"),
    ):
        with pytest.raises(ConfigError, match=f"^{message}$"):
            RunConfig(batch_size=bad)  # type: ignore[arg-type]
    assert RunConfig(verbose=3).verbose == 3  # the maximum itself is allowed
    with pytest.raises(
        ConfigError,
        match="^CK_LOADGEN_COUNT_OVERRIDE sets both query counts; "
        "do not also set CK_LOADGEN_MIN_QUERY_COUNT / "
        "CK_LOADGEN_MAX_QUERY_COUNT$",
    ):
        RunConfig(count_override=2, min_query_count=1)
    conf = tmp_path / "user.conf"
    conf.write_text("")
    assert RunConfig(user_conf=conf).as_record()["user_conf"] == str(conf)


def test_as_env_is_read_back_by_from_env_exactly() -> None:
    """What a run made elsewhere (a Ray node) is told: the named settings, unset ones left out."""
    config = RunConfig.from_env(
        {}, {"min_duration_s": "0.1", "target_qps": "60000", "batch_size": "8"}
    ).with_(scenario=Scenario.OFFLINE, mode=Mode.PERFORMANCE, compliance_test="TEST04")
    names = ["scenario", "mode", "compliance_test", "min_duration_s", "target_qps", "batch_size"]
    env = config.as_env([*names, "target_latency_ms"])
    assert env["CK_LOADGEN_SCENARIO"] == "Offline" and env["CK_BATCH_SIZE"] == "8"
    assert "CK_LOADGEN_TARGET_LATENCY" not in " ".join(env)  # None: left out
    assert RunConfig.from_env(env) == config
