"""Record one run as a classic CK experiment point, as ``ck benchmark --record`` does.

Used where CK's own ``ck benchmark`` is not the caller (the MLC scripts). The one writer
is :func:`ckvision.experiments.offline_writer.record_point` (ck's own layout and lock);
a new entry is made by ``ck add`` itself, so ``ck list``/``ck search`` see it. This only
says where (the local repo) and what the point's choices are. Every call writes a new
point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ckvision.experiments.ck_tool import local_experiment_entry
from ckvision.experiments.offline_writer import check_entry_name, check_tags
from ckvision.experiments.offline_writer import record_point as write_point

__all__ = ["record_point"]


def record_point(
    name: str,
    tags: Sequence[str],
    record: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    program: str,
) -> Path:
    """Add a point to ``local:experiment:<name>`` (created with ``tags`` if new)."""
    entry = local_experiment_entry(check_entry_name(name), check_tags(tags))
    return write_point(
        entry.parent,
        name,
        tags=tags,
        meta={"program": program},
        characteristics={"run": dict(record)},
        choices={
            "data_uoa": program,
            "module_uoa": "program",
            "env": {k: v for k, v in env.items() if k.startswith(("CK_", "ML_MODEL_"))},
        },
    )
