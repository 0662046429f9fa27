"""The ``triton`` backend: LoadGen's batches sent to Triton Inference Server.

``model_path`` is a model repository (its directory or its ``ckvision-triton.json``).
With no URLs the backend starts a server on that repository for the run (log in the
run's directory) and always stops it; with URLs it uses those servers, spreading
requests round-robin over them (the scale-out path). Each worker thread has its own
client per server (HTTP or gRPC) and, with ``system`` shared memory, its own input and
output regions registered with every server, so requests from ``CK_LOADGEN_WORKERS``
threads are in flight at once. ``load`` checks the served model against the contract,
and its instance count and batching delay against ``CK_TRITON_INSTANCES`` /
``CK_TRITON_MAX_QUEUE_DELAY_US`` (:mod:`ckvision.triton.knobs`: a server started here
serves a copy of the repository that carries them; a server given by URL must serve them).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.backends.base import Backend, Capabilities
from ckvision.backends.registry import register_backend
from ckvision.errors import BackendError, ConfigError, ModelError
from ckvision.triton import stats as triton_stats
from ckvision.triton.knobs import Knobs, mismatches, refuse, retuned_repository, served_knobs

__all__ = ["TritonBackend", "parse_urls"]

_URL = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")
MIN_REGION_BYTES = 1 << 20  # the least an input region of encoded files is made with
_TYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int8": "INT8"}


def parse_urls(text: str | tuple[str, ...]) -> tuple[str, ...]:
    """``host:port[,host:port...]`` -> tuple; one line for anything else."""
    items = text if isinstance(text, tuple) else tuple(text.split(","))
    urls = tuple(u.strip() for u in items if u.strip())
    for url in urls:
        if not _URL.match(url) or not 0 < int(url.rsplit(":", 1)[1]) < 65536:
            raise ConfigError(f"CK_TRITON_URLS: {url!r} is not host:port")
    return urls


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _modules(protocol: str) -> tuple[Any, Any]:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
        import tritonclient.utils.shared_memory as shm
    except ImportError as err:
        raise BackendError(
            f"the Triton client is not installed ({_first_line(err)}); "
            "pip install 'ckvision[triton]'"
        ) from err
    return client, shm


class _Link:
    """One thread's connection to one server (+ its shared-memory regions).

    With ``system`` shared memory the output region holds a max batch of logits and the
    input region a max batch of pixels; encoded files (the JPEG-in ensemble) differ in
    size, so their input region is made for the first batch and made anew, larger, when
    a batch does not fit (:meth:`input_region`)."""

    def __init__(self, backend: TritonBackend, index: int) -> None:
        opts = backend.options
        self.url = backend.urls[index]
        self._shm = backend._shm
        if opts.triton_protocol == "grpc":
            self.client = backend._mod.InferenceServerClient(self.url)
        else:
            self.client = backend._mod.InferenceServerClient(
                self.url,
                connection_timeout=opts.triton_timeout_s,
                network_timeout=opts.triton_timeout_s,
            )
        self.regions: dict[str, tuple[str, Any, int]] = {}  # kind -> name, handle, bytes
        self._tag = f"ckv{os.getpid()}_{threading.get_ident()}_{index}"
        if opts.triton_shm == "system":
            self._region("out", backend._max_batch * backend._classes * 4)
            if not backend.takes_encoded:
                self._region("in", backend._max_batch * backend._sample_bytes)

    def _region(self, kind: str, size: int) -> tuple[str, Any, int]:
        """A registered region of ``size`` bytes for ``kind`` (its old one removed)."""
        self._drop(kind)
        name = f"{self._tag}_{kind}"
        handle = self._shm.create_shared_memory_region(name, f"/{name}", size)
        self.regions[kind] = (name, handle, size)
        try:
            self.client.register_system_shared_memory(name, f"/{name}", size)
        except BaseException:
            self._drop(kind)
            raise
        return self.regions[kind]

    def input_region(self, size: int) -> tuple[str, Any, int]:
        """The input region, made (anew, with room to spare) when ``size`` bytes do not fit."""
        region = self.regions.get("in")
        if region is None or region[2] < size:
            region = self._region("in", max(size + size // 2, MIN_REGION_BYTES))
        return region

    def _drop(self, kind: str) -> None:
        region = self.regions.pop(kind, None)
        if region is None:
            return
        with contextlib.suppress(Exception):
            self.client.unregister_system_shared_memory(region[0])
        with contextlib.suppress(Exception):
            self._shm.destroy_shared_memory_region(region[1])

    def close(self) -> None:
        for kind in list(self.regions):
            self._drop(kind)
        with contextlib.suppress(Exception):
            self.client.close()


@register_backend("triton")
class TritonBackend(Backend):
    """Inference on Triton servers (started here when no URLs are given)."""

    urls: tuple[str, ...] = ()
    _server: Any = None
    _loaded = False
    _max_batch = 0
    _classes = 0
    _sample_bytes = 0
    _io: ThreadPoolExecutor | None = None
    # the served model takes encoded files (the JPEG-in ensemble, ckvision.triton.ensemble):
    # the JPEG-in QSL then hands it the files' bytes and the server preprocesses them
    takes_encoded = False
    served: dict[str, dict[str, int | None]] | None = None  # model -> its knobs, as served

    def load(self) -> None:
        if self._loaded:
            return
        opts = self.options
        self._mod, self._shm = _modules(opts.triton_protocol)
        self.urls = parse_urls(opts.triton_urls)
        self._links: list[_Link] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._client_ns = 0
        self._client_requests = 0
        self._senders: set[int] = set()  # threads that sent requests: requests in flight
        self._before: list[dict[str, int]] = []
        # gevent (tritonclient.http) on LoadGen's issue thread garbles LoadGen's accuracy
        # log; so HTTP requests from the main thread go through one I/O thread.
        self._io = (
            ThreadPoolExecutor(1, thread_name_prefix="ckvision-triton-http")
            if opts.triton_protocol == "http"
            else None
        )
        try:
            if not self.urls:
                self._start_server()
            self._check_servers()
        except BaseException:
            self.close()
            raise
        self._loaded = True

    def _start_server(self) -> None:
        from ckvision.triton.server import TritonServer, find_triton

        repo = self.model_path if self.model_path.is_dir() else self.model_path.parent
        # the run's directory (the program's output dir), else a kept temporary one
        run_dir = self.options.run_dir or Path(tempfile.mkdtemp(prefix="ckvision-triton-"))
        if self._knobs().given:  # the served copy carries the run's instances / delay
            repo = retuned_repository(repo, run_dir / "triton-repository", self._knobs())
        self._server = TritonServer(
            find_triton(self.options.triton_python),
            repo,
            run_dir,
            ready_timeout_s=max(60.0, self.options.triton_timeout_s),
        )
        self._server.start()
        self.urls = (self._server.url(self.options.triton_protocol),)

    def _admin(self) -> Any:
        """A client for the first server, for this thread (health, config, statistics)."""
        return self._link(0).client

    def _check_servers(self) -> None:
        model, timeout = self.options.triton_model, self.options.triton_timeout_s
        for index, url in enumerate(self.urls):
            client = self._mod.InferenceServerClient(url)
            try:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        if client.is_model_ready(model):
                            break
                        reason = "not ready"
                    except Exception as err:  # refused, reset, DNS: all "not reachable"
                        if time.monotonic() > deadline:
                            raise BackendError(
                                f"Triton server {url} not reachable within "
                                f"{timeout:g} s: {_first_line(err)}"
                            ) from err
                        reason = "unreachable"
                    if time.monotonic() > deadline:
                        raise BackendError(
                            f"Triton model {model!r} is not loaded on {url} "
                            f"({reason} within {timeout:g} s)"
                        )
                    time.sleep(0.2)
                config = client.get_model_config(model, **self._json())
                config = config.get("config", config)
                self._check_config(config, url, first=index == 0)
                served = self._served_knobs(client, model, config)
                refuse(url, mismatches(served, self._knobs()))
                if index == 0:
                    self.served = served
            finally:
                with contextlib.suppress(Exception):
                    client.close()

    def _knobs(self) -> Knobs:
        opts = self.options
        return Knobs(
            opts.triton_instances, opts.triton_max_queue_delay_us, opts.triton_preprocess_threads
        )

    def _served_knobs(
        self, client: Any, model: str, config: dict[str, Any]
    ) -> dict[str, dict[str, int | None]]:
        """The knobs of every model doing ``model``'s work (an ensemble's steps)."""
        steps = (config.get("ensemble_scheduling") or {}).get("step") or []
        if not steps:
            return {model: served_knobs(config)}
        out = {}
        for step in steps:
            name = str(step["model_name"])
            step_config = client.get_model_config(name, **self._json())
            out[name] = served_knobs(step_config.get("config", step_config))
        return out

    def _json(self) -> dict[str, Any]:
        return {"as_json": True} if self.options.triton_protocol == "grpc" else {}

    def _check_config(self, config: dict[str, Any], url: str, first: bool) -> None:
        contract, model = self.contract, self.options.triton_model
        inputs, outputs = config.get("input", []), config.get("output", [])
        if len(inputs) != 1 or not outputs:
            raise ModelError(
                f"Triton model {model!r} on {url} has {len(inputs)} inputs and "
                f"{len(outputs)} outputs; one image input and logits expected"
            )
        dims = [int(d) for d in inputs[0].get("dims", [])]
        want = list(contract.input_shape(1)[1:])
        dtype = str(inputs[0].get("data_type", "")).removeprefix("TYPE_")
        encoded = dtype == "STRING" and dims == [1]  # JPEG bytes, one file per item
        if first:
            self.takes_encoded = encoded
            self._input_name = str(inputs[0].get("name"))
        if encoded != self.takes_encoded:
            raise ModelError(f"Triton servers disagree on model {model!r}'s input ({url})")
        if not encoded and (dims != want or dtype != _TYPES.get(contract.input_dtype)):
            raise ModelError(
                f"Triton model {model!r} on {url} takes {dtype} {dims}, but the "
                f"contract gives {_TYPES.get(contract.input_dtype)} {want} "
                f"({contract.layout})"
            )
        if not encoded and inputs[0].get("name") != contract.input_name:
            raise ModelError(
                f"Triton model {model!r} on {url} names its input "
                f"{inputs[0].get('name')!r}, the contract {contract.input_name!r}"
            )
        classes = int(([*outputs[0].get("dims", [])] or [0])[-1])
        if classes < contract.num_classes:
            raise ModelError(
                f"Triton model {model!r} on {url} outputs {classes} classes but "
                f"the contract says {contract.num_classes}"
            )
        max_batch = int(config.get("max_batch_size", 0))
        if max_batch < 1:
            raise ModelError(
                f"Triton model {model!r} on {url} does not batch "
                "(max_batch_size 0); regenerate its repository"
            )
        if first:
            self._max_batch, self._classes = max_batch, classes
            self._output_name = outputs[0]["name"]
            self._sample_bytes = int(np.prod(want)) * np.dtype(contract.input_dtype).itemsize
        elif (max_batch, classes) != (self._max_batch, self._classes):
            raise ModelError(
                f"Triton servers disagree on model {model!r}: {url} has max batch "
                f"{max_batch}, {classes} classes; {self.urls[0]} has "
                f"{self._max_batch}, {self._classes}"
            )

    def _link(self, index: int) -> _Link:
        links = getattr(self._local, "links", None)
        if links is None:
            links = self._local.links = {}
        link = links.get(index)
        if link is None:
            link = links[index] = _Link(self, index)
            with self._lock:
                self._links.append(link)
        return link

    def _check_batch(self, batch: np.ndarray) -> None:
        """One clear line unless ``batch`` fits the contract and the served max batch."""
        if self.takes_encoded:
            if batch.dtype != object or batch.ndim != 2 or batch.shape[1:] != (1,):
                raise BackendError(
                    f"backend {self.name}: model {self.options.triton_model!r} takes encoded "
                    f"files (an (N, 1) array of bytes), got {batch.shape} {batch.dtype}; "
                    "run it with CK_INPUT_FORMAT=jpeg"
                )
        else:
            self.check_input(batch)
        if len(batch) > self._max_batch:
            raise BackendError(
                f"backend {self.name}: batch of {len(batch)} is above the "
                f"Triton model's max batch {self._max_batch}"
            )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if not self._loaded:
            self.load()
        self._check_batch(batch)
        index = next(self._turn) % len(self.urls)
        start = time.perf_counter_ns()
        if self._io is not None and threading.current_thread() is threading.main_thread():
            return self._io.submit(self._timed, index, batch, start).result()
        return self._timed(index, batch, start)

    def _timed(self, index: int, batch: np.ndarray, start: int) -> np.ndarray:
        link = self._link(index)
        try:
            logits = self._infer(link, batch if self.takes_encoded else np.ascontiguousarray(batch))
        except Exception as err:  # tritonclient / socket / gevent errors: one line
            raise BackendError(f"Triton request to {link.url} failed: {_first_line(err)}") from err
        elapsed = time.perf_counter_ns() - start
        with self._lock:
            self._client_ns += elapsed
            self._client_requests += 1
            self._senders.add(threading.get_ident())
        return logits

    def _infer(self, link: _Link, batch: np.ndarray) -> np.ndarray:
        mod, opts, n = self._mod, self.options, len(batch)
        grpc = opts.triton_protocol == "grpc"
        inp = (
            mod.InferInput(self._input_name, list(batch.shape), "BYTES")
            if self.takes_encoded
            else mod.InferInput(
                self.contract.input_name, list(batch.shape), _TYPES[str(batch.dtype)]
            )
        )
        out = (
            mod.InferRequestedOutput(self._output_name)
            if grpc
            else mod.InferRequestedOutput(self._output_name, binary_data=True)
        )
        if link.regions:
            # encoded files: as Triton reads BYTES (each one's 4-byte length, then it)
            data = self._serialize(batch) if self.takes_encoded else batch
            size = len(data.item()) if self.takes_encoded else batch.nbytes
            in_name, in_handle, _size = link.input_region(size)
            self._shm.set_shared_memory_region(in_handle, [data])
            inp.set_shared_memory(in_name, size)
            out.set_shared_memory(link.regions["out"][0], n * self._classes * 4)
        elif grpc:
            inp.set_data_from_numpy(batch)
        else:
            inp.set_data_from_numpy(batch, binary_data=True)
        kwargs = {"client_timeout": opts.triton_timeout_s} if grpc else {}
        result = link.client.infer(opts.triton_model, [inp], outputs=[out], **kwargs)
        if link.regions:
            logits = np.array(
                self._shm.get_contents_as_numpy(
                    link.regions["out"][1], np.float32, [n, self._classes]
                )
            )
        else:
            logits = result.as_numpy(self._output_name)
        if logits is None or logits.shape != (n, self._classes):
            got = None if logits is None else logits.shape
            raise BackendError(f"Triton returned logits of shape {got} for a batch of {n}")
        return np.asarray(logits, dtype=np.float32)

    @staticmethod
    def _serialize(batch: np.ndarray) -> np.ndarray:
        """Encoded files as one BYTES buffer (what Triton reads from shared memory)."""
        from tritonclient.utils import serialize_byte_tensor

        return np.asarray(serialize_byte_tensor(batch))

    def warmup(self, batch: np.ndarray, iterations: int = 3) -> None:
        super().warmup(batch, iterations)
        self._before = self._settled()
        with self._lock:
            self._client_ns = self._client_requests = 0
            self._senders = set()

    def _settled(self) -> list[dict[str, int]]:
        """Snapshots once Triton has booked the last responses (it does so after sending).

        Two equal snapshots in a row, or the last one after a second (another client's
        traffic never settles; then its requests are in the breakdown too).
        """
        previous, deadline = self._snapshots(), time.monotonic() + 1.0
        while time.monotonic() < deadline:
            time.sleep(0.01)
            current = self._snapshots()
            if current == previous:
                break
            previous = current
        return previous

    def _snapshots(self) -> list[dict[str, int]]:
        snaps = []
        for index in range(len(self.urls)):
            try:
                raw = self._link(index).client.get_inference_statistics(
                    self.options.triton_model, **self._json()
                )
            except Exception as err:
                raise BackendError(
                    f"cannot read Triton statistics from {self.urls[index]}: {_first_line(err)}"
                ) from err
            snaps.append(triton_stats.snapshot(raw, self.options.triton_model))
        return snaps

    def run_statistics(self) -> dict[str, Any]:
        if not self._loaded:
            return {}
        out = triton_stats.breakdown(
            self._before, self._settled(), self._client_requests, self._client_ns
        )
        out.update(
            {
                "concurrency": len(self._senders),
                "urls": ",".join(self.urls),
                "protocol": self.options.triton_protocol,
                "shared_memory": self.options.triton_shm,
                "model": self.options.triton_model,
                "managed_server": self._server is not None,
                "served_models": self.served or {},  # instances, max queue delay (us)
            }
        )
        if self._server is not None:
            out["server_log"] = str(self._server.log_path)
        return out

    def close(self) -> None:
        for link in getattr(self, "_links", []):
            link.close()
        self._links = []
        self._local = threading.local()
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._loaded = False

    def version(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out = {"protocol": self.options.triton_protocol}
        with contextlib.suppress(PackageNotFoundError):
            out["tritonclient"] = version("tritonclient")
        if self._loaded:
            with contextlib.suppress(Exception):
                meta = self._admin().get_server_metadata(**self._json())
                out["tritonserver"] = str(meta.get("version", ""))
        return out

    @property
    def capabilities(self) -> Capabilities:
        device = f"triton:{','.join(self.urls)}" if self.urls else "triton"
        return Capabilities(device=device, max_batch=self._max_batch or self.contract.max_batch)
