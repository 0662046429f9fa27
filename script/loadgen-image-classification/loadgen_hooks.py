"""CK pre/post-processing for the LoadGen image-classification programs.

Pre-processing writes user.conf from the CK_LOADGEN_* env vars; post-processing
parses the LoadGen logs and scores accuracy into the run's characteristics
(tmp-ck-timer.json). All logic is in ckvision.ck.hooks.program.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # ck may run without ckvision

from ckvision.ck.hooks.program import ck_postprocess, ck_preprocess  # noqa: E402, F401
