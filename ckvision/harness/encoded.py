"""The JPEG-in query sample library: LoadGen's samples as encoded files, preprocessed
inside the measured path.

:meth:`EncodedSampleLibrary.load` reads the encoded files LoadGen asks for into RAM
(bytes, nothing decoded), so the hot path never touches the disk. The SUT forms a batch
through :meth:`~EncodedSampleLibrary.one` / :meth:`~EncodedSampleLibrary.gather`, as for
the offline caches; here forming it *is* the preprocessing (decode, resize, crop by the
chosen engine, then the model's normalisation), so it is timed in every sample's latency
and shows as the ``form`` share of the ledger's breakdown. A file that cannot be decoded
raises :class:`~ckvision.errors.DataError` naming it: the SUT completes the batch empty
and the run fails with that line after LoadGen has every response.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ckvision.config import RunConfig, Scenario
from ckvision.data.encoded import EncodedDataset, Preprocessor, encoded_batch
from ckvision.errors import ConfigError, DataError
from ckvision.harness.qsl import DEFAULT_BUFFER, SampleLibrary

__all__ = ["EncodedSampleLibrary"]


class EncodedSampleLibrary(SampleLibrary):
    """The encoded files of ``dataset`` for one LoadGen run (see the module docstring)."""

    encoded = True

    def __init__(
        self, dataset: EncodedDataset, config: RunConfig, *, passthrough: bool = False
    ) -> None:
        """``passthrough``: the backend takes the encoded files themselves (the Triton
        JPEG-in ensemble preprocesses on the server): batches are (N, 1) arrays of bytes."""
        available = dataset.size
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
        self.dataset = dataset
        self.labels = np.asarray(dataset.labels[:size], dtype=np.int64)
        self.size = size
        self.performance_count = buffer
        contract = dataset.contract
        self.sample_shape = tuple(contract.input_shape(1)[1:])
        self.dtype = np.dtype(contract.input_dtype)
        batch = 1 if config.scenario is Scenario.SINGLE_STREAM else config.batch_size
        self.passthrough = passthrough
        self.preprocess: Preprocessor | None = None
        if passthrough:
            dataset.preprocessed_by = "server"
        else:
            self.preprocess = dataset.preprocessor(batch)
            self.preprocess.prepare(
                1 if config.scenario is Scenario.SINGLE_STREAM else config.workers
            )
        self._blobs: list[bytes] = []
        self._names: list[str] = []
        self._row = np.full(size, -1, dtype=np.intp)
        self._ram = np.empty((0, *self.sample_shape), dtype=self.dtype)  # unused: no rows

    # -- LoadGen callbacks -------------------------------------------------------------
    def load(self, indices: Sequence[int]) -> None:
        """Read the encoded files LoadGen will issue into RAM."""
        wanted = np.unique(np.asarray(indices, dtype=np.intp))
        self.unload(indices)
        blobs = [self.dataset.read(int(i)) for i in wanted]
        self._names = [self.dataset.files[int(i)] for i in wanted]
        self._blobs = blobs
        self._row[wanted] = np.arange(len(wanted), dtype=np.intp)

    def unload(self, indices: Sequence[int]) -> None:
        del indices
        self._row.fill(-1)
        self._blobs = []
        self._names = []

    # -- hot path ------------------------------------------------------------------------
    def one(self, index: int) -> np.ndarray:
        row = int(self._row[index])
        if row < 0:
            raise DataError(f"LoadGen issued sample {index}, which is not loaded in RAM")
        return self._form([row])

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        del out  # the engine allocates its batch
        return self._form(rows.tolist())

    def _form(self, rows: Sequence[int]) -> np.ndarray:
        return self._batch([self._blobs[r] for r in rows], [self._names[r] for r in rows])

    def _batch(self, blobs: list[bytes], names: list[str]) -> np.ndarray:
        if self.preprocess is None:  # passthrough: the server preprocesses
            return encoded_batch(blobs)
        return self.dataset.model_input(self.preprocess(blobs, names))

    def first_batch(self, n: int) -> np.ndarray:
        """The first ``n`` samples, read and preprocessed (for warm-up: it also builds
        the engine's pipeline on this thread)."""
        count = max(1, min(n, self.size))
        blobs = [self.dataset.read(i) for i in range(count)]
        return self._batch(blobs, list(self.dataset.files[:count]))
