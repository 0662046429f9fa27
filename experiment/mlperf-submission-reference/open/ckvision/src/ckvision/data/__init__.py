"""Datasets: one rgb8 cache per preprocessing choice, normalised per model at load time."""

from ckvision.data.cache import (
    CACHE_FILES,
    NormalisedImages,
    PreprocessedDataset,
    write_cache,
    write_rgb8_cache,
)
from ckvision.data.imagenet import build_imagenet_cache, read_val_map
from ckvision.data.images import decode_rgb8, to_rgb8
from ckvision.data.preprocess import (
    load_image,
    normalise,
    preprocess,
    preprocess_file,
    resize_and_crop,
)
from ckvision.data.sample_set import build_sample_cache, sample_items, sample_photos
from ckvision.data.variation import Preprocessing, dataset_tags

__all__ = [
    "CACHE_FILES",
    "NormalisedImages",
    "PreprocessedDataset",
    "Preprocessing",
    "write_cache",
    "write_rgb8_cache",
    "decode_rgb8",
    "to_rgb8",
    "build_imagenet_cache",
    "read_val_map",
    "load_image",
    "normalise",
    "preprocess",
    "preprocess_file",
    "resize_and_crop",
    "build_sample_cache",
    "sample_items",
    "sample_photos",
    "dataset_tags",
]
