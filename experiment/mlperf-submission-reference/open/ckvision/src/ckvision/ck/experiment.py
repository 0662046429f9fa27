"""Write one run as a classic CK experiment point, the way ``ck benchmark --record`` does.

Used where CK's own ``ck benchmark`` is not the caller (the MLC scripts): the entry is
created with the real ``ck add experiment`` (so ``ck list``/``ck search`` see it) and the
point file ``ckp-<point>.0001.json`` holds the same ``characteristics_list[0].run`` record
that CK stores from the programs' fine-grain timer file. Nothing recorded is overwritten:
every call writes a new point, atomically.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ckvision.ck.tool import CkCommandError, ck_lines, run_ck
from ckvision.errors import ConfigError
from ckvision.fsutil import atomic_write_json

__all__ = ["record_point"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _entry_path(name: str) -> Path | None:
    try:
        lines = ck_lines(["find", f"local:experiment:{name}"])
    except CkCommandError:  # "not found" is a ck error exit
        return None
    path = Path(lines[-1]) if lines else None
    return path if path is not None and path.is_dir() else None


def record_point(
    name: str,
    tags: Sequence[str],
    record: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    program: str,
) -> Path:
    """Add a point to ``local:experiment:<name>`` (created with ``tags`` if new)."""
    if not _NAME.match(name):
        raise ConfigError(f"record name {name!r}: use letters, digits, '.', '_' or '-'")
    bad = [t for t in tags if not _TAG.match(t)]
    if bad:
        raise ConfigError(f"record tags {bad}: use letters, digits, '.', '_' or '-'")
    entry = _entry_path(name)
    if entry is None:
        with tempfile.TemporaryDirectory() as tmp:  # ck reads the entry's meta from @file
            request = Path(tmp) / "add.json"
            request.write_text(json.dumps({"dict": {"tags": list(tags)}, "common_func": "yes"}))
            run_ck(["add", f"local:experiment:{name}", f"@{request}", "--quiet"], capture=True)
        entry = _entry_path(name)
        if entry is None:
            raise ConfigError(f"ck add experiment:{name} did not create the entry")
    point = secrets.token_hex(8)
    path = entry / f"ckp-{point}.0001.json"
    atomic_write_json(
        path,
        {
            "choices": {
                "data_uoa": program,
                "module_uoa": "program",
                "env": {k: v for k, v in env.items() if k.startswith(("CK_", "ML_MODEL_"))},
            },
            "features": {},
            "characteristics_list": [{"run": dict(record)}],
        },
    )
    return path
