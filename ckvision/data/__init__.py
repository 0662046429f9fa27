"""Datasets: pure preprocessing, ImageNet val folders, the embedded sample set, the cache."""

from ckvision.data.cache import CACHE_FILES, PreprocessedDataset, write_cache
from ckvision.data.imagenet import build_imagenet_cache, read_val_map
from ckvision.data.preprocess import load_image, preprocess, preprocess_file
from ckvision.data.sample_set import build_sample_cache, sample_items, sample_photos

__all__ = [
    "CACHE_FILES",
    "PreprocessedDataset",
    "write_cache",
    "build_imagenet_cache",
    "read_val_map",
    "load_image",
    "preprocess",
    "preprocess_file",
    "build_sample_cache",
    "sample_items",
    "sample_photos",
]
