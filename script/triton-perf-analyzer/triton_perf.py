"""``ck run script:triton-perf-analyzer @perf.json``: perf_analyzer against Triton, recorded.

perf.json: ``{"dict": {"repository": "<repo>" or "url": "host:port", "batch": 4,
"concurrency": "1:8:1", "protocol": "grpc", "shm": "none", "record": "<entry name>",
"tags": "triton,perf_analyzer"}}``. All logic is in ``python -m ckvision triton-perf``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # ck may run without ckvision

from ckvision.ck.hooks.triton import run_perf_script as run  # noqa: E402, F401
