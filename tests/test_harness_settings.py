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
    config = RunConfig(scenario=Scenario.SERVER, count_override=100, min_duration_s=1.5,
                       max_duration_s=20, target_qps=12.5, target_latency_ms=15,
                       buffer_size=64, multistreamness=4)
    path = write_user_conf(config, "resnet50", tmp_path / "user.conf")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == [
        "resnet50.Server.min_query_count = 100",
        "resnet50.Server.max_query_count = 100",
        "resnet50.Server.min_duration = 1500",
        "resnet50.Server.max_duration = 20000",
        "resnet50.Server.target_qps = 12.5",
        "resnet50.Server.target_latency = 15",
        "resnet50.Server.performance_sample_count_override = 64",
    ]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_scenario_specific_keys() -> None:
    assert user_conf_values(RunConfig(scenario=Scenario.OFFLINE, target_qps=7,
                                      target_latency_ms=3)) == {"target_qps": "7"}
    assert user_conf_values(RunConfig(scenario=Scenario.SINGLE_STREAM, target_qps=7,
                                      target_latency_ms=2.5)) == {"target_latency": "2.5"}
    assert user_conf_values(RunConfig(scenario=Scenario.MULTI_STREAM, multistreamness=4)) == {
        "samples_per_query": "4"}


@pytest.mark.parametrize(("scenario", "attribute", "expected"), [
    (Scenario.SERVER, "server_target_latency_ns", 15_000_000),
    (Scenario.SINGLE_STREAM, "single_stream_expected_latency_ns", 2_500_000),
    (Scenario.MULTI_STREAM, "multi_stream_expected_latency_ns", 2_500_000),
])
def test_latency_maps_per_scenario(scenario: Scenario, attribute: str, expected: int,
                                   tmp_path: Path) -> None:
    ms = 15 if scenario is Scenario.SERVER else 2.5
    config = RunConfig(scenario=scenario, target_latency_ms=ms)
    conf = write_user_conf(config, "m", tmp_path / "user.conf")
    for user_conf in (None, conf):  # set directly, and re-applied from the written conf
        settings = build_test_settings(config, "m", user_conf=user_conf)
        assert getattr(settings, attribute) == expected


def test_values_and_defaults(tmp_path: Path) -> None:
    config = RunConfig(scenario=Scenario.OFFLINE, mode=Mode.PERFORMANCE, count_override=50,
                       min_duration_s=0.25, max_duration_s=3, target_qps=99, buffer_size=8)
    settings = build_test_settings(config, "m",
                                   user_conf=write_user_conf(config, "m", tmp_path / "u.conf"))
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
    conf_file.write_text("*.Offline.min_duration = 111\n*.Offline.max_duration = 222\n"
                         "*.Offline.target_qps = 5\n")
    user_conf = tmp_path / "user.conf"
    user_conf.write_text("m.Offline.max_duration = 333\nm.Offline.mode = 2\n")
    config = RunConfig(scenario=Scenario.OFFLINE, conf_file=conf_file, user_conf=user_conf,
                       target_qps=50)
    settings = build_test_settings(config, "m")
    assert settings.min_duration_ms == 111  # conf_file, not overridden
    assert settings.offline_expected_qps == 50  # the config beats conf_file
    assert settings.max_duration_ms == 333  # user_conf is last
    assert settings.mode == lg.TestMode.AccuracyOnly  # the run's mode stays


def test_bad_conf_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "user.conf"
    bad.write_text("m.Offline.target_qps = fast\n")
    with pytest.raises(ConfigError, match="LoadGen could not read"):
        build_test_settings(RunConfig(scenario=Scenario.OFFLINE, user_conf=bad), "m")
    with pytest.raises(ConfigError, match="cannot key a LoadGen conf"):
        build_test_settings(RunConfig(), "my model")


def test_audit_config(tmp_path: Path) -> None:
    path = write_audit_config(RunConfig(compliance_test="TEST01"), tmp_path)
    text = path.read_text()
    assert "*.*.mode = 2" in text and "*.*.accuracy_log_sampling_target = 1024" in text
    text = write_audit_config(RunConfig(compliance_test="TEST04"), tmp_path).read_text()
    assert "*.Offline.performance_issue_same = 1" in text
    assert "*.Server.performance_issue_same_index = 3" in text
    write_audit_config(RunConfig(), tmp_path)
    assert not path.exists()  # a stale audit.config never changes a later run
