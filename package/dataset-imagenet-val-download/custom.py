"""CK package hook (CK 2.6.4 loads a package's ``custom.py``): CK calls setup() just
before it writes the install script; it refuses values CK would write there unescaped.
All logic is in ckvision.ck.hooks.packages.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # ck may run without ckvision

from ckvision.ck.hooks.packages import setup  # noqa: E402, F401
