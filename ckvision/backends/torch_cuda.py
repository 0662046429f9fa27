"""The PyTorch backend's CUDA path: runners that own pinned buffers, a stream and a graph.

A :class:`CudaRunner` serves one batch size on its own stream:

* samples in page-locked host memory (the harness's RAM copy of the dataset is allocated
  by :meth:`RunnerPool.host_memory`) are gathered by the GPU itself: one ``index_select``
  on the runner's stream reads the batch's rows straight from that memory (mapped into
  the GPU's address space: :func:`device_view`) into the GPU input, with no host copy
  (an H200 host: 50 GB/s, against 7-14 GB/s for a host gather and its copy); where
  the memory cannot be mapped, one multi-threaded host ``index_select`` into the
  runner's pinned input and one asynchronous copy. Consecutive rows (a SingleStream
  sample) go straight to the GPU; any other batch is copied into the pinned input by
  numpy, then one asynchronous copy (``non_blocking``) to the GPU;
* the cast to fp16 and to channels-last happens on the GPU, inside the forward pass
  (and inside the CUDA graph when there is one), so no extra host pass is made;
* the logits come back as float32 into a pinned host buffer, and the stream is
  synchronised once per batch, after that copy.

A :class:`RunnerPool` hands runners to the harness's worker threads: up to ``per_size``
runners per batch size work at once, each call takes a free one, so copies of one
batch overlap the compute of another (each runner on its own stream), or, with
``shared_streams``, the host work of one batch (its response, the next batch's enqueue)
overlaps the GPU work of another, which runs back to back with it on a stream they share
(concurrent kernels of fp32 EfficientNet-Lite0 at batch 256 slowed each other down on an
H200: 4 streams 0.82x a serial loop). A batch smaller than a size already made is padded
to it (the padding rows are computed and dropped), so a short last batch never captures
a graph or benchmarks cuDNN kernels for a new shape in the middle of a test. torch is
passed in, never imported here, so importing this module needs no torch.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ckvision.errors import BackendError

__all__ = [
    "RunnerSpec",
    "CudaRunner",
    "RunnerPool",
    "consecutive_runs",
    "gather_rows",
    "device_view",
]


@dataclass(frozen=True)
class RunnerSpec:
    sample_shape: tuple[int, ...]
    dtype: Any  # torch.float32 | torch.float16: what the model computes in
    channels_last: bool
    graphs: bool
    per_size: int = 1  # runners of one batch size that may work at once
    # GPU streams the runners run their batches on: 0 = each its own (one batch's copies
    # and kernels overlap another's), N = the pool's N, shared (batches run back to back,
    # as a serial loop runs them, while the workers' host work overlaps)
    shared_streams: int = 0


class CudaRunner:
    """One batch size; not thread-safe (the pool gives it to one thread). Made and
    captured on a stream of its own; its batches run on ``stream`` (its own, or one the
    pool shares), and a call waits for its own batch only (an event after its copy back)."""

    def __init__(
        self, torch: Any, model: Any, spec: RunnerSpec, size: int, stream: Any = None
    ) -> None:
        self.torch, self.model, self.size = torch, model, size
        shape = (size, *spec.sample_shape)
        self.own_stream = torch.cuda.Stream()
        self.stream = self.own_stream if stream is None else stream
        self.done = torch.cuda.Event()
        self.graph: Any = None
        # batches, host copy s, enqueue s, wait + copy out s, batches the GPU gathered
        self.stats = np.zeros(5)
        self.mapped: bool | None = None  # page-locked samples readable by the GPU: unknown
        with torch.inference_mode(), torch.cuda.stream(self.own_stream):  # made on our own
            self.host_in = torch.zeros(shape, dtype=torch.float32, pin_memory=True)
            self.host_in_np: np.ndarray = self.host_in.numpy()
            self.dev_in = torch.zeros(shape, dtype=torch.float32, device="cuda")
            self.rows_host = torch.zeros(size, dtype=torch.int64, pin_memory=True)
            self.rows_host_np: np.ndarray = self.rows_host.numpy()
            self.rows_dev = torch.zeros(size, dtype=torch.int64, device="cuda")
            cast = spec.dtype != torch.float32 or spec.channels_last
            fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
            self.static_in = (
                torch.empty(shape, dtype=spec.dtype, device="cuda", memory_format=fmt)
                if cast
                else self.dev_in
            )
            out = self._forward()  # first call: cuDNN picks kernels, torch.compile compiles
            self.host_out = torch.empty(tuple(out.shape), dtype=torch.float32, pin_memory=True)
            self.host_out_np: np.ndarray = self.host_out.numpy()
            for _ in range(2):
                out = self._forward()
        self.own_stream.synchronize()
        self.dev_out = out
        if spec.graphs:
            self._capture()

    def _forward(self) -> Any:
        if self.static_in is not self.dev_in:
            self.static_in.copy_(self.dev_in)  # fp16 and/or channels-last, on the GPU
        return self.model(self.static_in).float()

    def _capture(self) -> None:
        torch = self.torch
        graph = torch.cuda.CUDAGraph()
        try:
            with (
                torch.inference_mode(),
                torch.cuda.graph(graph, stream=self.own_stream, capture_error_mode="thread_local"),
            ):
                self.dev_out = self._forward()
        except RuntimeError as err:
            raise BackendError(f"CUDA graph capture failed for batch {self.size}: {err}") from err
        self.graph = graph

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` (at most ``size`` rows, any host memory), float32, a fresh
        array; the batch is copied into the pinned input first."""
        t0 = time.perf_counter()
        n = len(batch)
        np.copyto(self.host_in_np[:n], batch, casting="same_kind")
        return self._infer(n, self.host_in[:n], t0)

    def run_rows(self, source: Any, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits of rows ``rows`` of ``source``, a float32 host tensor in page-locked
        memory. Consecutive rows (a SingleStream sample) go straight to the GPU; others are
        gathered by the GPU from ``source`` mapped into its address space (the row
        indices go over first); where it cannot be mapped, into the pinned input by one
        host ``index_select`` (C++, on torch's CPU threads, without the GIL), then copied
        in one piece: a copy call per row would take the GIL back per row, and other
        workers' threads hold it (measured on an H200 host: 25 ms of enqueue per batch
        of 256 with 4 workers)."""
        t0 = time.perf_counter()
        index_np = np.asarray(rows, dtype=np.int64)
        n, first = len(index_np), int(index_np[0])
        if int(index_np[-1]) - first == n - 1 and (n < 3 or bool(np.all(np.diff(index_np) == 1))):
            return self._infer(n, source[first : first + n], t0)
        view = device_view(self.torch, source) if self.mapped is not False else None
        self.mapped = view is not None
        if view is None:
            return self._infer(n, gather_rows(self.torch, source, index_np, self.host_in[:n]), t0)
        self.rows_host_np[:n] = index_np
        return self._infer(n, None, t0, gather=(view, self.rows_host[:n], self.rows_dev[:n]))

    def _infer(
        self, n: int, part: Any, t0: float, gather: tuple[Any, Any, Any] | None = None
    ) -> np.ndarray:
        """``part`` (host rows) copied to the GPU input, or ``gather``: (the samples' GPU
        view, row indices in pinned memory, their GPU buffer), gathered on the GPU."""
        torch = self.torch
        t1 = time.perf_counter()
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            if gather is None:
                self.dev_in[: len(part)].copy_(part, non_blocking=True)
            else:
                view, rows_host, rows_dev = gather
                rows_dev.copy_(rows_host, non_blocking=True)
                torch.index_select(view, 0, rows_dev, out=self.dev_in[:n])
            if self.graph is not None:
                self.graph.replay()
                out = self.dev_out
            else:
                out = self._forward()
            self.host_out[:n].copy_(out[:n], non_blocking=True)
            self.done.record(self.stream)
        t2 = time.perf_counter()
        self.done.synchronize()  # the one wait per batch: its logits are on the host
        result = np.array(self.host_out_np[:n])
        t3 = time.perf_counter()
        self.stats += (1, t1 - t0, t2 - t1, t3 - t2, gather is not None)
        return result

    def close(self) -> None:
        if self.graph is not None:
            self.graph.reset()
        self.graph = self.dev_out = self.static_in = self.dev_in = None
        self.host_in = self.host_out = self.rows_host = self.rows_dev = None
        self.host_in_np = self.host_out_np = np.empty(0, np.float32)
        self.rows_host_np = np.empty(0, np.int64)


class RunnerPool:
    """Runners by batch size; ``run`` borrows a free one (or makes one, up to ``per_size``)."""

    def __init__(self, torch: Any, model: Any, spec: RunnerSpec) -> None:
        self.torch, self.model, self.spec = torch, model, spec
        self._free: dict[int, list[CudaRunner]] = {}
        self._all: list[CudaRunner] = []
        self._made: dict[int, int] = {}
        self._cond = threading.Condition()
        self._make_lock = threading.Lock()  # one capture at a time
        self._streams = [torch.cuda.Stream() for _ in range(spec.shared_streams)]
        self._turn = 0  # which shared stream the next runner gets (under _make_lock)
        # page-locked host arrays handed out: (address, bytes, the array while it lives)
        self._pinned: list[tuple[int, int, weakref.ref[np.ndarray]]] = []

    def prepare(self, size: int, batch: np.ndarray, iterations: int) -> None:
        """Make every runner of ``size`` now and run ``batch`` through each."""
        runners = [self._acquire(size) for _ in range(self.spec.per_size)]
        try:
            for runner in runners:
                for _ in range(iterations):
                    runner.run(batch[:size])
                runner.stats = np.zeros(5)  # the warm-up is not part of any test
        finally:
            for runner in runners:
                self._release(runner)

    def host_memory(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host array (numpy view of a pinned tensor): batches taken from it
        go to the GPU with no host copy (:meth:`run`, :meth:`run_rows`)."""
        torch = self.torch
        kind = torch.from_numpy(np.empty(0, dtype)).dtype
        array: np.ndarray = torch.empty(shape, dtype=kind, pin_memory=True).numpy()
        with self._cond:
            self._pinned = [p for p in self._pinned if p[2]() is not None]
            self._pinned.append((array.ctypes.data, array.nbytes, weakref.ref(array)))
        return array

    def pinned(self, array: np.ndarray) -> bool:
        """Whether ``array`` lies inside a live array from :meth:`host_memory`."""
        start, end = array.ctypes.data, array.ctypes.data + array.nbytes
        return any(
            at <= start and end <= at + size and ref() is not None for at, size, ref in self._pinned
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        runner = self._acquire(self._size_for(len(batch)))
        try:
            if batch.dtype == np.float32 and batch.flags.c_contiguous and self.pinned(batch):
                return runner.run_rows(self.torch.from_numpy(batch), range(len(batch)))
            return runner.run(batch)
        finally:
            self._release(runner)

    def run_rows(self, source: np.ndarray, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits of ``source[rows]``; ``source`` (float32, C order) from :meth:`host_memory`
        goes straight to the GPU, anything else is gathered on the host first."""
        if not (source.dtype == np.float32 and source.flags.c_contiguous and self.pinned(source)):
            return self.run(source[np.asarray(rows, dtype=np.intp)])
        runner = self._acquire(self._size_for(len(rows)))
        try:
            return runner.run_rows(self.torch.from_numpy(source), rows)
        finally:
            self._release(runner)

    def take_stats(self) -> dict[str, float]:
        """Where the time of the batches since the last call went, per batch, and reset."""
        with self._cond:
            total = sum((r.stats for r in self._all), np.zeros(5))
            for runner in self._all:
                runner.stats = np.zeros(5)
        batches = max(total[0], 1.0)
        return {
            "batches": float(total[0]),
            "host_copy_ms": 1e3 * total[1] / batches,
            "enqueue_ms": 1e3 * total[2] / batches,
            "wait_ms": 1e3 * total[3] / batches,
            "gpu_gathered": float(total[4]),  # batches the GPU gathered from mapped memory
        }

    def sizes(self) -> list[int]:
        with self._cond:
            return sorted(self._made)

    def _size_for(self, n: int) -> int:
        with self._cond:
            bigger = [s for s in self._made if s >= n]
        return min(bigger) if bigger else n

    def _acquire(self, size: int) -> CudaRunner:
        with self._cond:
            while not self._free.get(size):
                if self._made.get(size, 0) < self.spec.per_size:
                    self._made[size] = self._made.get(size, 0) + 1
                    break
                self._cond.wait()
            else:
                return self._free[size].pop()
        return self._make(size)

    def _make(self, size: int) -> CudaRunner:
        """A new runner (``_made`` already counts it; undone if making it fails)."""
        try:
            with self._make_lock:
                shared = None
                if self._streams:  # in turn: runners of a size spread over the streams
                    shared = self._streams[self._turn % len(self._streams)]
                    self._turn += 1
                runner = CudaRunner(self.torch, self.model, self.spec, size, shared)
        except BaseException:
            with self._cond:
                self._made[size] -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._all.append(runner)
        return runner

    def _release(self, runner: CudaRunner) -> None:
        with self._cond:
            self._free.setdefault(runner.size, []).append(runner)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            runners = [r for free in self._free.values() for r in free]
            self._free.clear()
            self._made.clear()
            self._all.clear()
        self.torch.cuda.synchronize()
        for runner in runners:
            runner.close()


class _Mapped:
    """``__cuda_array_interface__`` of a page-locked host tensor: the address the GPU
    reads it at (with unified addressing, the host address of memory ``cudaHostAlloc``
    made, which is mapped for every GPU)."""

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor  # kept alive by the view made from this (torch holds us)
        self.__cuda_array_interface__ = {
            "shape": tuple(tensor.shape),
            "typestr": "<f4",
            "data": (int(tensor.data_ptr()), False),
            "strides": None,
            "version": 2,
        }


def device_view(torch: Any, source: Any) -> Any | None:
    """A CUDA tensor over ``source`` (float32, C order, page-locked host memory) that GPU
    kernels read over the bus, or None where torch or the driver cannot map it (then the
    host gathers). Made per batch: it lives no longer than the call that reads it."""
    if source.dtype != torch.float32 or not source.is_contiguous() or not source.is_pinned():
        return None
    try:
        view = torch.as_tensor(_Mapped(source), device="cuda")
    except (RuntimeError, TypeError, ValueError):
        return None
    return view if view.is_cuda and int(view.data_ptr()) == int(source.data_ptr()) else None


def gather_rows(torch: Any, source: Any, rows: np.ndarray, out: Any) -> Any:
    """``out[:] = source[rows]`` by one ``index_select`` in C++ (torch's CPU threads, no
    GIL). Under ``inference_mode``: the runner's buffers are inference tensors, which
    torch refuses to update outside it (what the first H200 run of this path hit)."""
    with torch.inference_mode():
        torch.index_select(source, 0, torch.from_numpy(rows), out=out)
    return out


def consecutive_runs(rows: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(position in the batch, first row, count)`` for each run of consecutive ``rows``."""
    runs: list[tuple[int, int, int]] = []
    at = 0
    for row in rows:
        if runs and runs[-1][1] + runs[-1][2] == row:
            position, first, count = runs[-1]
            runs[-1] = (position, first, count + 1)
        else:
            runs.append((at, int(row), 1))
        at += 1
    return runs
