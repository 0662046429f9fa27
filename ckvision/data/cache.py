"""The preprocessed-dataset cache: one memory-mapped array plus labels and metadata.

Layout of a cache directory (written atomically, see :func:`write_cache`)::

    images.npy     (N, side, side, 3) uint8 RGB ("rgb8", shared by every model whose
                   spatial contract matches), or, for caches made for one model
                   ("contract" storage), (N, 3, H, W) / (N, H, W, 3) in its dtype
    labels.txt     one ImageNet class index (0..999) per line
    files.txt      the source file of each sample, one per line
    dataset.json   {"name", "size", "kind", "source", "storage", "preprocessing": {...}}

Samples are served from ``images.npy`` through ``numpy.load(mmap_mode="r")``, never
from per-image files. An rgb8 cache is bound to a model with
:meth:`PreprocessedDataset.for_model`: its ``images`` then normalise the rows they
return (mean/std, layout, dtype from the model's contract), so the program normalises
exactly the samples LoadGen asks to load, once, when it loads them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.data.variation import Preprocessing
from ckvision.errors import ConfigError, DataError, ModelError
from ckvision.fsutil import atomic_dir
from ckvision.models.contract import ModelContract

__all__ = [
    "PreprocessedDataset",
    "NormalisedImages",
    "write_cache",
    "write_rgb8_cache",
    "clean_stale_partials",
    "release_mapped_pages",
    "CACHE_FILES",
]

CACHE_FILES = ("images.npy", "labels.txt", "files.txt", "dataset.json")
OWNER_FILE = ".owner"  # pid of the process building a .partial directory
STALE_AFTER_S = 600.0  # a .partial without a live owner file is stale after this


class NormalisedImages:
    """A read-only view of (N, H, W, 3) uint8 rows that returns them normalised for one
    model: ``view[i]``, ``view[a:b]``, ``view[index_array]`` and ``np.asarray(view)``
    give arrays in the model's layout and dtype. Only indexing reads and computes, so
    the cost is paid where the harness copies samples into RAM, not per query."""

    def __init__(self, pixels: np.ndarray, contract: ModelContract) -> None:
        self.pixels = pixels
        self.contract = contract
        self.dtype = np.dtype(contract.input_dtype)
        self.shape = (len(pixels), *contract.input_shape(1)[1:])
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        from ckvision.data.preprocess import normalise

        if isinstance(key, slice):
            return NormalisedImages(self.pixels[key], self.contract)
        if isinstance(key, (int, np.integer)):
            return normalise(np.asarray(self.pixels[int(key)])[None], self.contract)[0]
        return normalise(np.asarray(self.pixels[key]), self.contract)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        from ckvision.data.preprocess import normalise

        out = normalise(np.asarray(self.pixels), self.contract)
        return out if dtype is None else out.astype(dtype)


def release_mapped_pages(images: Any) -> None:
    """Drop the pages of a memory-mapped cache that this process has read from its
    resident set (they stay in the page cache; reading them again is cheap): a run over
    50,000 samples then holds the samples it loaded, not every page it ever touched."""
    import mmap

    pixels = images.pixels if isinstance(images, NormalisedImages) else images
    handle = getattr(pixels, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            handle.madvise(mmap.MADV_DONTNEED)


@dataclass(frozen=True)
class PreprocessedDataset:
    """A preprocessed dataset opened from its cache directory."""

    path: Path
    name: str
    kind: str
    images: Any  # np.ndarray (memory-mapped, read-only) or NormalisedImages
    labels: np.ndarray  # int64 ImageNet class per sample
    files: tuple[str, ...]
    preprocessing: dict[str, Any]
    storage: str = "contract"  # "rgb8" (shared) | "contract" (made for one model)
    bound_to: str = ""  # the model an rgb8 dataset was bound to by for_model()
    meta: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    @property
    def spec(self) -> Preprocessing | None:
        """The preprocessing choice of an rgb8 cache (None for a per-model cache)."""
        if self.storage != "rgb8":
            return None
        return Preprocessing.from_dict(self.preprocessing)

    @classmethod
    def open(cls, path: Path) -> PreprocessedDataset:
        path = Path(path)
        missing = [f for f in CACHE_FILES if not (path / f).is_file()]
        if missing:
            raise DataError(
                f"{path} is not a preprocessed dataset (missing {', '.join(missing)}); "
                "reinstall it with: ck install package --tags=dataset,imagenet,preprocessed"
            )
        try:
            meta = json.loads((path / "dataset.json").read_text(encoding="utf-8"))
            images = np.load(path / "images.npy", mmap_mode="r")
            labels = np.loadtxt(path / "labels.txt", dtype=np.int64, ndmin=1)
            files = tuple((path / "files.txt").read_text(encoding="utf-8").splitlines())
        except (ValueError, OSError) as err:
            raise DataError(
                f"{path}: corrupt dataset cache ({err}); reinstall the package"
            ) from err
        if not isinstance(meta, dict) or not (
            len(images) == len(labels) == len(files) == meta.get("size")
        ):
            raise DataError(
                f"{path}: corrupt dataset cache ({len(images)} images, {len(labels)} labels, "
                f"{len(files)} files); reinstall the package"
            )
        storage = str(meta.get("storage", "contract"))
        dataset = cls(
            path=path,
            name=str(meta.get("name", path.name)),
            kind=str(meta.get("kind", "unknown")),
            images=images,
            labels=labels,
            files=files,
            preprocessing=dict(meta.get("preprocessing", {})),
            storage=storage,
            meta=meta,
        )
        if storage == "rgb8":
            try:
                spec = Preprocessing.from_dict(dataset.preprocessing)
            except ConfigError as err:
                raise DataError(f"{path}: corrupt dataset cache ({err}); reinstall it") from err
            if images.dtype != np.uint8 or tuple(images.shape[1:]) != (spec.side, spec.side, 3):
                raise DataError(
                    f"{path}: corrupt dataset cache (images {images.shape} {images.dtype}, "
                    f"expected rgb8 side {spec.side}); reinstall the package"
                )
        elif storage != "contract":
            raise DataError(f"{path}: unknown dataset storage {storage!r}; reinstall it")
        return dataset

    def for_model(self, contract: ModelContract) -> PreprocessedDataset:
        """This dataset as ``contract``'s model must see it: an rgb8 cache is checked
        against the model's spatial contract and its samples normalised on read; a
        per-model cache is only checked."""
        if self.storage != "rgb8" or self.bound_to:
            self.check_matches(contract)
            return self
        self._check_spatial(contract)
        bound = dataclasses.replace(
            self, images=NormalisedImages(self.images, contract), bound_to=contract.name
        )
        bound.check_matches(contract)
        return bound

    def _check_spatial(self, contract: ModelContract) -> None:
        spec = self.spec
        assert spec is not None
        want = Preprocessing.for_model(contract)
        diffs = spec.mismatch(contract)
        if diffs:
            raise ModelError(
                f"dataset {self.name} ({','.join(spec.tags())}) does not match model "
                f"{contract.name}, which wants {'; '.join(diffs)}; install the matching "
                "variation: ck install package --tags=dataset,imagenet,preprocessed,"
                f"{self.kind_tag},{','.join(want.tags())}"
            )

    @property
    def kind_tag(self) -> str:
        """The CK tag of this dataset's subset (ckvision-sample, full, first.N)."""
        return str(
            self.meta.get("subset_tag") or ("ckvision-sample" if self.kind == "sample" else "full")
        )

    def check_matches(self, contract: ModelContract) -> None:
        """Refuse a model whose input contract differs from how this data was made."""
        if self.storage == "rgb8":
            self._check_spatial(contract)
        else:
            want = contract.preprocessing_key()
            diffs = [
                f"{key}: model wants {want[key]!r}, dataset has {self.preprocessing.get(key)!r}"
                for key in want
                if self.preprocessing.get(key) != want[key]
            ]
            if diffs:
                raise ModelError(
                    f"model {contract.name} does not match dataset {self.name} "
                    f"({'; '.join(diffs)}); install the dataset for this model: "
                    "ck install package --tags=dataset,imagenet,preprocessed,"
                    + ",".join([self.kind_tag, *Preprocessing.for_model(contract).tags()])
                )
        expected = contract.input_shape(self.size)[1:]
        dtype = np.dtype(contract.input_dtype)
        if tuple(self.images.shape[1:]) != expected or self.images.dtype != dtype:
            hint = (
                " (rgb8 pixels: the program normalises them with the dataset's for_model())"
                if self.storage == "rgb8" and not self.bound_to
                else ""
            )
            raise ModelError(
                f"dataset {self.name} has samples of shape {tuple(self.images.shape[1:])} "
                f"{self.images.dtype}, model {contract.name} wants {expected} {dtype}{hint}"
            )


