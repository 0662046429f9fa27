"""The one run configuration: typed, frozen, validated, resolved in one place.

Every setting is declared ONCE, as a field of :class:`RunConfig` built by :func:`setting`:
its env var (and the ck-mlperf spellings it also answers to), type, unit, range, and,
where it is a LoadGen setting, the ``TestSettings`` field and the ``user.conf`` key per
scenario. Everything else is derived from that declaration: parsing and validation
(:meth:`RunConfig.from_env`), the ``ckvision run`` flags (:data:`ENV_VARS`), the LoadGen
settings and the user.conf we write (:mod:`ckvision.harness.settings`), and the README's
env-var table (:func:`settings_table_markdown`). Adding a setting is adding one field.

Order of precedence (later wins): built-in defaults -> CK env vars -> explicit overrides
(CLI flags). ck-mlperf variables we do not implement are refused with one line
(:data:`REFUSED_ENV`), never silently ignored. Nothing here reads the environment at
import time.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError

__all__ = [
    "Scenario",
    "Mode",
    "RunConfig",
    "Setting",
    "LoadGenKey",
    "SETTINGS",
    "ENV_VARS",
    "REFUSED_ENV",
    "declared_env_vars",
    "settings_table_markdown",
]


class Scenario(str, enum.Enum):
    SINGLE_STREAM = "SingleStream"
    MULTI_STREAM = "MultiStream"
    SERVER = "Server"
    OFFLINE = "Offline"


class Mode(str, enum.Enum):
    ACCURACY = "AccuracyOnly"
    PERFORMANCE = "PerformanceOnly"


ALL_SCENARIOS = tuple(Scenario)


@dataclass(frozen=True)
class LoadGenKey:
    """Where a setting lands in LoadGen: a ``TestSettings`` field and a user.conf key.

    ``scale`` converts the setting's unit to the field's (ms -> ns: 1e6); integer fields
    are rounded, durations up (``ceil``: 0.4 ms stays 1 ms, never 0). ``conf_scale``
    converts the field's unit to the user.conf key's (ns -> ms: 1e-6); ``conf_whole``
    says LoadGen's conf parser truncates that key to a whole number (then a fractional
    value cannot be written there).
    """

    field: str
    conf_key: str
    scale: float = 1.0
    integer: bool = True
    conf_scale: float = 1.0
    conf_whole: bool = True
    ceil: bool = False

    def value(self, value: float) -> int | float:
        """The ``TestSettings`` value for a setting's ``value``."""
        scaled = value * self.scale
        if not self.integer:
            return float(scaled)
        return int(math.ceil(scaled - 1e-9)) if self.ceil else int(round(scaled))

    def conf_value(self, value: float) -> str | None:
        """The user.conf text LoadGen reads back as exactly :meth:`value`, else ``None``."""
        field_value = self.value(value)
        conf = float(field_value * self.conf_scale)
        if self.conf_scale != 1.0:  # drop the float noise of the unit change (2.4999999999)
            conf = float(f"{conf:.12g}")
        if self.conf_whole and not conf.is_integer():
            return None
        text = str(int(conf)) if conf.is_integer() else repr(conf)
        back = float(text) / self.conf_scale
        return text if (round(back) if self.integer else back) == field_value else None


@dataclass(frozen=True)
class Setting:
    """One setting's declaration; see the module docstring."""

    name: str
    env: str
    help: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # other env vars (ck-mlperf spellings) for the same value
    loadgen: Mapping[Scenario, tuple[LoadGenKey, ...]] = field(default_factory=dict)
    must_exist: bool = False  # a path that must name an existing file
    type_name: str = "str"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# pragma: no mutate start
# (setting, _every and _declared run once, at import: mutmut's run-time switch cannot reach them;
# what they build is tested through SETTINGS, the README table and the LoadGen round trips)
def setting(
    env: str,
    default: Any,
    help: str,  # noqa: A002 - the natural name in a declaration
    *,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    loadgen: Mapping[Scenario, tuple[LoadGenKey, ...]] | None = None,
    must_exist: bool = False,
) -> Any:
    """A :class:`RunConfig` field carrying its :class:`Setting` (name/type filled in later)."""
    spec = Setting(
        "", env, help, unit, minimum, maximum, choices, aliases, loadgen or {}, must_exist
    )
    return field(default=default, metadata={"setting": spec})


