"""JPEG in, pixels out: the encoded files of a dataset and the engines that preprocess them.

The JPEG-in mode (``CK_INPUT_FORMAT=jpeg``) serves LoadGen the *encoded* files of a
dataset and preprocesses them inside the measured path. Its dataset is an rgb8 cache
built from a folder of image files (an ImageNet-style folder: files + ``val_map.txt``,
see :mod:`ckvision.data.imagenet`): the cache's ``source`` is the folder and its
``files.txt`` the files, so the JPEG-in run reads exactly the files the offline run was
made from, with the same labels, and the offline pixels are the reference.

Engines, chosen by the ``using-*`` vocabulary of the dataset variations
(:data:`ENGINES`):

* ``pillow`` and ``opencv``: the offline cache's own functions
  (:func:`~ckvision.data.images.decode_rgb8`, then
  :func:`~ckvision.data.preprocess.resize_and_crop` with that library), so the pixels
  are the offline cache's, bit for bit; a thread pool works on the samples of a batch
  (Pillow and OpenCV release the GIL while decoding and resizing).
* ``dali``: NVIDIA DALI's decoder, resize (shorter side) and centre crop, CPU operators
  (``CK_DALI_DEVICE=gpu``: the nvJPEG ``mixed`` decoder and GPU operators). DALI is not
  bit-identical to Pillow or OpenCV: :func:`pixel_difference` measures it against the
  reference cache, and the run records it.

Every engine returns ``(N, side, side, 3)`` uint8 RGB, normalised to the model's
contract by :func:`~ckvision.data.preprocess.normalise`: one normalisation for both
modes. A sample that cannot be decoded fails with one line naming its file.
"""

from __future__ import annotations

import importlib
import io
import os
import queue
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ckvision.data.cache import PreprocessedDataset
from ckvision.data.images import decode_rgb8
from ckvision.data.preprocess import normalise, resize_and_crop
from ckvision.data.variation import LIBRARIES, Preprocessing
from ckvision.errors import ConfigError, DataError
from ckvision.models.contract import ModelContract

__all__ = [
    "ENGINES",
    "INPUT_TAG",
    "EncodedDataset",
    "Preprocessor",
    "PoolPreprocessor",
    "DaliPreprocessor",
    "make_preprocessor",
    "dali_available",
    "input_tags",
    "pixel_difference",
    "encoded_batch",
]

ENGINES = (*LIBRARIES, "dali")
INPUT_TAG = "input.jpeg"  # the CK tag of a JPEG-in run (never an MLPerf-closed result)
MAX_FILE_BYTES = 64 * 1024 * 1024  # an encoded file above this is refused (memory bomb)


def _threads(threads: int) -> int:
    return threads if threads > 0 else max(1, os.cpu_count() or 1)


class Preprocessor(Protocol):
    """Encoded files -> ``(N, side, side, 3)`` uint8 RGB."""

    name: str
    spec: Preprocessing

    def __call__(self, blobs: Sequence[bytes], names: Sequence[str]) -> np.ndarray: ...

    def prepare(self, callers: int) -> None:
        """Make what ``callers`` concurrent callers need before the measured path."""

    def close(self) -> None: ...


