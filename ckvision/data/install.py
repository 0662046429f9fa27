"""What a dataset package installs: one rgb8 cache for one preprocessing choice.

The package's variations (``side.N``, ``crop.N``, ``using-*``, ``inter.*``, ``rgb8``,
``first.N``/``full``) set ``CKVISION_DATASET_*`` in the install env
(:meth:`Preprocessing.from_env`); CK puts the chosen variations into the install path
and the env entry's tags, so two choices never share a directory and every model whose
contract matches finds the same copy. Nothing here depends on a model: a model meets
its data in the program (:meth:`PreprocessedDataset.for_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ckvision.data.variation import Preprocessing
from ckvision.errors import ConfigError, ModelError

__all__ = ["install_dataset", "DATA_DIR"]

DATA_DIR = "data"  # the cache directory inside the package's INSTALL_DIR


def install_dataset(
    kind: str,
    install_dir: Path,
    env: Mapping[str, str],
    *,
    source: Path | None = None,
    count: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    """Build the cache of the choice in ``env`` at ``install_dir/data``; returns its
    ``dataset.json``. Every check happens before the first image is read."""
    spec = Preprocessing.from_env(env)
    if count < 0:
        raise ConfigError(f"image count {count} must not be negative")
    if env.get("ML_MODEL_MODEL_NAME"):  # a model dep was given: refuse a mismatch now
        from ckvision.models.contract import ModelContract

        contract = ModelContract.from_env(env)
        diffs = spec.mismatch(contract)
        if diffs:
            raise ModelError(
                f"dataset variation {','.join(spec.tags())} does not match model "
                f"{contract.name}, which wants {'; '.join(diffs)}; install with tags "
                + ",".join(Preprocessing.for_model(contract).tags())
            )
    dest = Path(install_dir) / DATA_DIR
    log(f"dataset {kind}: {','.join(spec.tags())}, {spec.bytes_per_image} bytes per image")
    if kind == "sample":
        from ckvision.data.sample_set import DEFAULT_SIZE, build_sample_cache

        build_sample_cache(dest, spec, size=count or DEFAULT_SIZE, progress=log)
    elif kind == "imagenet":
        from ckvision.data.imagenet import build_imagenet_cache
        from ckvision.data.imagenet_val import resolve_val_source

        source, labels = resolve_val_source(env, source)
        if source is None:
            raise ConfigError(
                "IMAGENET_VAL_DIR is not set and no dataset.imagenet.val is detected: point "
                "it at your ImageNet val folder (JPEGs + val_map.txt), e.g. ck install package "
                "--tags=dataset,imagenet,preprocessed,full "
                "--env.IMAGENET_VAL_DIR=/data/imagenet/val"
            )
        build_imagenet_cache(source, dest, spec, count=count, progress=log, labels=labels)
    else:
        raise ConfigError(f"dataset kind {kind!r} unknown; use sample or imagenet")
    log(f"dataset ready at {dest}")
    return dest / "dataset.json"
