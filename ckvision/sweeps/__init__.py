"""Sweeps and peak search over real LoadGen runs, each point a recorded CK experiment entry.

``python -m ckvision sweep batch|concurrency|setting|peak`` and ``ck run
script:ckvision-sweep`` both come here. See :mod:`.points` (recording, resuming),
:mod:`.grid` (batch and concurrency sweeps, and the sweep over any setting), :mod:`.peak`
and :mod:`.search` (peak search), :mod:`.arrivals`.
"""

from ckvision.sweeps.grid import (
    batch_sweep,
    concurrency_sweep,
    parse_range,
    parse_setting_values,
    setting_sweep,
    sweep_table,
)
from ckvision.sweeps.peak import parse_bounds, search_peak
from ckvision.sweeps.points import CkPointRunner, Point, PointResult
from ckvision.sweeps.search import run_peak_search

__all__ = [
    "CkPointRunner",
    "Point",
    "PointResult",
    "batch_sweep",
    "concurrency_sweep",
    "parse_range",
    "parse_setting_values",
    "setting_sweep",
    "parse_bounds",
    "search_peak",
    "run_peak_search",
    "sweep_table",
]