class PoolPreprocessor:
    """Pillow or OpenCV: the offline cache's functions, a thread pool over a batch."""

    def __init__(self, spec: Preprocessing, threads: int = 0) -> None:
        self.spec = spec
        self.name = spec.library
        self.threads = _threads(threads)
        self._pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix=f"ckvision-{self.name}")
            if self.threads > 1
            else None
        )

    def one(self, blob: bytes, name: str) -> np.ndarray:
        return resize_and_crop(decode_rgb8(io.BytesIO(blob), name), self.spec, name)

    def __call__(self, blobs: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        side = self.spec.side
        out = np.empty((len(blobs), side, side, 3), np.uint8)

        def put(i: int) -> None:
            out[i] = self.one(blobs[i], names[i])

        if self._pool is None or len(blobs) == 1:
            for i in range(len(blobs)):
                put(i)
        else:
            for done in [self._pool.submit(put, i) for i in range(len(blobs))]:
                done.result()  # the first failure raises, naming its file
        return out

    def prepare(self, callers: int) -> None:
        del callers  # the pool serves every caller

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def dali_available() -> str | None:
    """``None`` when DALI imports, else why not (one line)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        return (
            f"NVIDIA DALI is not installed ({err}); install the optional extra: "
            "pip install 'ckvision[dali]'"
        )
    return None


class DaliPreprocessor:
    """DALI: ``external_source`` of encoded bytes -> decoder -> resize -> centre crop.

    A pipeline serves one batch at a time: concurrent callers take one each from a
    free list (:meth:`prepare` builds them before the measured path), each with
    ``threads`` DALI worker threads and room for ``max_batch`` samples.
    """

    name = "dali"

    def __init__(
        self, spec: Preprocessing, max_batch: int, threads: int = 0, device: str = "cpu"
    ) -> None:
        why = dali_available()
        if why is not None:
            raise ConfigError(why)
        if device not in ("cpu", "gpu"):
            raise ConfigError(f"DALI device {device!r} unknown; use cpu or gpu")
        self.spec = spec
        self.max_batch = max(1, max_batch)
        self.threads = _threads(threads)
        self.device = device
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.built = 0

    def _build(self) -> Any:
        dali: Any = importlib.import_module("nvidia.dali")  # optional: typed as Any
        fn, types = dali.fn, dali.types

        interp = {
            "linear": types.INTERP_LINEAR,
            "area": types.INTERP_TRIANGULAR,
            "cubic": types.INTERP_CUBIC,
            "nearest": types.INTERP_NN,
        }[self.spec.interpolation]
        gpu = self.device == "gpu"
        spec = self.spec

        @dali.pipeline_def(  # type: ignore[untyped-decorator]
            batch_size=self.max_batch,
            num_threads=self.threads,
            device_id=0 if gpu else None,
            # fed and run per batch, LoadGen's samples in order; the SUT overlaps batches
            # instead (CK_PREPROCESS_PREFETCH: the next one forms on another thread)
            prefetch_queue_depth=1,
        )
        def pipeline() -> Any:
            jpegs = fn.external_source(name="jpegs", dtype=types.UINT8, no_copy=False)
            images = fn.decoders.image(
                jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB
            )
            images = fn.resize(images, resize_shorter=spec.resize, interp_type=interp)
            return fn.crop(images, crop=(spec.side, spec.side), out_of_bounds_policy="error")

        pipe = pipeline()
        pipe.build()
        return pipe

    def prepare(self, callers: int) -> None:
        while self.built < callers:
            self.built += 1
            self._free.put(self._build())

    def __call__(self, blobs: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        out = np.empty((len(blobs), self.spec.side, self.spec.side, 3), np.uint8)
        for start in range(0, len(blobs), self.max_batch):
            part = slice(start, start + self.max_batch)
            out[part] = self._run(blobs[part], names[part])
        return out

    def _run(self, blobs: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        try:
            pipe = self._free.get_nowait()
        except queue.Empty:
            pipe = self._build()
        try:
            pipe.feed_input("jpegs", [np.frombuffer(b, np.uint8) for b in blobs])
            (images,) = pipe.run()
            if self.device == "gpu":
                images = images.as_cpu()
            pixels = np.array(images.as_tensor())  # a copy: the pipeline reuses its buffer
        except Exception as err:  # noqa: BLE001 - DALI raises RuntimeError subclasses
            del pipe  # a pipeline that failed mid-batch is not reused
            raise DataError(_dali_failure(blobs, names, err)) from err
        self._free.put(pipe)
        return pixels

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait()
            except queue.Empty:
                return


def _dali_failure(blobs: Sequence[bytes], names: Sequence[str], err: Exception) -> str:
    """One line naming the file(s) DALI could not preprocess (Pillow says which)."""
    bad = []
    for blob, name in zip(blobs, names, strict=True):
        try:
            decode_rgb8(io.BytesIO(blob), name)
        except DataError:
            bad.append(name)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = f"image {bad[0]}" if len(bad) == 1 else f"{len(bad) or len(names)} images"
    return f"cannot use {where}: DALI failed ({first[:200]}); remove or replace it"


def make_preprocessor(
    spec: Preprocessing, engine: str, *, max_batch: int, threads: int = 0, device: str = "cpu"
) -> Preprocessor:
    """The engine ``engine`` (``pillow``, ``opencv``, ``dali``) for ``spec``'s geometry."""
    if engine not in ENGINES:
        raise ConfigError(
            f"preprocessing engine {engine!r} unknown; use one of "
            + ", ".join(f"using-{e}" for e in ENGINES)
        )
    if engine == "dali":
        return DaliPreprocessor(spec, max_batch, threads, device)
    if device != "cpu":
        raise ConfigError(f"CK_DALI_DEVICE={device} applies to using-dali only")
    return PoolPreprocessor(Preprocessing(**{**_fields(spec), "library": engine}), threads)


def _fields(spec: Preprocessing) -> dict[str, Any]:
    values = spec.as_dict()
    values.pop("resize")
    return values


@dataclass
class EncodedDataset:
    """The encoded files behind an rgb8 dataset cache, and the engine that preprocesses
    them for one model (see the module docstring)."""

    reference: PreprocessedDataset  # the offline cache, bound to the model
    folder: Path
    contract: ModelContract
    engine: str
    threads: int = 0
    device: str = "cpu"
    preprocessed_by: str = "client"  # "server": the Triton JPEG-in ensemble did it
    difference: dict[str, Any] | None = None  # vs the reference cache (measure_difference)
    _engine: Preprocessor | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        path: Path,
        contract: ModelContract,
        engine: str = "",
        *,
        threads: int = 0,
        device: str = "cpu",
    ) -> EncodedDataset:
        """The JPEG-in view of the rgb8 cache at ``path``; ``engine`` "" = the model's
        library. Refuses a cache with no folder of files behind it."""
        cache = PreprocessedDataset.open(Path(path))
        reference = cache.for_model(contract)
        folder = Path(str(cache.meta.get("source", "")))
        if cache.storage != "rgb8" or not folder.is_absolute() or not folder.is_dir():
            raise DataError(
                f"dataset {cache.name} has no folder of encoded files behind it "
                f"(source {cache.meta.get('source', '')!r}); JPEG input needs a dataset "
                "built from an image folder (ImageNet layout: files + val_map.txt), e.g. "
                "ck install package --tags=dataset,imagenet,preprocessed,full "
                "--env.IMAGENET_VAL_DIR=/data/imagenet/val"
            )
        engine = engine or contract.library
        if engine not in ENGINES:
            raise ConfigError(
                f"preprocessing engine {engine!r} unknown; use one of "
                + ", ".join(f"using-{e}" for e in ENGINES)
            )
        for name in cache.files:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise DataError(f"{path}: files.txt names {name!r}, not a file inside {folder}")
        return cls(reference, folder, contract, engine, threads, device)

    @property
    def name(self) -> str:
        return self.reference.name

    @property
    def kind(self) -> str:
        return self.reference.kind

    @property
    def path(self) -> Path:
        return self.reference.path

    @property
    def size(self) -> int:
        return self.reference.size

    @property
    def labels(self) -> np.ndarray:
        return self.reference.labels

    @property
    def files(self) -> tuple[str, ...]:
        return self.reference.files

    @property
    def storage(self) -> str:
        return "encoded"

    @property
    def spec(self) -> Preprocessing:
        spec = self.reference.spec
        assert spec is not None  # open() refuses anything but rgb8
        return spec

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What the record says about this input: the geometry and the engine (the run
        record adds ``preprocessing_in_measured_path``)."""
        return {
            **self.spec.as_dict(),
            "engine": self.engine if self.preprocessed_by == "client" else "server",
            "preprocessed_by": self.preprocessed_by,
            "tags": [*self.spec.tags(), f"using-{self.engine}", INPUT_TAG]
            if self.preprocessed_by == "client"
            else [*self.spec.tags(), INPUT_TAG, "preprocessed-by-server"],
            **({"dali_device": self.device} if self.engine == "dali" else {}),
            **({"reference_difference": self.difference} if self.difference else {}),
        }

    def check_matches(self, contract: ModelContract) -> None:
        self.reference.check_matches(contract)

    def read(self, index: int) -> bytes:
        """The encoded file of sample ``index``, read whole (one line if it cannot be)."""
        path = self.folder / self.files[index]
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise DataError(
                    f"cannot use image {path}: {size} bytes is over the "
                    f"{MAX_FILE_BYTES} byte limit; remove or replace it"
                )
            return path.read_bytes()
        except OSError as err:
            raise DataError(f"cannot read image {path}: {err.strerror or err}") from err

    def preprocessor(self, max_batch: int) -> Preprocessor:
        """The engine, made once (DALI pipelines are sized for ``max_batch``)."""
        if self._engine is None:
            self._engine = make_preprocessor(
                self.spec,
                self.engine,
                max_batch=max_batch,
                threads=self.threads,
                device=self.device,
            )
        return self._engine

    def measure_difference(self, count: int = 64, max_batch: int = 8) -> dict[str, Any]:
        """This engine's pixels of the first ``count`` samples against the reference cache
        (kept for the record; outside any measured path)."""
        count = max(1, min(count, self.size))
        blobs = [self.read(i) for i in range(count)]
        pixels = self.preprocessor(max_batch)(blobs, list(self.files[:count]))
        reference = np.asarray(self.reference.images.pixels[:count])
        self.difference = {
            "reference": f"offline cache ({self.spec.library})",
            **pixel_difference(pixels, reference),
        }
        return self.difference

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """rgb8 pixels -> the model's input, the normalisation of the offline mode."""
        return normalise(pixels, self.contract)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def encoded_batch(blobs: Sequence[bytes]) -> np.ndarray:
    """Encoded files as one batch for a backend that takes them itself (a Triton JPEG-in
    ensemble preprocesses on the server): an (N, 1) array of bytes, one file per item."""
    out = np.empty((len(blobs), 1), dtype=object)
    out[:, 0] = list(blobs)
    return out


