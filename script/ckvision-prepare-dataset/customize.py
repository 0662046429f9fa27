"""MLC hook for this script: all logic is in ckvision.ck.hooks.mlc.prepare_dataset."""

from ckvision.ck.hooks.mlc import prepare_dataset as preprocess  # noqa: F401
