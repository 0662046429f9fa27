"""MLC hook for this script: all logic is in ckvision.ck.hooks.mlc.loadgen_run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # ck may run without ckvision

from ckvision.ck.hooks.mlc import loadgen_run as preprocess  # noqa: E402, F401