def _every(*keys: LoadGenKey) -> dict[Scenario, tuple[LoadGenKey, ...]]:
    return {s: keys for s in ALL_SCENARIOS}


# pragma: no mutate end


_MIN_COUNT = LoadGenKey("min_query_count", "min_query_count")
_MAX_COUNT = LoadGenKey("max_query_count", "max_query_count")
_NS_PER_MS = 1e6


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides how one LoadGen run is made (the settings table)."""

    backend: str = "onnxruntime"
    scenario: Scenario = setting(
        "CK_LOADGEN_SCENARIO",
        Scenario.SINGLE_STREAM,
        "SingleStream (default), MultiStream, Server, Offline",
    )
    mode: Mode = setting(
        "CK_LOADGEN_MODE", Mode.ACCURACY, "AccuracyOnly (default), PerformanceOnly"
    )
    batch_size: int = setting(
        "CK_BATCH_SIZE", 1, "samples per backend call (Offline/Server/MultiStream)", minimum=1
    )
    multistreamness: int | None = setting(
        "CK_LOADGEN_MULTISTREAMNESS",
        None,
        "samples per MultiStream query (default 8)",
        minimum=1,
        aliases=("CK_LOADGEN_SAMPLES_PER_QUERY",),
        loadgen={
            Scenario.MULTI_STREAM: (
                LoadGenKey("multi_stream_samples_per_query", "samples_per_query"),
            )
        },
    )
    count_override: int | None = setting(
        "CK_LOADGEN_COUNT_OVERRIDE",
        None,
        "min_query_count = max_query_count",
        minimum=1,
        loadgen=_every(_MIN_COUNT, _MAX_COUNT),
    )
    min_query_count: int | None = setting(
        "CK_LOADGEN_MIN_QUERY_COUNT",
        None,
        "minimum number of queries",
        minimum=1,
        loadgen=_every(_MIN_COUNT),
    )
    max_query_count: int | None = setting(
        "CK_LOADGEN_MAX_QUERY_COUNT",
        None,
        "stop after this many queries",
        minimum=1,
        loadgen=_every(_MAX_COUNT),
    )
    dataset_size: int = setting(
        "CK_LOADGEN_DATASET_SIZE", 0, "samples in the QSL; 0 = whole dataset", minimum=0
    )
    buffer_size: int | None = setting(
        "CK_LOADGEN_BUFFER_SIZE",
        None,
        "performance sample count held in memory",
        minimum=1,
        loadgen=_every(
            LoadGenKey("performance_sample_count_override", "performance_sample_count_override")
        ),
    )
    target_qps: float | None = setting(
        "CK_LOADGEN_TARGET_QPS",
        None,
        "Server target QPS / Offline expected QPS",
        unit="QPS",
        minimum=1e-9,
        aliases=("CK_LOADGEN_OFFLINE_EXPECTED_QPS",),
        loadgen={
            Scenario.SERVER: (
                LoadGenKey("server_target_qps", "target_qps", integer=False, conf_whole=False),
            ),
            Scenario.OFFLINE: (
                LoadGenKey("offline_expected_qps", "target_qps", integer=False, conf_whole=False),
            ),
        },
    )
    target_latency_ms: float | None = setting(
        "CK_LOADGEN_TARGET_LATENCY",
        None,
        "Server target latency / SingleStream, MultiStream expected latency",
        unit="ms",
        minimum=1e-6,
        loadgen={
            Scenario.SERVER: (
                LoadGenKey(
                    "server_target_latency_ns",
                    "target_latency",
                    scale=_NS_PER_MS,
                    conf_scale=1 / _NS_PER_MS,
                ),
            ),
            Scenario.SINGLE_STREAM: (
                LoadGenKey(
                    "single_stream_expected_latency_ns",
                    "target_latency",
                    scale=_NS_PER_MS,
                    conf_scale=1 / _NS_PER_MS,
                    conf_whole=False,
                ),
            ),
            Scenario.MULTI_STREAM: (
                LoadGenKey(
                    "multi_stream_expected_latency_ns",
                    "target_latency",
                    scale=_NS_PER_MS,
                    conf_scale=1 / _NS_PER_MS,
                    conf_whole=False,
                ),
            ),
        },
    )
    max_duration_s: float | None = setting(
        "CK_LOADGEN_MAX_DURATION_S",
        None,
        "stop the test after this long",
        unit="s",
        minimum=1e-9,
        loadgen=_every(LoadGenKey("max_duration_ms", "max_duration", scale=1000.0, ceil=True)),
    )
    min_duration_s: float | None = setting(
        "CK_LOADGEN_MIN_DURATION_S",
        None,
        "minimum test duration",
        unit="s",
        minimum=1e-9,
        loadgen=_every(LoadGenKey("min_duration_ms", "min_duration", scale=1000.0, ceil=True)),
    )
    conf_file: Path | None = setting(
        "CK_LOADGEN_CONF_FILE", None, "an mlperf.conf-style file applied first", must_exist=True
    )
    user_conf: Path | None = setting(
        "CK_LOADGEN_USER_CONF",
        None,
        "a user.conf applied last (overrides the vars)",
        must_exist=True,
    )
    compliance_test: str | None = setting(
        "CK_MLPERF_COMPLIANCE_TEST",
        None,
        "TEST01 / TEST04 (writes audit.config)",
        choices=("TEST01", "TEST04"),
    )
    threads: int = setting(
        "CK_ORT_THREADS", 0, "backend intra-op threads; 0 = runtime default", minimum=0
    )
    workers: int = setting(
        "CK_LOADGEN_WORKERS",
        1,
        "inference worker threads (MultiStream, Server, Offline)",
        minimum=1,
    )
    server_batch_timeout_us: int = setting(
        "CK_SERVER_BATCH_TIMEOUT_US",
        2000,
        "Server: longest a batch's oldest sample waits for the batch to fill",
        unit="us",
        minimum=0,
    )
    batch_timeout_s: float = setting(
        "CK_BATCH_TIMEOUT_S",
        60.0,
        "watchdog: a batch taking longer fails the run",
        unit="s",
        minimum=1e-3,
    )
    execution_provider: str = setting(
        "CK_ORT_PROVIDER",
        "cpu",
        "onnxruntime provider: cpu, cuda, tensorrt",
        choices=("cpu", "cuda", "tensorrt"),
    )
    precision: str = setting(
        "CK_PRECISION", "fp32", "pytorch backend precision: fp32, fp16", choices=("fp32", "fp16")
    )
    device: str = setting(
        "CK_DEVICE", "cpu", "pytorch backend device: cpu, cuda", choices=("cpu", "cuda")
    )
    cuda_graphs: str = setting(
        "CK_CUDA_GRAPHS",
        "on",
        "pytorch on CUDA and tensorrt: one captured CUDA graph per batch size (on), or every "
        "call launched op by op (off)",
        choices=("on", "off"),
    )
    cuda_streams: int = setting(
        "CK_CUDA_STREAMS",
        0,
        "pytorch on CUDA: GPU streams the workers share; 0 = one per worker (batches "
        "overlap on the GPU), N = N shared (batches run back to back, the workers' host "
        "work overlaps)",
        minimum=0,
    )
    verbose: int = setting("CK_VERBOSE", 0, "0 (quiet) .. 3 (debug)", minimum=0, maximum=3)
    triton_urls: str = setting(
        "CK_TRITON_URLS",
        "",
        "Triton `host:port` list (comma, round-robin); empty = start a server on the repository",
    )
    triton_protocol: str = setting(
        "CK_TRITON_PROTOCOL",
        "http",
        "Triton client protocol: http (default), grpc",
        choices=("http", "grpc"),
    )
    triton_shm: str = setting(
        "CK_TRITON_SHM",
        "none",
        "Triton inputs/outputs through shared memory: none, system",
        choices=("none", "system"),
    )
    triton_timeout_s: float = setting(
        "CK_TRITON_TIMEOUT_S",
        30.0,
        "Triton per-request and model-ready timeout",
        unit="s",
        minimum=1e-3,
    )
    triton_model: str = setting(
        "CK_TRITON_MODEL", "classifier", "model name in the Triton repository"
    )
    triton_python: str = setting(
        "CK_TRITON_PYTHON", "", "the triton env's python (default `.venv-triton/bin/python`)"
    )
    triton_instances: int | None = setting(
        "CK_TRITON_INSTANCES",
        None,
        "Triton instance count of each served model; unset = the repository's",
        minimum=1,
    )
    triton_max_queue_delay_us: int | None = setting(
        "CK_TRITON_MAX_QUEUE_DELAY_US",
        None,
        "Triton dynamic batching max queue delay of each served model; unset = the repository's",
        unit="us",
        minimum=0,
    )
    triton_preprocess_threads: int | None = setting(
        "CK_TRITON_PREPROCESS_THREADS",
        None,
        "Triton JPEG-in ensemble: engine threads of each preprocess instance (DALI's "
        "num_threads, else a pool); unset = the repository's",
        minimum=1,
    )
    input_format: str = setting(
        "CK_INPUT_FORMAT",
        "preprocessed",
        "preprocessed (MLPerf: pixels made ahead of time) or jpeg (the dataset's encoded "
        "files; decode + resize + normalise inside the measured path, not MLPerf-closed)",
        choices=("preprocessed", "jpeg"),
    )
    preprocess_engine: str = setting(
        "CK_PREPROCESS_ENGINE",
        "",
        "jpeg input: who preprocesses (the `using-*` tags): pillow, opencv, dali; "
        "empty = the model's own library",
        choices=("", "pillow", "opencv", "dali"),
    )
    preprocess_threads: int = setting(
        "CK_PREPROCESS_THREADS",
        0,
        "jpeg input: preprocessing threads per SUT worker (DALI's num_threads, else a "
        "thread pool); 0 = the CPU count",
        minimum=0,
    )
    preprocess_prefetch: int = setting(
        "CK_PREPROCESS_PREFETCH",
        0,
        "jpeg input: batches each SUT worker preprocesses ahead while the current one "
        "infers; 0 = in series",
        minimum=0,
        maximum=8,
    )
    dali_device: str = setting(
        "CK_DALI_DEVICE",
        "cpu",
        "jpeg input, DALI: cpu (every op on the CPU) or gpu (nvJPEG `mixed` decoder, GPU ops)",
        choices=("cpu", "gpu"),
    )
    progress: str = setting(
        "CK_PROGRESS",
        "auto",
        "per-second progress: auto, plain, live, off (`run --quiet`)",
        choices=("auto", "plain", "live", "off"),
    )
    autotune: str = setting(
        "CK_AUTOTUNE",
        "on",
        "probe workers x threads x batch when they are not given",
        choices=("on", "off"),
    )
    adaptive_batch: str = setting(
        "CK_ADAPTIVE_BATCH",
        "off",
        "Offline: try the batch, then half and twice it (half, double: only that one) in the "
        "run, follow a winner up to 2 steps further its way, keep the fastest (set by the "
        "auto-tuner when it chose the batch: the neighbours its probe could not tell from it)",
        choices=("on", "off", "half", "double"),
    )

    def __post_init__(self) -> None:
        for spec in SETTINGS.values():
            _validate(spec, getattr(self, spec.name))
        if self.count_override is not None and (
            self.min_query_count is not None or self.max_query_count is not None
        ):
            raise ConfigError(
                "CK_LOADGEN_COUNT_OVERRIDE sets both query counts; do not also set "
                "CK_LOADGEN_MIN_QUERY_COUNT / CK_LOADGEN_MAX_QUERY_COUNT"
            )

    @property
    def samples_per_query(self) -> int:
        """Samples LoadGen puts in one MultiStream query (1 elsewhere)."""
        if self.scenario is Scenario.MULTI_STREAM:
            return self.multistreamness or 8
        return 1

    def loadgen_values(self) -> list[tuple[Setting, LoadGenKey, Any]]:
        """The (setting, LoadGen key, value) triples that apply to this scenario."""
        out: list[tuple[Setting, LoadGenKey, Any]] = []
        for spec in SETTINGS.values():
            value = getattr(self, spec.name)
            if value is not None:
                out.extend((spec, key, value) for key in spec.loadgen.get(self.scenario, ()))
        return out

    def inapplicable(self) -> list[str]:
        """One line per LoadGen setting given that the scenario has no use for."""
        return [
            f"note: {spec.env}={getattr(self, spec.name)} does not apply to "
            f"{self.scenario.value}; ignored"
            for spec in SETTINGS.values()
            if spec.loadgen
            and getattr(self, spec.name) is not None
            and self.scenario not in spec.loadgen
        ]

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> RunConfig:
        """Build from CK env vars, then apply explicit ``overrides`` (e.g. CLI flags)."""
        for var, (why, accepted) in REFUSED_ENV.items():
            text = env.get(var, "").strip()
            if text and text.lower() not in accepted:
                raise ConfigError(f"{var}={text!r} is not supported by ckvision: {why}")
        values: dict[str, Any] = {}
        for spec in SETTINGS.values():
            given = [
                (v, env[v].strip()) for v in (spec.env, *spec.aliases) if env.get(v, "").strip()
            ]
            if len({text for _v, text in given}) > 1:
                shown = ", ".join(f"{v}={text!r}" for v, text in given)
                raise ConfigError(f"conflicting values for one setting: {shown}")
            if given:
                values[spec.name] = _parse(spec, given[0][0], given[0][1])
        if env.get("CK_BACKEND", "").strip():
            values["backend"] = env["CK_BACKEND"].strip()
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            if name == "backend":
                values[name] = value
                continue
            if name not in SETTINGS:
                raise ConfigError(f"unknown setting {name!r}")
            if isinstance(value, str):
                value = _parse(SETTINGS[name], SETTINGS[name].flag, value)
            values[name] = value
        return cls(**values)

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunConfig:
        """Back from :meth:`as_record` (a recorded run's ``config``); unknown keys (a newer
        or older record) are left out."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in record.items() if k in known}
        if "scenario" in values:
            values["scenario"] = Scenario(values["scenario"])
        if "mode" in values:
            values["mode"] = Mode(values["mode"])
        for name in ("conf_file", "user_conf"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        return cls(**values)

    def as_env(self, names: Iterable[str]) -> dict[str, str]:
        """The settings ``names`` as the env vars :meth:`from_env` reads back (unset ones
        left out): how a run made elsewhere (a Ray node) gets exactly these settings."""
        out: dict[str, str] = {}
        for name in names:
            value = getattr(self, name)
            if name not in SETTINGS or value is None:
                continue
            text = value.value if isinstance(value, enum.Enum) else value
            out[SETTINGS[name].env] = repr(text) if isinstance(text, float) else str(text)
        return out

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


def _declared(f: Field[Any]) -> Setting | None:  # pragma: no mutate block
    spec = f.metadata.get("setting")
    if not isinstance(spec, Setting):
        return None
    return replace(spec, name=f.name, type_name=str(f.type))


SETTINGS: dict[str, Setting] = {
    s.name: s for s in (_declared(f) for f in fields(RunConfig)) if s is not None
}
# field name -> (env var, help): the `ckvision run` flags are generated from this.
ENV_VARS: dict[str, tuple[str, str]] = {
    s.name: (s.env, f"{s.help} [{s.unit}]" if s.unit else s.help) for s in SETTINGS.values()
}
# ck-mlperf variables we do not implement: refused with this reason, never ignored. A value
# in the second element (compared lower-case; blank is always unset) asks for what we do
# anyway, so it passes. This table and SETTINGS decide for every variable they name;
# ckvision.upstream_env covers only the ck-mlperf variables neither names.
_OFF = ("no", "off", "false", "0")
REFUSED_ENV: dict[str, tuple[str, tuple[str, ...]]] = {
    "CK_MLPERF_ACCURACY_IMAGENET_TYPE": (
        "the accuracy log always holds float32 class ids (MLPerf's default); "
        "only float32 is accepted",
        ("float32",),
    ),
    "CK_LOADGEN_SIDELOAD_JSON": ("side-loaded JSON is not recorded; remove it", ()),
    "CK_LOADGEN_INCLUDE_TRACE": ("use CK_VERBOSE=3 to write LoadGen's trace", _OFF),
    "CK_MLPERF_PRE_SET_UP_INTEL_CPU": ("ckvision never runs sudo; tune the CPU yourself", _OFF),
    "CK_MLPERF_PRE_SCHINDLER": ("the dataset comes from the preprocessed dataset package", _OFF),
    "CK_BATCH_COUNT": ("use CK_LOADGEN_DATASET_SIZE / CK_LOADGEN_COUNT_OVERRIDE", ()),
    "CK_SKIP_IMAGES": ("use CK_LOADGEN_DATASET_SIZE", ()),
}


def declared_env_vars() -> frozenset[str]:
    """Every env var this module decides: the settings' names and aliases, and REFUSED_ENV."""
    names = set(REFUSED_ENV)
    for spec in SETTINGS.values():
        names.update((spec.env, *spec.aliases))
    return frozenset(names)


def settings_table_markdown() -> str:
    """The README's env-var table, generated from :data:`SETTINGS`."""
    lines = ["| env var | `ckvision run` flag | unit | range | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS.values():
        env = " or ".join(f"`{v}`" for v in (s.env, *s.aliases))
        lines.append(f"| {env} | `{s.flag}` | {s.unit or '-'} | {_range(s)} | {s.help} |")
    for var, (why, accepted) in REFUSED_ENV.items():
        fine = f" ({', '.join(accepted)} accepted)" if accepted else ""
        lines.append(f"| `{var}` | - | - | refused{fine} | {why} |")
    return "\n".join(lines)


def _range(spec: Setting) -> str:
    for kind in (Scenario, Mode):
        if kind.__name__ in spec.type_name:
            return ", ".join(m.value for m in kind)
    if spec.choices:
        return ", ".join(spec.choices)
    if spec.minimum is not None and spec.maximum is not None:
        return f"{spec.minimum:g} .. {spec.maximum:g}"
    if spec.minimum is not None:
        return "> 0" if 0 < spec.minimum < 1e-2 else f">= {spec.minimum:g}"
    return "-"


def _validate(spec: Setting, value: Any) -> None:
    if value is None:
        return
    if spec.minimum is not None or spec.maximum is not None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{spec.env}={value!r} is not a number")
        if math.isinf(value):
            raise ConfigError(f"{spec.env}={value} must be finite")
        if spec.minimum is not None and value < spec.minimum:
            bound = (
                "positive"
                if 0 < spec.minimum < 1e-2 or spec.minimum == 1
                else (f">= {spec.minimum:g}")
            )
            raise ConfigError(f"{spec.env}={value} must be {bound}")
        if spec.maximum is not None and value > spec.maximum:
            raise ConfigError(
                f"{spec.env}={value} must be between {spec.minimum:g} and {spec.maximum:g}"
            )
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{spec.env}={value!r} unknown; use one of: {', '.join(spec.choices)}")
    if spec.must_exist and not Path(value).is_file():
        raise ConfigError(f"{spec.env}={value}: no such file")


def _parse(spec: Setting, var: str, text: str) -> Any:
    type_name = spec.type_name
    if "Scenario" in type_name:
        return _enum(Scenario, var, text)
    if "Mode" in type_name:
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
            value = float(text)
        except ValueError:
            raise ConfigError(f"{var}={text!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{var}={text!r} is not a finite number")
        return value
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


if __name__ == "__main__":  # print the README's env-var table
    print(settings_table_markdown())
