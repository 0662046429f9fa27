"""The CUDA runner pool's bookkeeping, on CPU, with a fake GPU runner (named as such).

What a bug would break: two threads sharing one runner's pinned buffers at once, a short
batch making a new runner mid-test instead of padding, a thread-bound runner never given
back (the next test's worker then waits forever), a staged batch copied twice.
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

    def __init__(self, torch: Any, model: Any, spec: RunnerSpec, size: int) -> None:
        self.size = size
        self.host_in_np = np.zeros((size, *spec.sample_shape), np.float32)
        self.busy = threading.Lock()
        self.overlaps = 0
        self.copies = 0
        self.stats = np.zeros(4)
        FakeGpuRunner.made.append(self)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            self.busy.acquire()
        try:
            n = len(batch)
            if batch.ctypes.data != self.host_in_np.ctypes.data:
                self.copies += 1
                self.host_in_np[:n] = batch
            time.sleep(0.001)
            self.stats += (1, 0, 0, 0)
            return self.host_in_np[:n].reshape(n, -1).sum(axis=1, keepdims=True)
        finally:
            self.busy.release()

    def close(self) -> None:
        pass


class _FakeTorch:
    class cuda:  # noqa: N801 - mirrors torch.cuda
        @staticmethod
        def synchronize() -> None:
            pass


@pytest.fixture()
def pool(monkeypatch: pytest.MonkeyPatch) -> RunnerPool:
    FakeGpuRunner.made = []
    monkeypatch.setattr(torch_cuda, "CudaRunner", FakeGpuRunner)
    spec = RunnerSpec(sample_shape=SHAPE, dtype=None, channels_last=False, graphs=True, per_size=2)
    return RunnerPool(_FakeTorch(), model=None, spec=spec)


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

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(FakeGpuRunner.made) == 2  # per_size: the other threads waited for a free one
    assert sum(r.overlaps for r in FakeGpuRunner.made) == 0
    assert pool.take_stats()["batches"] == 80
    assert pool.take_stats()["batches"] == 0  # taken means reset


def test_short_batch_is_padded_to_a_prepared_size(pool: RunnerPool) -> None:
    pool.prepare(16, _batch(16, 1), iterations=1)
    batch = _batch(5, 2)
    got = pool.run(batch)
    assert got.shape == (5, 1)
    assert pool.sizes() == [16]  # no runner of size 5 was made mid-test


def test_bound_runner_is_the_threads_staging_buffer_and_comes_back(pool: RunnerPool) -> None:
    pool.prepare(4, _batch(4, 3), iterations=1)
    with pool.bound(4) as runner:
        staged = runner.host_in_np
        staged[:3] = _batch(3, 4)  # the harness gathers straight into it
        copies = runner.copies
        got = pool.run(staged[:3])
        assert runner.copies == copies  # staged: not copied again
        assert np.allclose(got[:, 0], staged[:3].reshape(3, -1).sum(axis=1))
    # given back: two threads can each bind one again without waiting or making more
    made = len(FakeGpuRunner.made)
    with pool.bound(4) as first, pool.bound(4) as second:
        assert first is not second
    assert len(FakeGpuRunner.made) == made


def test_binding_more_threads_than_runners_makes_more(pool: RunnerPool) -> None:
    pool.prepare(2, _batch(2, 5), iterations=1)
    with pool.bound(2), pool.bound(2), pool.bound(2) as third:
        assert third in FakeGpuRunner.made
    assert len(FakeGpuRunner.made) == 3


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "graphs"), [("fp32", False), ("fp16", True)])
def test_real_cuda_runners_match_cpu(tmp_path: Any, precision: str, graphs: bool) -> None:
    """On a GPU: staged, padded and shared-pool batches all give the CPU model's logits."""
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
    options = BackendOptions(device="cuda", precision=precision, cuda_graphs=graphs, streams=2)
    with create_backend("pytorch", script, contract, options) as backend:
        backend.warmup(batch)
        np.testing.assert_allclose(backend.predict(batch), want, rtol=tol, atol=tol)
        np.testing.assert_allclose(backend.predict(batch[:3]), want[:3], rtol=tol, atol=tol)
        with backend.staging(8) as staged:
            assert staged is not None and staged.shape == batch.shape
            staged[:5] = batch[:5]
            got = backend.predict(staged[:5])
        np.testing.assert_allclose(got, want[:5], rtol=tol, atol=tol)
        assert backend.cuda_stats()["batches"] >= 3
