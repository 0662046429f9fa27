"""MLC hook for this script: all logic is in ckvision.ck.hooks.mlc.loadgen_run."""

from ckvision.ck.hooks.mlc import loadgen_run as preprocess  # noqa: F401
