"""LoadGen test settings from a :class:`RunConfig`, and the user.conf that records them.

Layers, later wins:

1. LoadGen's built-in ``mlperf.conf`` (the official defaults: 10 min minimum duration,
   latency percentiles, per-benchmark sample counts);
2. ``config.conf_file``, an mlperf.conf-style file;
3. the values of the config, set field by field from the settings table
   (:class:`ckvision.config.RunConfig`), exactly (0.5 ms stays 500000 ns);
4. ``config.user_conf``, the user's own user.conf.

The generated user.conf is the record of layer 3, written from the same table; it is
not applied (LoadGen's conf parser truncates some keys to whole numbers).

Conf files are applied with LoadGen's plain parser (``conf_type=2``), so every run in a
process gets the same layers (LoadGen loads ``mlperf.conf`` itself only on the first
user.conf of a process, and logs an error for each later one).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import mlperf_loadgen as lg

from ckvision.config import Mode, RunConfig, Scenario
from ckvision.errors import ConfigError
from ckvision.fsutil import atomic_write_text

__all__ = [
    "build_test_settings",
    "user_conf_values",
    "write_user_conf",
    "write_audit_config",
    "AUDIT_CONFIG",
]

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
        "*.*.accuracy_log_sampling_target = 4096",  # compliance/TEST01/resnet50/audit.config
    ],
    "TEST04": [
        f"*.{s.value}.{key}"
        for s in Scenario
        for key in (
            "mode = 2",
            "performance_issue_unique = 0",
            "performance_issue_same = 1",
            "performance_issue_same_index = 3",
        )
    ],
}


def user_conf_values(config: RunConfig) -> dict[str, str | None]:
    """user.conf keys (``<key>`` of ``<model>.<Scenario>.<key>``) and values for ``config``.

    Derived from the settings table, like :func:`build_test_settings`; a value LoadGen's
    conf parser cannot read back exactly (it truncates e.g. a Server ``target_latency``
    to whole ms) maps to ``None`` and is written as a comment with the exact value.
    """
    return {key.conf_key: key.conf_value(value) for _spec, key, value in config.loadgen_values()}


def write_user_conf(config: RunConfig, model_name: str, path: Path) -> Path:
    """Write the user.conf equivalent to ``config`` (atomically); returns ``path``.

    It is the record of what ran: LoadGen reads it back to exactly the settings
    :func:`build_test_settings` made (tested). It is not applied on top of them.
    """
    _check_model_name(model_name)
    prefix = f"{model_name}.{config.scenario.value}"
    lines = [f"# user.conf written by ckvision for {model_name} {config.scenario.value}"]
    for spec, key, value in config.loadgen_values():
        text = key.conf_value(value)
        if text is None:
            lines.append(
                f"# {prefix}.{key.conf_key} = {value!r} ({spec.env}; LoadGen reads this key as "
                f"a whole number, so ckvision set {key.field} = {key.value(value)} directly)"
            )
        else:
            lines.append(f"{prefix}.{key.conf_key} = {text}")
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
    lines = [
        f"# MLPerf compliance {config.compliance_test} (written by ckvision)",
        *_AUDIT[config.compliance_test],
    ]
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
    del user_conf  # the record of the values just set; applying it could only lose precision
    if config.user_conf is not None:
        _apply_conf(settings, config.user_conf, model_name, scenario)
    settings.mode = _MODES[config.mode]  # a conf's "mode" key must not turn accuracy into perf
    return settings


def _apply_values(settings: lg.TestSettings, config: RunConfig) -> None:
    for _spec, key, value in config.loadgen_values():
        setattr(settings, key.field, key.value(value))


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
        raise ConfigError(f"model name {model_name!r} cannot key a LoadGen conf (no spaces or #)")
