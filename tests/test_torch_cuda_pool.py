"""The CUDA runner pool's bookkeeping, on CPU, with a fake GPU runner (named as such).

What a bug would break: two threads sharing one runner's pinned buffers at once, a short
batch making a new runner mid-test instead of padding, a batch in page-locked memory
copied on the host anyway (or one in plain memory taken for page-locked), rows of a batch
out of order.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from ckvision.backends import torch_cuda
from ckvision.backends.torch_cuda import RunnerPool, RunnerSpec

pytestmark = pytest.mark.timeout(60)
SHAPE = (3, 4, 4)


class FakeGpuRunner:
    """Stands in for a GPU runner: logits = per-row sums; records overlapping use."""

    made: list[FakeGpuRunner] = []

    def __init__(
        self, torch: Any, model: Any, spec: RunnerSpec, size: int, stream: Any = None
    ) -> None:
        self.size = size
        self.stream = stream  # None: a stream of its own
        self.host_in_np = np.zeros((size, *spec.sample_shape), np.float32)
        self.busy = threading.Lock()
        self.overlaps = 0
        self.copies = 0
        self.stats = np.zeros(5)
        FakeGpuRunner.made.append(self)

    def run_rows(self, source: np.ndarray, rows: Any) -> np.ndarray:
        """Rows straight from (fake) page-locked memory: no host copy."""
        self.direct = getattr(self, "direct", 0) + 1
        runs = torch_cuda.consecutive_runs(list(rows))
        batch = np.concatenate([source[first : first + count] for _at, first, count in runs])
        return self._logits(batch)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.copies += 1
        return self._logits(batch)

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            self.busy.acquire()
        try:
            n = len(batch)
            self.host_in_np[:n] = batch
            time.sleep(0.001)
            self.stats += (1, 0, 0, 0, 0)
            return self.host_in_np[:n].reshape(n, -1).sum(axis=1, keepdims=True)
        finally:
            self.busy.release()

    def close(self) -> None:
        pass


class _FakeTorch:
    """torch as the pool uses it; "pinned" memory is plain numpy here."""

    class cuda:  # noqa: N801 - mirrors torch.cuda
        @staticmethod
        def synchronize() -> None:
            pass

        class Stream:  # noqa: D106 - a fake stream: only its identity matters here
            pass

    class _Tensor:
        def __init__(self, array: np.ndarray) -> None:
            self.array = array
            self.dtype = array.dtype

        def numpy(self) -> np.ndarray:
            return self.array

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> Any:
        return array if array.size else cls._Tensor(array)

    @classmethod
    def empty(cls, shape: tuple[int, ...], dtype: Any, pin_memory: bool) -> Any:
        assert pin_memory
        return cls._Tensor(np.zeros(shape, dtype))


@pytest.fixture()
def pool(monkeypatch: pytest.MonkeyPatch) -> RunnerPool:
    FakeGpuRunner.made = []
    monkeypatch.setattr(torch_cuda, "CudaRunner", FakeGpuRunner)
    spec = RunnerSpec(sample_shape=SHAPE, dtype=None, channels_last=False, graphs=True, per_size=2)
    return RunnerPool(_FakeTorch(), model=None, spec=spec)


def _at_once(work: Any, count: int) -> None:
    """``work(0) .. work(count - 1)`` on threads of their own at once; back when all end."""
    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _batch(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def test_threads_never_share_a_runner_and_results_match(pool: RunnerPool) -> None:
    pool.prepare(8, _batch(8, 0), iterations=1)
    errors: list[str] = []

    def work(seed: int) -> None:
        for i in range(20):
            batch = _batch(8, seed * 100 + i)
            got = pool.run(batch)
            if not np.allclose(got[:, 0], batch.reshape(8, -1).sum(axis=1), atol=1e-4):
                errors.append(f"thread {seed} batch {i}: wrong logits")

    _at_once(work, 4)
    assert not errors
    assert len(FakeGpuRunner.made) == 2  # per_size: the other threads waited for a free one
    assert sum(r.overlaps for r in FakeGpuRunner.made) == 0
    assert pool.take_stats()["batches"] == 80
    assert pool.take_stats()["batches"] == 0  # taken means reset


@pytest.mark.parametrize(("shared", "distinct"), [(0, 0), (1, 1), (2, 2)])
def test_runners_share_the_pools_streams_when_asked(
    monkeypatch: pytest.MonkeyPatch, shared: int, distinct: int
) -> None:
    """CK_CUDA_STREAMS=N: the runners of every size run on the pool's N streams, in turn
    (back to back on one with N=1); 0: each runner on a stream of its own (None here)."""
    FakeGpuRunner.made = []
    monkeypatch.setattr(torch_cuda, "CudaRunner", FakeGpuRunner)
    spec = RunnerSpec(SHAPE, None, False, True, per_size=4, shared_streams=shared)
    pool = RunnerPool(_FakeTorch(), model=None, spec=spec)
    pool.prepare(8, _batch(8, 0), iterations=1)
    pool.prepare(2, _batch(2, 0), iterations=1)
    streams = [r.stream for r in FakeGpuRunner.made]
    assert len(streams) == 8
    if shared:
        assert len({id(s) for s in streams}) == distinct
        assert all(isinstance(s, _FakeTorch.cuda.Stream) for s in streams)
        assert (streams[1] is streams[0]) is (shared == 1)  # in turn over the N streams
        assert streams[2] is streams[0]
    else:
        assert streams == [None] * 8


def test_short_batch_is_padded_to_a_prepared_size(pool: RunnerPool) -> None:
    pool.prepare(16, _batch(16, 1), iterations=1)
    batch = _batch(5, 2)
    got = pool.run(batch)
    assert got.shape == (5, 1)
    assert pool.sizes() == [16]  # no runner of size 5 was made mid-test


def test_pinned_batches_and_rows_go_straight_to_the_gpu(pool: RunnerPool) -> None:
    pool.prepare(8, _batch(8, 3), iterations=1)
    runner = FakeGpuRunner.made[0]
    ram = pool.host_memory((20, *SHAPE), np.float32)
    assert pool.pinned(ram) and pool.pinned(ram[5:6])
    ram[:] = _batch(20, 4)
    copies = sum(r.copies for r in FakeGpuRunner.made)
    rows = [7, 8, 9, 2, 15, 16, 0, 1]
    got = pool.run_rows(ram, rows)
    np.testing.assert_allclose(got[:, 0], ram[rows].reshape(8, -1).sum(axis=1), rtol=1e-5)
    one = pool.run(ram[5:6])  # a SingleStream sample: a view of page-locked memory
    np.testing.assert_allclose(one[:, 0], ram[5:6].reshape(1, -1).sum(axis=1), rtol=1e-5)
    assert sum(r.copies for r in FakeGpuRunner.made) == copies  # nothing copied on the host
    assert sum(getattr(r, "direct", 0) for r in FakeGpuRunner.made) == 2
    assert runner in FakeGpuRunner.made


def test_plain_memory_is_copied_to_the_pinned_input_first(pool: RunnerPool) -> None:
    pool.prepare(8, _batch(8, 5), iterations=1)
    plain = _batch(20, 6)
    assert not pool.pinned(plain)
    ram = pool.host_memory((20, *SHAPE), np.float32)
    assert not pool.pinned(np.concatenate([ram, ram]))  # a copy is plain memory
    got = pool.run_rows(plain, [3, 1])
    np.testing.assert_allclose(got[:, 0], plain[[3, 1]].reshape(2, -1).sum(axis=1), rtol=1e-5)
    assert sum(r.copies for r in FakeGpuRunner.made) == 2 + 1  # warm-up: 1 per runner; then 1
    del ram  # freed: the pool forgets it and takes nothing for page-locked any more


def test_gather_rows_into_an_inference_tensor_with_real_torch() -> None:
    """The runner's pinned input is made under inference_mode; the gather must work on it
    from a worker thread outside inference_mode (on CPU tensors here: same rule)."""
    torch = pytest.importorskip("torch")
    with torch.inference_mode():
        out = torch.zeros((4, *SHAPE))
    source = torch.from_numpy(_batch(10, 7))
    rows = np.array([9, 0, 4, 4], dtype=np.int64)
    got = torch_cuda.gather_rows(torch, source, rows, out[:4])
    np.testing.assert_array_equal(got.numpy(), source.numpy()[rows])
    assert got.data_ptr() == out.data_ptr()  # into the buffer given, no new allocation


def test_memory_the_gpu_cannot_map_is_gathered_on_the_host() -> None:
    """Plain (not page-locked) or non-float32 host memory gets no GPU view: the runner
    falls back to the host gather instead of handing the GPU an address it cannot read."""
    torch = pytest.importorskip("torch")
    assert torch_cuda.device_view(torch, torch.zeros((4, *SHAPE))) is None
    assert torch_cuda.device_view(torch, torch.zeros((4, *SHAPE), dtype=torch.float16)) is None
    assert torch_cuda.device_view(torch, torch.zeros((4, 8))[:, ::2]) is None


def test_consecutive_runs() -> None:
    assert torch_cuda.consecutive_runs([]) == []
    assert torch_cuda.consecutive_runs([4]) == [(0, 4, 1)]
    assert torch_cuda.consecutive_runs([3, 4, 5, 9, 10, 2, 4]) == [
        (0, 3, 3),
        (3, 9, 2),
        (5, 2, 1),
        (6, 4, 1),
    ]
    assert torch_cuda.consecutive_runs(range(5)) == [(0, 0, 5)]


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("precision", "graphs", "shared"), [("fp32", False, 0), ("fp16", True, 0), ("fp32", True, 1)]
)
def test_real_cuda_runners_match_cpu(
    tmp_path: Any, precision: str, graphs: bool, shared: int
) -> None:
    """On a GPU: padded, shared-pool and page-locked row batches give the CPU model's
    logits, with each runner on its own stream or all on one shared stream (graphs
    captured on the runner's own stream, replayed on the shared one)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    from ckvision.backends.base import BackendOptions
    from ckvision.backends.registry import create_backend
    from ckvision.models.contract import ModelContract

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    ).eval()
    script = tmp_path / "tiny.pt"
    torch.jit.trace(model, torch.zeros(1, 3, 16, 16)).save(str(script))
    contract = ModelContract(name="tiny", image_size=16, resize_size=16, num_classes=5)
    batch = np.random.default_rng(3).standard_normal((8, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(batch)).numpy()
    tol = 2e-2 if precision == "fp16" else 1e-4
    options = BackendOptions(
        device="cuda", precision=precision, cuda_graphs=graphs, streams=2, shared_streams=shared
    )
    with create_backend("pytorch", script, contract, options) as backend:
        backend.warmup(batch)
        np.testing.assert_allclose(backend.predict(batch), want, rtol=tol, atol=tol)
        np.testing.assert_allclose(backend.predict(batch[:3]), want[:3], rtol=tol, atol=tol)
        ram = backend.host_memory(batch.shape, np.float32)
        ram[:] = batch
        rows = np.array([6, 7, 2, 0, 1])
        np.testing.assert_allclose(backend.predict_rows(ram, rows), want[rows], rtol=tol, atol=tol)
        np.testing.assert_allclose(backend.predict(ram[4:5]), want[4:5], rtol=tol, atol=tol)
        wrong: list[str] = []

        def work(seed: int) -> None:  # workers at once: their runners share the streams
            rng = np.random.default_rng(seed)
            for _ in range(10):
                picked = rng.integers(0, len(batch), 4)
                got = backend.predict_rows(ram, picked)
                if not np.allclose(got, want[picked], rtol=tol, atol=tol):
                    wrong.append(f"worker {seed}: rows {picked.tolist()}")

        _at_once(work, 3)
        assert not wrong
        stats = backend.cuda_stats()
        assert stats["batches"] >= 3
        # the row batch was gathered by the GPU from the page-locked samples (mapped), not
        # on the host: the path that reads them over the bus is the one checked above
        assert stats["gpu_gathered"] >= 1
