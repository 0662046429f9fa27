"""LoadGen settings, the generated user.conf, and audit.config."""

from __future__ import annotations

from pathlib import Path

import mlperf_loadgen as lg
import pytest

from ckvision.config import Mode, RunConfig, Scenario
from ckvision.errors import ConfigError
from ckvision.harness.settings import (
    build_test_settings,
    user_conf_values,
    write_audit_config,
    write_user_conf,
)


def test_user_conf_text(tmp_path: Path) -> None:
    config = RunConfig(
        scenario=Scenario.SERVER,
        count_override=100,
        min_duration_s=1.5,
        max_duration_s=20,
        target_qps=12.5,
        target_latency_ms=15,
        buffer_size=64,
        multistreamness=4,
    )
    path = write_user_conf(config, "resnet50", tmp_path / "user.conf")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == [
        "resnet50.Server.min_query_count = 100",
        "resnet50.Server.max_query_count = 100",
        "resnet50.Server.performance_sample_count_override = 64",
        "resnet50.Server.target_qps = 12.5",
        "resnet50.Server.target_latency = 15",
        "resnet50.Server.max_duration = 20000",
        "resnet50.Server.min_duration = 1500",
    ]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_scenario_specific_keys() -> None:
    offline = RunConfig(scenario=Scenario.OFFLINE, target_qps=7, target_latency_ms=3)
    assert user_conf_values(offline) == {"target_qps": "7"}
    assert offline.inapplicable() == [
        "note: CK_LOADGEN_TARGET_LATENCY=3 does not apply to Offline; ignored"
    ]
    assert user_conf_values(
        RunConfig(scenario=Scenario.SINGLE_STREAM, target_qps=7, target_latency_ms=2.5)
    ) == {"target_latency": "2.5"}
    assert user_conf_values(RunConfig(scenario=Scenario.MULTI_STREAM, multistreamness=4)) == {
        "samples_per_query": "4"
    }


@pytest.mark.parametrize(
    ("scenario", "attribute", "expected"),
    [
        (Scenario.SERVER, "server_target_latency_ns", 15_000_000),
        (Scenario.SINGLE_STREAM, "single_stream_expected_latency_ns", 2_500_000),
        (Scenario.MULTI_STREAM, "multi_stream_expected_latency_ns", 2_500_000),
    ],
)
def test_latency_maps_per_scenario(
    scenario: Scenario, attribute: str, expected: int, tmp_path: Path
) -> None:
    ms = 15 if scenario is Scenario.SERVER else 2.5
    config = RunConfig(scenario=scenario, target_latency_ms=ms)
    conf = write_user_conf(config, "m", tmp_path / "user.conf")
    assert getattr(build_test_settings(config, "m"), attribute) == expected
    assert getattr(_read_back(conf, scenario), attribute) == expected


def test_values_and_defaults(tmp_path: Path) -> None:
    config = RunConfig(
        scenario=Scenario.OFFLINE,
        mode=Mode.PERFORMANCE,
        count_override=50,
        min_duration_s=0.25,
        max_duration_s=3,
        target_qps=99,
        buffer_size=8,
    )
    settings = build_test_settings(
        config, "m", user_conf=write_user_conf(config, "m", tmp_path / "u.conf")
    )
    assert settings.scenario == lg.TestScenario.Offline
    assert settings.mode == lg.TestMode.PerformanceOnly
    assert (settings.min_query_count, settings.max_query_count) == (50, 50)
    assert (settings.min_duration_ms, settings.max_duration_ms) == (250, 3000)
    assert settings.offline_expected_qps == 99
    assert settings.performance_sample_count_override == 8
    default = build_test_settings(RunConfig(scenario=Scenario.SERVER), "m")
    assert default.min_duration_ms == 600_000  # LoadGen's mlperf.conf: 10 minutes
    assert default.mode == lg.TestMode.AccuracyOnly


def test_layer_order(tmp_path: Path) -> None:
    conf_file = tmp_path / "mlperf.conf"
    conf_file.write_text(
        "*.Offline.min_duration = 111\n*.Offline.max_duration = 222\n*.Offline.target_qps = 5\n"
    )
    user_conf = tmp_path / "user.conf"
    user_conf.write_text("m.Offline.max_duration = 333\nm.Offline.mode = 2\n")
    config = RunConfig(
        scenario=Scenario.OFFLINE, conf_file=conf_file, user_conf=user_conf, target_qps=50
    )
    settings = build_test_settings(config, "m")
    assert settings.min_duration_ms == 111  # conf_file, not overridden
    assert settings.offline_expected_qps == 50  # the config beats conf_file
    assert settings.max_duration_ms == 333  # user_conf is last
    assert settings.mode == lg.TestMode.AccuracyOnly  # the run's mode stays


