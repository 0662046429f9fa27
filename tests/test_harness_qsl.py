"""The QSL: limits, loading into RAM, gathering batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ckvision.config import RunConfig
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import ConfigError, DataError
from ckvision.harness.qsl import SampleLibrary, row_runs


def _library(n: int = 10, shape: tuple[int, ...] = (3, 2, 2), **config: Any) -> SampleLibrary:
    images = np.arange(n * int(np.prod(shape)), dtype=np.float32).reshape(n, *shape)
    return SampleLibrary(images, np.arange(n), RunConfig(**config))


def test_sizes() -> None:
    assert (_library().size, _library().performance_count) == (10, 10)
    small = _library(dataset_size=4, buffer_size=3)
    assert (small.size, small.performance_count, len(small.labels)) == (4, 3, 4)
    assert _library(n=2000).performance_count == 1024


def test_dataset_size_above_dataset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"CK_LOADGEN_DATASET_SIZE=11 .* \(10 samples\)"):
        _library(dataset_size=11)


def test_buffer_above_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"CK_LOADGEN_BUFFER_SIZE=5 .* samples in the run \(4\)"):
        _library(dataset_size=4, buffer_size=5)


def test_load_gather_unload() -> None:
    qsl = _library()
    qsl.load([7, 2, 5, 2])
    rows = qsl.rows([5, 7, 2])
    batch = qsl.gather(rows)
    np.testing.assert_array_equal(batch, qsl.images[[5, 7, 2]])
    out = np.empty((8, 3, 2, 2), np.float32)
    assert qsl.gather(qsl.rows([2, 5]), out).base is not None  # a view: consecutive rows
    np.testing.assert_array_equal(qsl.gather(qsl.rows([7, 2]), out), qsl.images[[7, 2]])
    np.testing.assert_array_equal(qsl.one(5)[0], qsl.images[5])
    qsl.unload([7, 2, 5])
    with pytest.raises(DataError, match="not loaded"):
        qsl.rows([5])
    with pytest.raises(DataError, match="sample 5, which is not loaded"):
        qsl.one(5)


def test_big_samples_are_gathered_row_by_row() -> None:
    qsl = _library(n=6, shape=(3, 128, 128))  # 192 KiB per sample
    qsl.load(range(6))
    rows = qsl.rows([4, 1, 3])
    np.testing.assert_array_equal(qsl.gather(rows), qsl.images[[4, 1, 3]])


def test_from_dataset(tiny_dataset: PreprocessedDataset) -> None:
    qsl = SampleLibrary.from_dataset(tiny_dataset, RunConfig())
    assert qsl.size == tiny_dataset.size and qsl.sample_shape == (3, 16, 16)
    assert qsl.first_batch(4).shape == (4, 3, 16, 16)


def test_a_new_load_forgets_the_rows_of_the_last() -> None:
    """Stale rows would silently feed one sample's pixels for another's."""
    qsl = _library()
    qsl.load([1, 2, 3])
    qsl.load([8, 3])
    np.testing.assert_array_equal(qsl.gather(qsl.rows([3, 8])), qsl.images[[3, 8]])
    for stale in (1, 2):
        with pytest.raises(DataError, match="^LoadGen issued a sample that is not loaded in RAM$"):
            qsl.rows([stale])
    qsl.unload([8, 3])
    qsl.load([0])
    with pytest.raises(DataError, match="sample 3, which is not loaded"):
        qsl.one(3)


def test_gather_views_only_consecutive_rows_and_fills_out_otherwise() -> None:
    qsl = _library()
    qsl.load(range(10))
    view = qsl.gather(qsl.rows([3, 4, 5, 6]))
    assert np.shares_memory(view, qsl._ram)
    out = np.zeros((8, 3, 2, 2), np.float32)
    for rows in ([3, 4, 6], [6, 5, 4], [3, 5], [2, 3, 4, 3]):
        got = qsl.gather(qsl.rows(rows), out)
        np.testing.assert_array_equal(got, qsl.images[rows])
        assert np.shares_memory(got, out)  # copied into the worker's buffer, not RAM
    assert qsl.first_batch(3).shape == (3, 3, 2, 2)
    assert qsl.first_batch(50).shape == (10, 3, 2, 2) and qsl.first_batch(0).shape[0] == 1


def test_rgb8_dataset_is_normalised_when_loaded(tmp_path: Any) -> None:
    """An rgb8 cache bound to a model feeds the QSL the model's layout and dtype; the
    normalisation happens in load(), the hot path only gathers RAM rows."""
    from ckvision.data.cache import write_rgb8_cache
    from ckvision.data.variation import Preprocessing
    from ckvision.models.contract import ModelContract

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    ds = write_rgb8_cache(
        tmp_path / "rgb8",
        name="t",
        kind="sample",
        source="generated",
        spec=Preprocessing(side=4, crop=1000),
        items=[(f"{i}", i) for i in range(6)],
        load=lambda f: pixels[int(f)],
    )
    contract = ModelContract(
        name="m",
        image_size=4,
        resize_size=4,
        mean=(0.5, 0.25, 0.0),
        std=(0.5, 0.25, 1.0),
        layout="NCHW",
    )
    qsl = SampleLibrary.from_dataset(ds.for_model(contract), RunConfig())
    assert (qsl.sample_shape, qsl.dtype) == ((3, 4, 4), np.float32)
    qsl.load([4, 1])
    got = qsl.gather(qsl.rows([1, 4]))
    expected = (pixels / 255.0 - np.array([0.5, 0.25, 0.0])) / np.array([0.5, 0.25, 1.0])
    expected = expected.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected[[1, 4]], rtol=1e-6, atol=1e-6)
    warm = qsl.first_batch(2)  # the warm-up batch is normalised too
    assert warm.dtype == np.float32
    np.testing.assert_allclose(warm, expected[:2], rtol=1e-6, atol=1e-6)


def test_images_and_labels_must_pair() -> None:
    with pytest.raises(DataError, match="^10 images but 9 labels$"):
        SampleLibrary(np.zeros((10, 3, 2, 2), np.float32), np.arange(9), RunConfig())


def test_row_runs_is_a_permutation_in_passes_of_ascending_rows() -> None:
    rows = np.array([5, 2, 5, 3, 2, 5, 4, 2])
    order = row_runs(rows)
    assert sorted(order.tolist()) == list(range(len(rows)))  # every sample, once
    # first occurrences ascending, then second occurrences, then third
    assert rows[order].tolist() == [2, 3, 4, 5, 2, 5, 2, 5]
    assert order.tolist()[:4] == [1, 3, 6, 0]  # each pass keeps LoadGen's order of a row
    assert row_runs(np.array([7])).tolist() == [0] and row_runs(np.array([], np.intp)).size == 0


def test_in_row_order_makes_most_offline_batches_views() -> None:
    """LoadGen's Offline query names each loaded sample many times in random order; queued
    in row order, most batches of 4 are views of RAM (random order: almost none)."""
    qsl = _library(n=300)
    qsl.load(range(0, 300, 2))  # RAM rows are the loaded indices' ascending order
    indices = np.random.default_rng(1).choice(np.arange(0, 300, 2), 3000)
    order = qsl.in_row_order(indices.tolist())
    assert sorted(order.tolist()) == list(range(3000))

    def views(queued: np.ndarray) -> float:
        batches = queued[: len(queued) // 4 * 4].reshape(-1, 4)
        return float(np.mean([np.shares_memory(qsl.gather(qsl.rows(b)), qsl.ram) for b in batches]))

    assert views(indices[order]) > 0.7 and views(indices) < 0.01
