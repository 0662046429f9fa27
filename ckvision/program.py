"""One benchmark run as the CK programs make it: env + files in the working directory.

The program's contract: CK env vars (``CK_LOADGEN_*``, ``CK_BATCH_SIZE``, the deps'
``CK_ENV_*`` and ``ML_MODEL_*``) and CLI flags in, LoadGen logs plus
``ckvision-run.json`` out, in the output directory. It runs the same without CK.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.backends import BackendOptions, create_backend
from ckvision.config import RunConfig
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import MissingPackageError, ModelError
from ckvision.experiments.record import RUN_FILE, collect_run, write_run_info
from ckvision.models.contract import ModelContract
from ckvision.provenance import collect_provenance

__all__ = ["ProgramInputs", "resolve_inputs", "run_program", "MODEL_SIDECAR"]

MODEL_SIDECAR = "model.json"
DATASET_ENV = "CK_ENV_DATASET_IMAGENET_PREPROCESSED"
DATASET_TAGS = "dataset,imagenet,preprocessed,sample"
# backend -> (env var holding the model file, the package tags that provide one)
MODEL_ENV: dict[str, tuple[str, str]] = {
    "onnxruntime": ("CK_ENV_ONNX_MODEL_ONNX_FILEPATH", "model,onnx,efficientnet-lite0,fp32"),
    "null": ("CK_ENV_ONNX_MODEL_ONNX_FILEPATH", "model,onnx,efficientnet-lite0,fp32"),
    "pytorch": ("CK_ENV_ONNX_MODEL_ONNX_FILEPATH", "model,onnx,efficientnet-lite0,fp32"),
    "tensorrt": (
        "CK_ENV_TENSORRT_MODEL_FILENAME",
        "model,tensorrt,efficientnet-lite0,converted-from-onnx,fp16,maxbatch.32",
    ),
    "triton": ("CK_ENV_TRITON_MODEL_FILE", "model,triton,efficientnet-lite0,python"),
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
    model_var, model_tags = MODEL_ENV.get(backend, MODEL_ENV["onnxruntime"])
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
) -> dict[str, Any]:
    """Run one LoadGen test and return the run's record (also written to disk)."""
    from ckvision.harness.run import run_benchmark  # LoadGen is imported only to run

    if config.backend == "tensorrt":
        from ckvision.backends.tensorrt_backend import check_tensorrt_available

        check_tensorrt_available()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_FILE).unlink(missing_ok=True)  # a failed run leaves no finished record
    # rgb8 datasets are normalised to the model's contract as LoadGen loads samples
    dataset = PreprocessedDataset.open(inputs.dataset_dir).for_model(inputs.contract)
    options = BackendOptions(
        threads=config.threads,
        execution_provider=config.execution_provider,
        precision=config.precision,
        device=config.device,
        cache_dir=inputs.model_path.parent / "ort-trt-cache",
        run_dir=output_dir,
        triton_urls=tuple(u.strip() for u in config.triton_urls.split(",") if u.strip()),
        triton_protocol=config.triton_protocol,
        triton_shm=config.triton_shm,
        triton_timeout_s=config.triton_timeout_s,
        triton_model=config.triton_model,
        triton_python=config.triton_python,
    )
    backend = create_backend(config.backend, inputs.model_path, inputs.contract, options)
    started = time.time()
    with backend:
        result = run_benchmark(
            config, backend, dataset, output_dir, model_name=inputs.contract.name, log=log
        )
        versions = backend.version()
        statistics = backend.run_statistics()
    write_run_info(
        output_dir,
        {
            "config": config.as_record(),
            "model": {**inputs.model_info, "contract": json.loads(inputs.contract.to_json())},
            "dataset": {
                "name": dataset.name,
                "kind": dataset.kind,
                "size": dataset.size,
                "path": str(dataset.path),
                "storage": dataset.storage,
                "preprocessing": dataset.preprocessing,
            },
            "backend": {
                "name": config.backend,
                "versions": versions,
                **({"statistics": statistics} if statistics else {}),
            },
            "provenance": collect_provenance(),
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
    return collect_run(output_dir)


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


__all__ += ["RUN_FILE", "peak_resources"]