def test_bad_conf_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "user.conf"
    bad.write_text("m.Offline.target_qps = fast\n")
    with pytest.raises(
        ConfigError,
        match=r"LoadGen could not read .*user.conf \(status -22\); "
        r"lines must be '<model>.<Scenario>.<key> = <number>'$",
    ):
        build_test_settings(RunConfig(scenario=Scenario.OFFLINE, user_conf=bad), "m")
    for name in ("my model", "my#model", ""):
        with pytest.raises(ConfigError, match="cannot key a LoadGen conf"):
            build_test_settings(RunConfig(), name)


def test_audit_config(tmp_path: Path) -> None:
    path = write_audit_config(RunConfig(compliance_test="TEST01"), tmp_path)
    text = path.read_text()
    assert "*.*.mode = 2" in text and "*.*.accuracy_log_sampling_target = 4096" in text
    text = write_audit_config(RunConfig(compliance_test="TEST04"), tmp_path).read_text()
    assert "*.Offline.performance_issue_same = 1" in text
    assert "*.Server.performance_issue_same_index = 3" in text
    write_audit_config(RunConfig(), tmp_path)
    assert not path.exists()  # a stale audit.config never changes a later run


def _read_back(conf: Path, scenario: Scenario) -> lg.TestSettings:
    """A user.conf as LoadGen itself reads it, on top of its built-in mlperf.conf."""
    settings = build_test_settings(RunConfig(scenario=scenario), "m")
    assert settings.FromConfig(str(conf), "m", scenario.value, 2) == 0
    return settings


AGREEMENT = [
    {"count_override": 7, "min_duration_s": 1.5007, "max_duration_s": 0.0004},
    {"min_query_count": 3, "max_query_count": 9, "buffer_size": 5},
    {"target_qps": 12.25, "target_latency_ms": 0.5, "multistreamness": 4},
    {"target_qps": 1000, "target_latency_ms": 15, "max_duration_s": 20},
    {"target_latency_ms": 2.125, "min_duration_s": 0.1},
    {"target_qps": 1 / 3, "target_latency_ms": 0.1},
]


@pytest.mark.parametrize("scenario", list(Scenario))
@pytest.mark.parametrize("values", AGREEMENT)
def test_user_conf_and_loadgen_settings_agree_exactly(
    scenario: Scenario, values: dict[str, float], tmp_path: Path
) -> None:
    """Both are derived from the settings table: LoadGen reading our user.conf gets the
    very values we set, field by field; a value its parser cannot hold is a comment that
    names the exact value set."""
    config = RunConfig(scenario=scenario, **values)  # type: ignore[arg-type]
    settings = build_test_settings(config, "m")
    conf = write_user_conf(config, "m", tmp_path / "user.conf")
    back = _read_back(conf, scenario)
    text = conf.read_text()
    applied = config.loadgen_values()
    assert applied, "every case sets something in every scenario"
    for spec, key, value in applied:
        assert getattr(settings, key.field) == key.value(value)
        in_conf_unit = key.value(value) * key.conf_scale
        fractional = abs(in_conf_unit - round(in_conf_unit)) > 1e-9
        # only a whole-number key given a fraction cannot be written as a line
        assert (key.conf_value(value) is None) == (key.conf_whole and fractional), spec.env
        if key.conf_value(value) is None:
            assert f"set {key.field} = {key.value(value)} directly" in text
        else:
            assert getattr(back, key.field) == getattr(settings, key.field), spec.env


def test_fractions_and_durations_survive() -> None:
    server = build_test_settings(RunConfig(scenario=Scenario.SERVER, target_latency_ms=0.5), "m")
    assert server.server_target_latency_ns == 500_000  # not 0
    short = build_test_settings(RunConfig(min_duration_s=0.0004, max_duration_s=1.5007), "m")
    assert (short.min_duration_ms, short.max_duration_ms) == (1, 1501)  # never rounded away
    qps = build_test_settings(RunConfig(scenario=Scenario.SERVER, target_qps=0.5), "m")
    assert qps.server_target_qps == 0.5
    ns = build_test_settings(RunConfig(scenario=Scenario.SERVER, target_latency_ms=1.0000004), "m")
    assert ns.server_target_latency_ns == 1_000_000  # nearest ns (only durations round up)
    counts = build_test_settings(RunConfig(min_query_count=3, max_query_count=9), "m")
    assert (counts.min_query_count, counts.max_query_count) == (3, 9)
