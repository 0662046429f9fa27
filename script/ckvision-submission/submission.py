"""``ck run script:ckvision-submission @s.json``: ``ckvision submission`` as a CK workflow.

See ckvision.submission.ck_script for the options; all logic is in ckvision.submission.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # ck may run without ckvision

from ckvision.submission.ck_script import run  # noqa: E402, F401
