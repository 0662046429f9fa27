"""``ck run script:ckvision-sweep @sweep.json``: ``ckvision sweep`` as a CK workflow.

``sweep.json`` holds ``{"dict": {"kind": "batch", "batches": "1..32", "tags": "mine",
"env": "CK_LOADGEN_MIN_DURATION_S=2;CK_LOADGEN_DATASET_SIZE=64"}}``: ``kind`` is batch,
concurrency, setting or peak; every other key is an option of ``python -m ckvision sweep KIND``
(``env`` and ``ck_arg`` take several values separated by ``;``). Every point is run and
recorded by ``ck benchmark --record``. All logic is in ckvision.ck.hooks.sweeps.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # ck may run without ckvision

from ckvision.ck.hooks.sweeps import run  # noqa: E402, F401
