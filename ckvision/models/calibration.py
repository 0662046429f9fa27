"""INT8 entropy calibration fed from dataset images through the inference preprocessing.

A :class:`CalibrationSource` names the calibration images and the callable that
preprocesses one file exactly as inference does (``ckvision.data.preprocess``'s
``preprocess_file(path, contract)``, bound to the model's contract). The calibrator
streams them in batches through one device buffer, and reads/writes the calibration
cache (``calibration.cache`` next to the engine) so a rebuild reuses it.

The same batches feed ONNX Runtime's static quantization (:func:`ort_calibration_reader`,
used by :mod:`ckvision.quantize`): one calibration path for TensorRT INT8 and ORT INT8.
TensorRT is imported only inside :func:`make_calibrator`, ONNX Runtime only inside
:func:`ort_calibration_reader`; the rest is pure Python.
TensorRT 10 deprecates implicit INT8 calibration in favour of explicit Q/DQ models but
still supports ``IInt8EntropyCalibrator2``; that is what ck-mlperf users know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ckvision.errors import ConfigError, DataError
from ckvision.models.engine_meta import write_bytes_atomic

if TYPE_CHECKING:
    import tensorrt as trt

    from ckvision.cuda import DeviceBuffer

__all__ = [
    "CalibrationSource",
    "CalibrationBatches",
    "make_calibrator",
    "ort_calibration_reader",
]

Loader = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class CalibrationSource:
    """Calibration images and how to preprocess one (same as inference)."""

    files: Sequence[str]
    load: Loader  # e.g. functools.partial(preprocess_file, contract=contract)
    batch_size: int = 8
    cache_path: Path | None = None  # default: <engine dir>/calibration.cache

    def __post_init__(self) -> None:
        if not self.files:
            raise ConfigError("INT8 calibration list is empty; give it dataset image paths")
        if self.batch_size < 1:
            raise ConfigError(f"calibration batch size {self.batch_size} must be >= 1")


class CalibrationBatches:
    """Iterates preprocessed float32 batches and handles the calibration cache file."""

    def __init__(self, source: CalibrationSource, cache_path: Path) -> None:
        self.source = source
        self.cache_path = cache_path
        self._batches: Iterator[np.ndarray] = self._iterate()

    def _iterate(self) -> Iterator[np.ndarray]:
        files, size = list(self.source.files), self.source.batch_size
        for start in range(0, len(files) - size + 1, size):  # whole batches only
            samples = []
            for name in files[start : start + size]:
                try:
                    samples.append(self.source.load(name))
                except (OSError, ValueError) as err:
                    raise DataError(f"calibration image {name}: {err}") from err
            yield np.ascontiguousarray(np.stack(samples), dtype=np.float32)

    def next_batch(self) -> np.ndarray | None:
        """The next batch, or None when the list is exhausted."""
        return next(self._batches, None)

    def rewind(self) -> None:
        """Start again from the first batch (a calibrator may read the list twice)."""
        self._batches = self._iterate()

    def read_cache(self) -> bytes | None:
        if self.cache_path.is_file():
            data = self.cache_path.read_bytes()
            return data or None
        return None

    def write_cache(self, data: bytes) -> None:
        write_bytes_atomic(self.cache_path, data)


def make_calibrator(
    source: CalibrationSource, cache_path: Path, log: Callable[[str], None]
) -> tuple[trt.IInt8EntropyCalibrator2, Callable[[], None]]:
    """An ``IInt8EntropyCalibrator2`` over ``source`` and the function that frees its
    device buffer (call it after the build). Needs TensorRT and a GPU."""
    import tensorrt as trt

    from ckvision.cuda import DeviceBuffer, memcpy_htod

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self, batches: CalibrationBatches) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = batches
            self.device: DeviceBuffer | None = None
            self.seen = 0

        def get_batch_size(self) -> int:
            return self.batches.source.batch_size

        def get_batch(self, names: list[str]) -> list[int]:
            batch = self.batches.next_batch()
            if batch is None:
                return []  # tells TensorRT calibration is done
            if self.device is None:
                self.device = DeviceBuffer(batch.nbytes)
            memcpy_htod(self.device.ptr, batch)
            self.seen += len(batch)
            log(f"INT8 calibration: {self.seen} images")
            return [self.device.ptr] * len(names)

        # The stub says Buffer; TensorRT also takes None for "no cache".
        def read_calibration_cache(self) -> Any:
            cached = self.batches.read_cache()
            if cached is not None:
                log(f"INT8 calibration: reusing {self.batches.cache_path}")
            return cached

        def write_calibration_cache(self, cache: Any) -> None:
            self.batches.write_cache(bytes(cache))
            log(f"INT8 calibration cache written to {self.batches.cache_path}")

        def free(self) -> None:
            if self.device is not None:
                self.device.free()

    calibrator = _EntropyCalibrator(CalibrationBatches(source, cache_path))
    return calibrator, calibrator.free


def ort_calibration_reader(source: CalibrationSource, input_name: str) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` over ``source``'s batches, feeding the
    model input ``input_name`` (static quantization reads it once per pass; ``rewind``
    starts again). Needs onnxruntime; no calibration cache (ORT keeps none)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = CalibrationBatches(source, Path("unused.cache"))
            self.seen = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = self.batches.next_batch()
            if batch is None:
                return None
            self.seen += len(batch)
            return {input_name: batch}

        def rewind(self) -> None:
            self.batches.rewind()

    return _Reader()
