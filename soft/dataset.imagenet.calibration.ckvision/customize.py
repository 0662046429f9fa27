"""CK detection hooks for this soft entry: all logic is in ckvision.ck.hooks.soft."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # ck may run without ckvision

from ckvision.ck.hooks.soft import setup, version_cmd  # noqa: E402, F401
