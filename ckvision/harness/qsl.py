"""The query sample library: which samples exist, and the ones LoadGen asked to hold in RAM.

LoadGen names samples by index. :meth:`SampleLibrary.load` copies the requested rows
out of the memory-mapped dataset into one contiguous in-RAM array (allocated by the
backend's ``host_memory``: page-locked for a GPU) and records where each index landed,
so the hot path (:meth:`SampleLibrary.gather`, or the backend's own row copies to its
device) only reads RAM, never disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ckvision.config import RunConfig
from ckvision.data.cache import PreprocessedDataset, release_mapped_pages
from ckvision.errors import ConfigError, DataError

__all__ = ["SampleLibrary", "DEFAULT_BUFFER", "gather_rows", "row_runs"]

DEFAULT_BUFFER = 1024  # performance sample count when CK_LOADGEN_BUFFER_SIZE is unset
_ROW_COPY_BYTES = 64 * 1024  # samples at least this big are gathered row by row
_LOAD_CHUNK = 256  # samples read from the dataset at a time by load()


class SampleLibrary:
    """Samples ``images[:size]`` with their ImageNet ``labels``, for one LoadGen run."""

    encoded = False  # True: samples are encoded files, preprocessed as batches form

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        config: RunConfig,
        allocate: Callable[[tuple[int, ...], Any], np.ndarray] = np.empty,
    ) -> None:
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")
        available = len(images)
        size = config.dataset_size or available
        if size > available:
            raise ConfigError(
                f"CK_LOADGEN_DATASET_SIZE={size} is larger than the dataset ({available} samples)"
            )
        buffer = config.buffer_size or min(size, DEFAULT_BUFFER)
        if buffer > size:
            raise ConfigError(
                f"CK_LOADGEN_BUFFER_SIZE={buffer} is larger than the samples in the run ({size})"
            )
        self.images = images[:size]
        self.labels = np.asarray(labels[:size], dtype=np.int64)
        self.size = size
        self.performance_count = buffer
        self.sample_shape: tuple[int, ...] = tuple(images.shape[1:])
        self.dtype = images.dtype
        self._allocate = allocate
        self._ram: np.ndarray = np.empty((0, *self.sample_shape), dtype=self.dtype)
        self._row = np.full(size, -1, dtype=np.intp)

    @classmethod
    def from_dataset(
        cls,
        dataset: PreprocessedDataset,
        config: RunConfig,
        allocate: Callable[[tuple[int, ...], Any], np.ndarray] = np.empty,
    ) -> SampleLibrary:
        return cls(dataset.images, dataset.labels, config, allocate)

    @property
    def sample_bytes(self) -> int:
        """The bytes of one sample in RAM."""
        return int(np.prod(self.sample_shape)) * np.dtype(self.dtype).itemsize

    @property
    def ram(self) -> np.ndarray:
        """The loaded samples, in the order :meth:`rows` gives."""
        return self._ram

    # -- LoadGen callbacks -------------------------------------------------------------
    def load(self, indices: Sequence[int]) -> None:
        """Copy the samples LoadGen will issue into one contiguous RAM array."""
        wanted = np.unique(np.asarray(indices, dtype=np.intp))
        self._row.fill(-1)
        self._ram = np.empty((0, *self.sample_shape), dtype=self.dtype)  # the old one goes
        ram = self._allocate((len(wanted), *self.sample_shape), self.dtype)
        for start in range(0, len(wanted), _LOAD_CHUNK):  # bounded temporary memory
            ram[start : start + _LOAD_CHUNK] = self.images[wanted[start : start + _LOAD_CHUNK]]
        release_mapped_pages(self.images)  # RSS: the loaded set, not every page ever read
        self._ram = ram
        self._row[wanted] = np.arange(len(wanted), dtype=np.intp)

    def unload(self, indices: Sequence[int]) -> None:
        del indices  # LoadGen unloads the whole set it loaded
        self._row.fill(-1)
        self._ram = np.empty((0, *self.sample_shape), dtype=self.dtype)

    # -- hot path ------------------------------------------------------------------------
    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """RAM rows of sample ``indices``; raises if one was not loaded."""
        rows = self._row[np.asarray(indices, dtype=np.intp)]
        if rows.min() < 0:
            raise DataError("LoadGen issued a sample that is not loaded in RAM")
        return rows

    def one(self, index: int) -> np.ndarray:
        """Sample ``index`` as a batch of one: a view of RAM, no copy."""
        row = int(self._row[index])
        if row < 0:
            raise DataError(f"LoadGen issued sample {index}, which is not loaded in RAM")
        return self._ram[row : row + 1]

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The batch of RAM ``rows``: a view when they are consecutive, else a copy (into
        ``out`` when given, to spare an allocation per batch)."""
        return gather_rows(self._ram, rows, out)

    def in_row_order(self, indices: Sequence[int]) -> np.ndarray:
        """The order to queue one query's samples ``indices`` in (positions into them): in
        runs of consecutive RAM rows, so that most batches are views of RAM, as a loop
        over a dataset reads it, not copies of scattered rows (:func:`row_runs`)."""
        return row_runs(self._row[np.asarray(indices, dtype=np.intp)])

    def first_batch(self, n: int) -> np.ndarray:
        """The first ``n`` samples of the run, read from the dataset (for warm-up)."""
        return np.ascontiguousarray(self.images[: max(1, min(n, self.size))])


def gather_rows(ram: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The batch of ``ram``'s ``rows``: a view when they are consecutive, else a copy (into
    ``out`` when given). The one way a batch is formed on the host (the SUT's, the probe's)."""
    n = len(rows)
    first = int(rows[0])
    if int(rows[-1]) - first == n - 1 and (n < 3 or _consecutive(rows)):
        return ram[first : first + n]
    dest = np.empty((n, *ram.shape[1:]), ram.dtype) if out is None else out[:n]
    if ram[0].nbytes >= _ROW_COPY_BYTES:
        for i, row in enumerate(rows.tolist()):  # row by row: ~3x numpy's take for big rows
            dest[i] = ram[row]
    else:
        np.take(ram, rows, axis=0, out=dest)
    return dest


def row_runs(rows: np.ndarray) -> np.ndarray:
    """Positions into ``rows`` that put them in runs of consecutive rows: every row's first
    occurrence in ascending order, then every row's second, and so on (LoadGen's Offline
    query names each loaded sample many times, in random order; the order of a query's
    samples is the SUT's to choose). A gather then copies only the batches that straddle
    a gap: measured on 2 vCPU, INT8 EfficientNet-Lite0, batch 4, the 2.4 MB copy of four
    random rows was 357 of the 495 us a batch spent outside ``session.run``."""
    n = len(rows)
    if n < 2:
        return np.arange(n)
    by_row = np.argsort(rows, kind="stable")
    ordered = rows[by_row]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lengths = np.diff(np.r_[starts, n])
    occurrence = np.empty(n, dtype=np.intp)
    occurrence[by_row] = np.arange(n) - np.repeat(starts, lengths)
    return np.lexsort((rows, occurrence))


def _consecutive(rows: np.ndarray) -> bool:
    return bool(np.all(np.diff(rows) == 1))
