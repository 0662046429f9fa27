"""The one run configuration: typed, frozen, validated, resolved in one place.

Order of precedence (later wins): built-in defaults -> CK env vars (``CK_LOADGEN_*``,
``CK_BATCH_SIZE`` ...) -> explicit overrides (CLI flags). LoadGen conf files named
here are applied by :mod:`ckvision.harness.settings` on top of the derived settings.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError

__all__ = ["Scenario", "Mode", "RunConfig", "ENV_VARS"]


class Scenario(str, enum.Enum):
    SINGLE_STREAM = "SingleStream"
    MULTI_STREAM = "MultiStream"
    SERVER = "Server"
    OFFLINE = "Offline"


class Mode(str, enum.Enum):
    ACCURACY = "AccuracyOnly"
    PERFORMANCE = "PerformanceOnly"


# field name -> (env var, help). The README's env-var table is generated from this.
ENV_VARS: dict[str, tuple[str, str]] = {
    "scenario": ("CK_LOADGEN_SCENARIO", "SingleStream | MultiStream | Server | Offline"),
    "mode": ("CK_LOADGEN_MODE", "AccuracyOnly | PerformanceOnly"),
    "batch_size": ("CK_BATCH_SIZE", "samples per backend call (Offline/Server/MultiStream)"),
    "multistreamness": ("CK_LOADGEN_MULTISTREAMNESS", "samples per MultiStream query"),
    "count_override": ("CK_LOADGEN_COUNT_OVERRIDE", "min_query_count = max_query_count"),
    "dataset_size": ("CK_LOADGEN_DATASET_SIZE", "samples in the QSL; 0 = whole dataset"),
    "buffer_size": ("CK_LOADGEN_BUFFER_SIZE", "performance sample count held in memory"),
    "target_qps": ("CK_LOADGEN_TARGET_QPS", "Server target QPS / Offline expected QPS"),
    "target_latency_ms": ("CK_LOADGEN_TARGET_LATENCY", "target latency in ms"),
    "max_duration_s": ("CK_LOADGEN_MAX_DURATION_S", "stop the test after this many seconds"),
    "min_duration_s": ("CK_LOADGEN_MIN_DURATION_S", "minimum test duration in seconds"),
    "conf_file": ("CK_LOADGEN_CONF_FILE", "an mlperf.conf-style file applied first"),
    "user_conf": ("CK_LOADGEN_USER_CONF", "a user.conf applied last (overrides the vars)"),
    "compliance_test": ("CK_MLPERF_COMPLIANCE_TEST", "TEST01 | TEST04 (audit.config)"),
    "threads": ("CK_ORT_THREADS", "backend intra-op threads; 0 = runtime default"),
    "workers": ("CK_LOADGEN_WORKERS", "inference worker threads for Server/Offline"),
    "server_batch_timeout_us": ("CK_SERVER_BATCH_TIMEOUT_US", "max wait to fill a Server batch"),
    "execution_provider": ("CK_ORT_PROVIDER", "onnxruntime provider: cpu | cuda | tensorrt"),
    "precision": ("CK_PRECISION", "pytorch backend precision: fp32 | fp16"),
    "device": ("CK_DEVICE", "pytorch backend device: cpu | cuda"),
    "verbose": ("CK_VERBOSE", "0 (quiet) .. 3 (debug)"),
    # sweeps/tuning (issue 9)
    "progress": ("CK_PROGRESS", "per-second progress: auto | plain | live | off (--quiet)"),
    "autotune": ("CK_AUTOTUNE", "on | off: probe workers x threads x batch when not given"),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides how one LoadGen run is made."""

    backend: str = "onnxruntime"
    scenario: Scenario = Scenario.SINGLE_STREAM
    mode: Mode = Mode.ACCURACY
    batch_size: int = 1
    multistreamness: int | None = None
    count_override: int | None = None
    dataset_size: int = 0
    buffer_size: int | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None
    max_duration_s: float | None = None
    min_duration_s: float | None = None
    conf_file: Path | None = None
    user_conf: Path | None = None
    compliance_test: str | None = None
    threads: int = 0
    workers: int = 1
    server_batch_timeout_us: int = 2000
    execution_provider: str = "cpu"
    precision: str = "fp32"
    device: str = "cpu"
    verbose: int = 0
    progress: str = "auto"
    autotune: str = "on"

    def __post_init__(self) -> None:
        _check_positive("batch_size", self.batch_size)
        _check_positive("workers", self.workers)
        for name in ("multistreamness", "count_override", "buffer_size"):
            value = getattr(self, name)
            if value is not None:
                _check_positive(name, value)
        for name in ("target_qps", "target_latency_ms", "max_duration_s", "min_duration_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{_env_name(name)}={value} must be positive")
        if self.dataset_size < 0:
            raise ConfigError(f"CK_LOADGEN_DATASET_SIZE={self.dataset_size} must be >= 0")
        if self.threads < 0:
            raise ConfigError(f"CK_ORT_THREADS={self.threads} must be >= 0")
        if self.server_batch_timeout_us < 0:
            raise ConfigError("CK_SERVER_BATCH_TIMEOUT_US must be >= 0")
        if not 0 <= self.verbose <= 3:
            raise ConfigError(f"CK_VERBOSE={self.verbose} must be between 0 and 3")
        if self.compliance_test not in (None, "TEST01", "TEST04"):
            raise ConfigError(
                f"CK_MLPERF_COMPLIANCE_TEST={self.compliance_test!r} unknown; use TEST01 or TEST04"
            )
        _check_choice("CK_ORT_PROVIDER", self.execution_provider, ("cpu", "cuda", "tensorrt"))
        _check_choice("CK_PRECISION", self.precision, ("fp32", "fp16"))
        _check_choice("CK_DEVICE", self.device, ("cpu", "cuda"))
        _check_choice("CK_PROGRESS", self.progress, ("auto", "plain", "live", "off"))
        _check_choice("CK_AUTOTUNE", self.autotune, ("on", "off"))
        for name in ("conf_file", "user_conf"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{_env_name(name)}={path}: no such file")

    @property
    def samples_per_query(self) -> int:
        """Samples LoadGen puts in one MultiStream query (1 elsewhere)."""
        if self.scenario is Scenario.MULTI_STREAM:
            return self.multistreamness or 8
        return 1

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> RunConfig:
        """Build from CK env vars, then apply explicit ``overrides`` (e.g. CLI flags)."""
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, (var, _help) in ENV_VARS.items():
            text = env.get(var, "").strip()
            if text != "":
                values[name] = _parse(name, var, text, str(types[name]))
        if "CK_BACKEND" in env and env["CK_BACKEND"].strip():
            values["backend"] = env["CK_BACKEND"].strip()
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            if name not in types:
                raise ConfigError(f"unknown setting {name!r}")
            if isinstance(value, str) and name != "backend":
                value = _parse(name, _env_name(name), value, str(types[name]))
            values[name] = value
        return cls(**values)

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    def as_record(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting, recorded with each run."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def _env_name(name: str) -> str:
    return ENV_VARS.get(name, (name, ""))[0]


def _check_positive(name: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{_env_name(name)}={value} must be a positive integer")


def _check_choice(var: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{var}={value!r} unknown; use one of: {', '.join(choices)}")


def _parse(name: str, var: str, text: str, type_name: str) -> Any:
    if name == "scenario":
        return _enum(Scenario, var, text)
    if name == "mode":
        return _enum(Mode, var, text)
    if "Path" in type_name:
        return Path(text)
    if "int" in type_name:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{var}={text!r} is not an integer") from None
    if "float" in type_name:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{var}={text!r} is not a number") from None
    return text


def _enum(kind: type[enum.Enum], var: str, text: str) -> Any:
    by_lower = {m.value.lower(): m for m in kind}
    # Accept the ck-mlperf spellings and the short ones: "Offline", "offline", "Accuracy".
    key = text.lower()
    if key in by_lower:
        return by_lower[key]
    for value, member in by_lower.items():
        if value.startswith(key) and len(key) >= 4:
            return member
    allowed = ", ".join(m.value for m in kind)
    raise ConfigError(f"{var}={text!r} unknown; use one of: {allowed}")
