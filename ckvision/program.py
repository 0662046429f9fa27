"""One benchmark run as the CK programs make it: env + files in the working directory.

The program's contract: CK env vars (``CK_LOADGEN_*``, ``CK_BATCH_SIZE``, the deps'
``CK_ENV_*`` and ``ML_MODEL_*``) and CLI flags in, LoadGen logs plus
``ckvision-run.json`` out, in the output directory. It runs the same without CK.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckvision.backends import BackendOptions, create_backend
from ckvision.backends.registry import BACKENDS, backend_spec, check_available
from ckvision.config import SETTINGS, RunConfig
from ckvision.data.cache import PreprocessedDataset
from ckvision.data.encoded import EncodedDataset
from ckvision.errors import MissingPackageError, ModelError
from ckvision.experiments.record import RUN_FILE, collect_run, write_run_info
from ckvision.models.contract import MODEL_SIDECAR, ModelContract
from ckvision.provenance import code_fingerprint, collect_provenance

if TYPE_CHECKING:
    from ckvision.backends.base import Backend
    from ckvision.harness.run import RunResult

code_fingerprint()  # now, as this process loads the run code (a later checkout is not it)

__all__ = [
    "ProgramInputs",
    "run",
    "resolve_inputs",
    "run_program",
    "record_run",
    "MODEL_SIDECAR",
]

DATASET_ENV = "CK_ENV_DATASET_IMAGENET_PREPROCESSED"
DATASET_TAGS = "dataset,imagenet,preprocessed,sample"
# backend -> (env var holding the model file, the package tags that provide one): from
# the backend registry's descriptors (kept for callers of this name)
MODEL_ENV: dict[str, tuple[str, str]] = {
    name: (spec.model_env, spec.model_tags) for name, spec in BACKENDS.items()
}


@dataclass(frozen=True)
class ProgramInputs:
    model_path: Path
    contract: ModelContract
    dataset_dir: Path
    model_info: Mapping[str, Any]


def _sidecar(model_path: Path) -> dict[str, Any]:
    path = model_path.parent / MODEL_SIDECAR
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {path}: {err}; reinstall the model package") from err


def resolve_inputs(
    env: Mapping[str, str], backend: str, model: Path | None = None, dataset: Path | None = None
) -> ProgramInputs:
    """Find the model, its contract and the dataset from flags, else from the CK env."""
    spec = backend_spec(backend)
    model_var, model_tags = spec.model_env, spec.model_tags
    model_path = model or (Path(env[model_var]) if env.get(model_var) else None)
    if model_path is None:
        raise MissingPackageError(f"model ({model_var} not set)", model_tags)
    if not model_path.is_file():
        raise MissingPackageError(f"model file {model_path}", model_tags)
    sidecar = _sidecar(model_path)
    contract_env = dict(sidecar.get("env", {}))
    contract_env.update({k: v for k, v in env.items() if k.startswith("ML_MODEL_")})
    contract = ModelContract.from_env(contract_env)
    dataset_dir = dataset or (Path(env[DATASET_ENV]) if env.get(DATASET_ENV) else None)
    if dataset_dir is None:
        raise MissingPackageError(f"dataset ({DATASET_ENV} not set)", DATASET_TAGS)
    if not (dataset_dir / "dataset.json").is_file():
        raise MissingPackageError(f"preprocessed dataset at {dataset_dir}", DATASET_TAGS)
    info = {k: v for k, v in sidecar.items() if k != "env"}
    info.setdefault("path", str(model_path))
    return ProgramInputs(model_path, contract, dataset_dir, info)


def run_program(
    config: RunConfig,
    inputs: ProgramInputs,
    output_dir: Path,
    *,
    log: Callable[[str], None] = print,
    tuning: dict[str, Any] | None = None,
    check_tuning: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run one LoadGen test and return the run's record (also written to disk).

    ``check_tuning(result)``: how the run compares with the auto-tuner's prediction,
    recorded as ``tuning.validation`` (``ckvision.tuning.validate_choice``)."""
    from ckvision.harness.run import run_benchmark  # LoadGen is imported only to run

    check_available(config.backend)  # one line when its runtime cannot run here
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_FILE).unlink(missing_ok=True)  # a failed run leaves no finished record
    dataset = _open_dataset(config, inputs, log)
    for name in ("triton_instances", "triton_max_queue_delay_us", "triton_preprocess_threads"):
        if config.backend != "triton" and getattr(config, name) is not None:
            log(f"note: {SETTINGS[name].env} applies to the triton backend only; ignored")
    options = BackendOptions.from_config(config, inputs.model_path, output_dir)
    backend = create_backend(config.backend, inputs.model_path, inputs.contract, options)
    started = time.time()
    try:
        with backend:
            result = run_benchmark(
                config, backend, dataset, output_dir, model_name=inputs.contract.name, log=log
            )
            if isinstance(dataset, EncodedDataset) and dataset.engine == "dali":
                if dataset.preprocessed_by == "client":  # not bit-identical: measured, recorded
                    dataset.measure_difference(max_batch=config.batch_size)
            if result.adaptive is not None:  # the batch the Offline run settled on
                tuning = {**(tuning or {}), "in_run": result.adaptive}
            if tuning is not None and check_tuning is not None:
                tuning = {**tuning, "validation": check_tuning(result)}
            record_run(
                output_dir,
                config,
                {**inputs.model_info, "contract": json.loads(inputs.contract.to_json())},
                dataset,
                backend,
                result,
                tuning=tuning,
                started=started,
            )
    finally:
        if isinstance(dataset, EncodedDataset):
            dataset.close()
    return collect_run(output_dir)


__all__ += ["RUN_FILE"]


