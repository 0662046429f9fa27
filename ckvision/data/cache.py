"""The preprocessed-dataset cache: one memory-mapped array plus labels and metadata.

Layout of a cache directory (written atomically, see :func:`write_cache`)::

    images.npy     (N, 3, H, W) or (N, H, W, 3), the model contract's dtype
    labels.txt     one ImageNet class index (0..999) per line
    files.txt      the source file of each sample, one per line
    dataset.json   {"name", "size", "kind", "source", "preprocessing": {...}}

Samples are served from ``images.npy`` through ``numpy.load(mmap_mode="r")``, never
from per-image files in the hot path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.errors import DataError, ModelError
from ckvision.fsutil import atomic_dir
from ckvision.models.contract import ModelContract

__all__ = ["PreprocessedDataset", "write_cache", "CACHE_FILES"]

CACHE_FILES = ("images.npy", "labels.txt", "files.txt", "dataset.json")


@dataclass(frozen=True)
class PreprocessedDataset:
    """A preprocessed dataset opened from its cache directory."""

    path: Path
    name: str
    kind: str
    images: np.ndarray  # memory-mapped, read-only
    labels: np.ndarray  # int64 ImageNet class per sample
    files: tuple[str, ...]
    preprocessing: dict[str, Any]

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

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
        if not (len(images) == len(labels) == len(files) == meta.get("size")):
            raise DataError(
                f"{path}: corrupt dataset cache ({len(images)} images, {len(labels)} labels, "
                f"{len(files)} files, size {meta.get('size')}); reinstall the package"
            )
        return cls(
            path=path,
            name=str(meta.get("name", path.name)),
            kind=str(meta.get("kind", "unknown")),
            images=images,
            labels=labels,
            files=files,
            preprocessing=dict(meta.get("preprocessing", {})),
        )

    def check_matches(self, contract: ModelContract) -> None:
        """Refuse a model whose input contract differs from how this data was made."""
        want = contract.preprocessing_key()
        diffs = [
            f"{key}: model wants {want[key]!r}, dataset has {self.preprocessing.get(key)!r}"
            for key in want
            if self.preprocessing.get(key) != want[key]
        ]
        if diffs:
            raise ModelError(
                f"model {contract.name} does not match dataset {self.name} ({'; '.join(diffs)}); "
                "install the dataset preprocessed for this model: "
                f"ck install package --tags=dataset,imagenet,preprocessed,{self.kind} "
                "with the model package installed first"
            )
        expected = contract.input_shape(self.size)[1:]
        if tuple(self.images.shape[1:]) != expected:
            raise ModelError(
                f"dataset {self.name} has samples of shape {tuple(self.images.shape[1:])}, "
                f"model {contract.name} wants {expected}"
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
    """Preprocess ``items`` (file, label) with ``load`` into a cache at ``final``.

    ``load(file)`` returns one preprocessed sample. The cache is built in a temporary
    directory and renamed into place only when complete.
    """
    if not items:
        raise DataError(f"dataset {name}: no images to preprocess")
    shape = contract.input_shape(len(items))
    with atomic_dir(final) as tmp:
        array = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.dtype(contract.input_dtype), shape=shape
        )
        for i, (file, _label) in enumerate(items):
            array[i] = load(file)
            if progress is not None:
                progress(i + 1, len(items))
        array.flush()
        del array
        _write_lines(tmp / "labels.txt", (str(label) for _file, label in items))
        _write_lines(tmp / "files.txt", (file for file, _label in items))
        meta = {
            "name": name,
            "kind": kind,
            "size": len(items),
            "source": source,
            "preprocessing": contract.preprocessing_key(),
            **(extra or {}),
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return PreprocessedDataset.open(final)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