def clean_stale_partials(final: Path, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove what a killed build of ``final`` left beside it: ``.<name>.*.partial``
    directories whose builder is dead, and ``.<name>.old``. Returns what was removed."""
    final = Path(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for path in final.parent.glob(f".{final.name}.*.partial"):
        if path.is_dir() and not _owner_alive(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    old = final.with_name(f".{final.name}.old")
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    if removed and log is not None:
        log(f"removed {len(removed)} leftover(s) of an interrupted install beside {final}")
    return removed


def _owner_alive(partial: Path) -> bool:
    try:
        pid = int((partial / OWNER_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        # no owner yet: only a build that just started; stale once old
        with contextlib.suppress(OSError):
            return time.time() - partial.stat().st_mtime < STALE_AFTER_S
        return False
    if pid == os.getpid():
        return True
    return process_alive(pid)


def process_alive(pid: int) -> bool:
    """True while process ``pid`` runs. A killed process that its parent has not reaped
    yet (a zombie) still answers ``kill(pid, 0)``, but it will never finish anything."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc here: trust kill()
    state = stat[stat.rfind(")") + 2 :][:1]  # the field after "(comm)"
    return state not in ("Z", "X")


def write_rgb8_cache(
    final: Path,
    *,
    name: str,
    kind: str,
    source: str,
    spec: Preprocessing,
    items: Sequence[tuple[str, int]],
    load: Callable[[str], np.ndarray],
    progress: Callable[[int, int], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> PreprocessedDataset:
    """Make the shared rgb8 cache of ``items`` (file, label): ``load(file)`` returns one
    side x side x 3 uint8 RGB sample. Built in a ``.partial`` directory and renamed
    into place only when complete; leftovers of a killed build are removed first."""
    shape = (len(items), spec.side, spec.side, 3)
    meta = {"storage": "rgb8", "preprocessing": spec.as_dict(), "tags": spec.tags()}
    return _write(
        final,
        name,
        kind,
        source,
        shape,
        np.dtype(np.uint8),
        items,
        load,
        progress,
        {**(extra or {}), **meta},
    )


def write_cache(
    final: Path,
    *,
    name: str,
    kind: str,
    source: str,
    contract: ModelContract,
    items: Sequence[tuple[str, int]],
    load: Callable[[str], np.ndarray],
    progress: Callable[[int, int], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> PreprocessedDataset:
    """A cache made for one model (``contract`` storage): ``load(file)`` returns one
    sample already in the model's layout and dtype. Datasets installed by our packages
    are rgb8 (:func:`write_rgb8_cache`); this stays for generated test data and for
    comparing the two in benchmarks/dataset_load.py."""
    shape = contract.input_shape(len(items))
    meta = {"storage": "contract", "preprocessing": contract.preprocessing_key()}
    return _write(
        final,
        name,
        kind,
        source,
        shape,
        np.dtype(contract.input_dtype),
        items,
        load,
        progress,
        {**(extra or {}), **meta},
    )


def _write(
    final: Path,
    name: str,
    kind: str,
    source: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    items: Sequence[tuple[str, int]],
    load: Callable[[str], np.ndarray],
    progress: Callable[[int, int], None] | None,
    extra: dict[str, Any],
) -> PreprocessedDataset:
    if not items:
        raise DataError(f"dataset {name}: no images to preprocess")
    final = Path(final)
    clean_stale_partials(final)
    with atomic_dir(final) as tmp:
        (tmp / OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")
        array = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=dtype, shape=shape)
        for i, (file, _label) in enumerate(items):
            array[i] = load(file)
            if progress is not None:
                progress(i + 1, len(items))
        array.flush()
        del array
        _write_lines(tmp / "labels.txt", (str(label) for _file, label in items))
        _write_lines(tmp / "files.txt", (file for file, _label in items))
        meta = {"name": name, "kind": kind, "size": len(items), "source": source, **extra}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / OWNER_FILE).unlink()
    return PreprocessedDataset.open(final)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