def record_run(
    output_dir: Path,
    config: RunConfig,
    model: Mapping[str, Any],
    dataset: PreprocessedDataset | EncodedDataset,
    backend: Backend,
    result: RunResult,
    *,
    tuning: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    started: float | None = None,
) -> None:
    """Write the run's ``ckvision-run.json``: the one record writer of every run (the
    pipeline's, and the benchmarks' that drive the harness on a warm backend)."""
    statistics = backend.run_statistics()
    write_run_info(
        output_dir,
        {
            "config": config.as_record(),
            "model": dict(model),
            "dataset": {
                "name": dataset.name,
                "kind": dataset.kind,
                "size": dataset.size,
                "path": str(dataset.path),
                "storage": dataset.storage,
                "preprocessing": dataset.preprocessing,
                # JPEG-in: decode + resize + normalise ran inside the measured path, so
                # this is not an MLPerf-style result (submissions refuse it for closed)
                "input_format": config.input_format,
                "preprocessing_in_measured_path": config.input_format == "jpeg",
                **({"prefetch": result.prefetch} if result.prefetch else {}),
            },
            "backend": {
                "name": config.backend,
                "versions": backend.version(),
                "options": asdict(backend.options),  # as the backend got them
                **({"statistics": statistics} if statistics else {}),
            },
            "provenance": dict(provenance or collect_provenance()),
            "failures": result.failures,
            "started": started,
            "duration_s": result.duration_s,
            # the typed run record's verdict, so readers need not re-parse LoadGen's logs
            "result": {
                "completed": result.completed,
                "valid": result.valid,
                "samples_per_second": result.samples_per_second,
                "latency_ns": result.latency_ns,  # per query for MultiStream (LoadGen's)
                "accuracy": result.accuracy,
            },
            "tuning": tuning,  # ckvision.tuning: what the probe chose (None: nothing)
            "latency_histogram": result.latency,  # ckvision.harness.histogram summary
            "resources": peak_resources(),  # peak RSS: bounded by the memory-mapped cache
        },
    )


def run(
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    output_dir: Path,
    *,
    model: Path | None = None,
    dataset: Path | None = None,
    autotune: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """THE run pipeline, whichever way a user comes in (``ckvision run``, the CK programs,
    the MLC script, the sweeps through them): refuse what we cannot honour, settings from
    ``env`` + ``overrides`` (flags win), find the model and data, auto-tune what the user
    left open, run, record. Returns the run's record (also in ``output_dir``)."""
    from ckvision.config import Mode
    from ckvision.tuning import autotune as tune
    from ckvision.tuning import explicit_settings, validate_choice
    from ckvision.upstream_env import refuse_unsupported

    refuse_unsupported(env)  # ck-mlperf's variables we cannot honour: one line
    given = dict(overrides or {})
    config = RunConfig.from_env(env, given)  # one line for a bad value, before any loading
    inputs = resolve_inputs(env, config.backend, model, dataset)
    tuning = None
    if autotune:
        config, tuning = tune(
            config,
            inputs.model_path,
            inputs.contract,
            inputs.dataset_dir,
            explicit_settings(env, given),
            log=log,
            env={**os.environ, **env},  # the probe cache's place: the run's env, else ours
        )

    def check_tuning(result: RunResult) -> dict[str, Any]:
        """The run against the probe's prediction: a cached choice that missed is dropped."""
        return validate_choice(
            tuning,
            result.samples_per_second if result.mode is Mode.PERFORMANCE else None,
            scenario=result.scenario,
            in_run=result.adaptive,
            env={**os.environ, **env},
            log=log,
        )

    return run_program(
        config,
        inputs,
        Path(output_dir).resolve(),
        log=log,
        tuning=tuning,
        check_tuning=check_tuning,
    )


def _open_dataset(
    config: RunConfig, inputs: ProgramInputs, log: Callable[[str], None]
) -> PreprocessedDataset | EncodedDataset:
    """The run's samples: the rgb8 cache normalised to the model's contract as LoadGen
    loads them, or (``CK_INPUT_FORMAT=jpeg``) the encoded files behind it."""
    if config.input_format == "jpeg":
        return EncodedDataset.open(
            inputs.dataset_dir,
            inputs.contract,
            config.preprocess_engine,
            threads=config.preprocess_threads,
            device=config.dali_device,
        )
    for name in (
        "preprocess_engine",
        "preprocess_threads",
        "preprocess_prefetch",
        "dali_device",
    ):
        spec = SETTINGS[name]
        if getattr(config, name) != RunConfig.__dataclass_fields__[name].default:
            log(f"note: {spec.env} applies to CK_INPUT_FORMAT=jpeg only; ignored")
    return PreprocessedDataset.open(inputs.dataset_dir).for_model(inputs.contract)


def peak_resources() -> dict[str, Any]:
    """This process's peak resident memory so far (Linux: ``VmHWM``, else ``ru_maxrss``), and on
    Linux the resident private (``anon_rss_mib``) and file-backed (``file_rss_mib``) memory
    at the end of the run."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024  # Linux: KiB
    out: dict[str, Any] = {"peak_rss_mib": round(peak_bytes / 2**20, 1)}
    try:  # Linux: ru_maxrss survives exec (a big parent's RSS would show); VmHWM does not
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(":")
            mib = round(int(value.split()[0]) / 1024, 1) if key.startswith(("Vm", "Rss")) else 0
            if key == "VmHWM":
                out["peak_rss_mib"] = mib
            elif key in ("RssAnon", "RssFile"):  # now: private memory vs mapped files
                out[f"{key[3:].lower()}_rss_mib"] = mib
    except (OSError, ValueError, IndexError):
        pass
    return out


__all__ += ["peak_resources"]
