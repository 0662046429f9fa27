"""The backend interface every inference runtime implements, declared in full."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ckvision.config import RunConfig
from ckvision.errors import BackendError
from ckvision.models.contract import ModelContract

__all__ = ["Backend", "BackendOptions", "Capabilities"]


@dataclass(frozen=True)
class BackendOptions:
    """Runtime knobs a backend may honour (others ignore what does not apply)."""

    threads: int = 0  # intra-op threads; 0 = runtime default
    execution_provider: str = "cpu"  # onnxruntime: cpu | cuda | tensorrt
    precision: str = "fp32"  # pytorch: fp32 | fp16
    device: str = "cpu"  # pytorch: cpu | cuda
    cache_dir: Path | None = None  # onnxruntime TensorRT EP engine cache
    compile: bool = False  # pytorch: torch.compile
    cuda_graphs: bool = False  # tensorrt / pytorch
    streams: int = 2  # tensorrt: execution contexts; pytorch on CUDA: runners per batch size
    # (a run gives one per harness worker: BackendOptions.from_config)
    shared_streams: int = 0  # pytorch on CUDA: 0 = a stream per runner, N = N shared ones
    run_dir: Path | None = None  # where a backend keeps its logs of the run (triton)
    triton_urls: tuple[str, ...] = ()  # triton: servers to use; () = start one
    triton_protocol: str = "http"  # triton: http | grpc
    triton_shm: str = "none"  # triton: none | system shared memory
    triton_timeout_s: float = 30.0  # triton: per request and readiness
    triton_model: str = "classifier"  # triton: model name in the repository
    triton_python: str = ""  # triton: the triton env's python ("" = python3 on PATH)
    triton_instances: int | None = None  # triton: instances per served model (None: repo's)
    triton_max_queue_delay_us: int | None = None  # triton: dynamic batching delay (None: repo's)
    triton_preprocess_threads: int | None = None  # triton: JPEG-in engine threads (None: repo's)

    @classmethod
    def from_config(
        cls, config: RunConfig, model_path: Path | None = None, run_dir: Path | None = None
    ) -> BackendOptions:
        """The one place a run's settings become a backend's options: the run, the
        auto-tune probe and the sweeps all build them here, so none drops a field (a probe
        without the Triton URLs started a second server)."""
        return cls(
            threads=config.threads,
            execution_provider=config.execution_provider,
            precision=config.precision,
            device=config.device,
            cuda_graphs=config.cuda_graphs == "on",
            streams=config.workers,  # one runner / execution context per harness worker
            shared_streams=config.cuda_streams,
            cache_dir=None if model_path is None else Path(model_path).parent / "ort-trt-cache",
            run_dir=run_dir,
            triton_urls=tuple(u.strip() for u in config.triton_urls.split(",") if u.strip()),
            triton_protocol=config.triton_protocol,
            triton_shm=config.triton_shm,
            triton_timeout_s=config.triton_timeout_s,
            triton_model=config.triton_model,
            triton_python=config.triton_python,
            triton_instances=config.triton_instances,
            triton_max_queue_delay_us=config.triton_max_queue_delay_us,
            triton_preprocess_threads=config.triton_preprocess_threads,
        )


@dataclass(frozen=True)
class Capabilities:
    device: str  # "cpu", "cuda:0", "GPU name"
    max_batch: int  # 0 = no limit
    layouts: tuple[str, ...] = ("NCHW",)
    dtypes: tuple[str, ...] = ("float32",)
    # computes off the host's cores (a GPU): its layouts are runners x batch, not a split of
    # the cores, and its batches go as large as the device wants (the auto-tuner's grid)
    accelerator: bool = False
    # its workers' runners may share GPU streams (BackendOptions.shared_streams): the
    # auto-tuner tries one shared stream beside one stream per worker
    stream_sharing: bool = False


class Backend(abc.ABC):
    """An inference runtime for one model.

    The constructor is cheap and loads nothing; :meth:`load` does the work and is
    idempotent, as is :meth:`close`. ``predict`` takes a batch laid out as the
    model contract says and returns the output the contract names
    (``contract.output_name``): scores of shape ``(batch, num_classes + label_offset)``,
    or for an ArgMax output (``contract.output_kind == "argmax"``) integer indices of
    shape ``(batch,)``. The harness checks that before scoring
    (:mod:`ckvision.harness.outputs`). ``predict`` is called from several threads at
    once and must not share per-call buffers; a batch not shaped as the contract says is
    a :class:`BackendError` (:meth:`check_input`). Every registered backend passes
    ``tests/test_backend_contract.py``.
    """

    name: str = ""

    def __init__(self, model_path: Path, contract: ModelContract, options: BackendOptions) -> None:
        self.model_path = Path(model_path)
        self.contract = contract
        self.options = options

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def version(self) -> dict[str, str]:
        """Versions of the runtime pieces, recorded as provenance."""

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    def check_input(self, batch: np.ndarray) -> None:
        """Raise one clear :class:`BackendError` unless ``batch`` fits the contract."""
        want = self.contract.input_shape(len(batch))
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1:] != want[1:]:
            shape = getattr(batch, "shape", type(batch).__name__)
            raise BackendError(
                f"backend {self.name}: batch of shape {shape} does not fit model "
                f"{self.contract.name}, which takes {['N', *want[1:]]} ({self.contract.layout})"
            )
        if len(batch) == 0:
            raise BackendError(f"backend {self.name}: empty batch")
        if batch.dtype != np.dtype(self.contract.input_dtype):
            raise BackendError(
                f"backend {self.name}: batch of {batch.dtype}; model {self.contract.name} "
                f"takes {self.contract.input_dtype}"
            )

    def run_statistics(self) -> dict[str, Any]:
        """Runtime statistics since the end of :meth:`warmup` (served backends), recorded."""
        return {}

    def host_memory(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Memory for the samples LoadGen asks the harness to hold in RAM: where this
        backend's device copies from fastest (page-locked for a GPU); plain by default."""
        return np.empty(shape, dtype)

    @property
    def gathers_rows(self) -> bool:
        """Whether :meth:`predict_rows` takes rows to the device itself (else the harness
        gathers each batch on the host and calls :meth:`predict`)."""
        return False

    def predict_rows(self, source: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``predict(source[rows])``; a backend with :attr:`gathers_rows` copies the rows
        of ``source`` (from :meth:`host_memory`) to its device without a host gather."""
        return self.predict(source[np.asarray(rows, dtype=np.intp)])

    def warmup(self, batch: np.ndarray, iterations: int = 3) -> None:
        for _ in range(iterations):
            self.predict(batch)

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
