"""MLC hook for this script: all logic is in ckvision.ck.hooks.mlc.install_model."""

from ckvision.ck.hooks.mlc import install_model as preprocess  # noqa: F401