def input_tags(env: Mapping[str, str]) -> list[str]:
    """The CK tags a recorded JPEG-in run carries (``input.jpeg``, ``using-<engine>``;
    none for a preprocessed run), from its ``CK_INPUT_FORMAT`` / ``CK_PREPROCESS_ENGINE``."""
    if env.get("CK_INPUT_FORMAT", "").strip().lower() != "jpeg":
        return []
    engine = env.get("CK_PREPROCESS_ENGINE", "").strip()
    return [INPUT_TAG, *([f"using-{engine}"] if engine in ENGINES else [])]


def pixel_difference(pixels: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """How far ``pixels`` are from ``reference`` (both (N, H, W, 3) uint8)."""
    if pixels.shape != reference.shape:
        raise DataError(f"pixels {pixels.shape} and reference {reference.shape} differ in shape")
    diff = np.abs(pixels.astype(np.int16) - reference.astype(np.int16))
    return {
        "samples": int(len(pixels)),
        "mean_abs": round(float(diff.mean()), 4),
        "max_abs": int(diff.max()) if diff.size else 0,
        "identical_pixels_pct": round(100.0 * float((diff == 0).mean()), 3),
        "within_2_pct": round(100.0 * float((diff <= 2).mean()), 3),
        "identical_samples": int(sum(not d.any() for d in diff)),
    }
