"""LoadGen test settings from a :class:`RunConfig`, and the user.conf that records them.

Layers, later wins:

1. LoadGen's built-in ``mlperf.conf`` (the official defaults: 10 min minimum duration,
   latency percentiles, per-benchmark sample counts);
2. ``config.conf_file``, an mlperf.conf-style file;
3. the values of the config (count, durations, QPS, latency, multistreamness, buffer);
4. the generated user.conf (the same values, as text: the record of what ran);
5. ``config.user_conf``, the user's own user.conf.

Conf files are applied with LoadGen's plain parser (``conf_type=2``), so every run in a
process gets the same layers (LoadGen loads ``mlperf.conf`` itself only on the first
user.conf of a process, and logs an error for each later one).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import mlperf_loadgen as lg

from ckvision.config import Mode, RunConfig, Scenario
from ckvision.errors import ConfigError
from ckvision.fsutil import atomic_write_text

__all__ = ["build_test_settings", "user_conf_values", "write_user_conf", "write_audit_config",
           "AUDIT_CONFIG"]

AUDIT_CONFIG = "audit.config"
_BUILTIN_MLPERF_CONF = 0  # FromConfig conf_type: LoadGen's embedded mlperf.conf
_PLAIN_CONF = 2  # FromConfig conf_type: just this file

_SCENARIOS = {
    Scenario.SINGLE_STREAM: lg.TestScenario.SingleStream,
    Scenario.MULTI_STREAM: lg.TestScenario.MultiStream,
    Scenario.SERVER: lg.TestScenario.Server,
    Scenario.OFFLINE: lg.TestScenario.Offline,
}
_MODES = {Mode.ACCURACY: lg.TestMode.AccuracyOnly, Mode.PERFORMANCE: lg.TestMode.PerformanceOnly}

# Compliance audit configs (mlcommons/inference compliance/TEST01 and TEST04); mode 2 is
# PerformanceOnly. TEST01 logs a sample of responses in performance mode; TEST04 issues
# the same sample over and over to catch result caching.
_AUDIT = {
    "TEST01": [
        "*.*.mode = 2",
        "*.*.accuracy_log_rng_seed = 720381539243781796",
        "*.*.accuracy_log_sampling_target = 1024",
    ],
    "TEST04": [
        f"*.{s.value}.{key}"
        for s in Scenario
        for key in ("mode = 2", "performance_issue_unique = 0", "performance_issue_same = 1",
                    "performance_issue_same_index = 3")
    ],
}


def user_conf_values(config: RunConfig) -> dict[str, str]:
    """user.conf keys (``<key>`` of ``<model>.<Scenario>.<key>``) and values for ``config``."""
    values: dict[str, str] = {}
    scenario = config.scenario
    if config.count_override is not None:
        values["min_query_count"] = str(config.count_override)
        values["max_query_count"] = str(config.count_override)
    if config.min_duration_s is not None:
        values["min_duration"] = str(_ms(config.min_duration_s))
    if config.max_duration_s is not None:
        values["max_duration"] = str(_ms(config.max_duration_s))
    if config.target_qps is not None and scenario in (Scenario.SERVER, Scenario.OFFLINE):
        values["target_qps"] = _number(config.target_qps)
    if config.target_latency_ms is not None and scenario is not Scenario.OFFLINE:
        values["target_latency"] = _number(config.target_latency_ms)
    if scenario is Scenario.MULTI_STREAM and config.multistreamness is not None:
        values["samples_per_query"] = str(config.multistreamness)
    if config.buffer_size is not None:
        values["performance_sample_count_override"] = str(config.buffer_size)
    return values


def write_user_conf(config: RunConfig, model_name: str, path: Path) -> Path:
    """Write the user.conf equivalent to ``config`` (atomically); returns ``path``."""
    _check_model_name(model_name)
    lines = [
        f"# user.conf written by ckvision for {model_name} {config.scenario.value}",
        *(f"{model_name}.{config.scenario.value}.{key} = {value}"
          for key, value in user_conf_values(config).items()),
    ]
    _write(Path(path), lines)
    return Path(path)


def write_audit_config(config: RunConfig, output_dir: Path) -> Path:
    """Write (or remove a stale) ``audit.config`` in ``output_dir``; returns its path.

    The run passes this path to LoadGen explicitly, so the working directory never matters.
    """
    path = Path(output_dir) / AUDIT_CONFIG
    if config.compliance_test is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return path
    lines = [f"# MLPerf compliance {config.compliance_test} (written by ckvision)",
             *_AUDIT[config.compliance_test]]
    _write(path, lines)
    return path


def build_test_settings(
    config: RunConfig, model_name: str, *, user_conf: Path | None = None
) -> lg.TestSettings:
    """LoadGen settings for ``config``; see the module docstring for the layers."""
    _check_model_name(model_name)
    settings = lg.TestSettings()
    settings.scenario = _SCENARIOS[config.scenario]
    settings.mode = _MODES[config.mode]
    scenario = config.scenario.value
    settings.FromConfig("", model_name, scenario, _BUILTIN_MLPERF_CONF)
    if config.conf_file is not None:
        _apply_conf(settings, config.conf_file, model_name, scenario)
    _apply_values(settings, config)
    for path in (user_conf, config.user_conf):
        if path is not None:
            _apply_conf(settings, path, model_name, scenario)
    settings.mode = _MODES[config.mode]  # a conf's "mode" key must not turn accuracy into perf
    return settings


def _apply_values(settings: lg.TestSettings, config: RunConfig) -> None:
    scenario = config.scenario
    if config.count_override is not None:
        settings.min_query_count = config.count_override
        settings.max_query_count = config.count_override
    if config.min_duration_s is not None:
        settings.min_duration_ms = _ms(config.min_duration_s)
    if config.max_duration_s is not None:
        settings.max_duration_ms = _ms(config.max_duration_s)
    if config.target_qps is not None:
        if scenario is Scenario.SERVER:
            settings.server_target_qps = config.target_qps
        elif scenario is Scenario.OFFLINE:
            settings.offline_expected_qps = config.target_qps
    if config.target_latency_ms is not None:
        ns = round(config.target_latency_ms * 1e6)
        if scenario is Scenario.SERVER:
            settings.server_target_latency_ns = ns
        elif scenario is Scenario.SINGLE_STREAM:
            settings.single_stream_expected_latency_ns = ns
        elif scenario is Scenario.MULTI_STREAM:
            settings.multi_stream_expected_latency_ns = ns
    if scenario is Scenario.MULTI_STREAM and config.multistreamness is not None:
        settings.multi_stream_samples_per_query = config.multistreamness
    if config.buffer_size is not None:
        settings.performance_sample_count_override = config.buffer_size


def _apply_conf(settings: lg.TestSettings, path: Path, model_name: str, scenario: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"LoadGen conf file {path}: no such file")
    status = settings.FromConfig(str(path), model_name, scenario, _PLAIN_CONF)
    if status != 0:
        raise ConfigError(
            f"LoadGen could not read {path} (status {status}); lines must be "
            "'<model>.<Scenario>.<key> = <number>'"
        )


def _write(path: Path, lines: list[str]) -> None:
    atomic_write_text(path, "\n".join(lines) + "\n")
    path.chmod(0o644)  # readable like any other file of the run, not 0600 from mkstemp


def _check_model_name(model_name: str) -> None:
    if not model_name or any(c.isspace() or c == "#" for c in model_name):
        raise ConfigError(
            f"model name {model_name!r} cannot key a LoadGen conf (no spaces or #)"
        )


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
