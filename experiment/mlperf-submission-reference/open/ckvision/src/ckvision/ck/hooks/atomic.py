"""Make the ``ck`` process write its files atomically (temp file + rename).

CK 2.6.4 writes entry metadata and experiment points with ``open(path, 'w')``; a record
killed in the middle leaves a truncated ``meta.json`` or point, and the entry stops
loading. The program's pre-processing calls :func:`make_ck_writes_atomic` in the ``ck``
process before anything is recorded, so every whole-file write CK makes from then on
goes to a temporary file beside the target and is renamed over it. Appends are left as
they are.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

__all__ = ["make_ck_writes_atomic"]

CkFunc = Callable[[dict[str, Any]], dict[str, Any]]


def _atomic(original: CkFunc) -> CkFunc:
    def save_text_file(i: dict[str, Any]) -> dict[str, Any]:
        if i.get("append", "") == "yes" or not i.get("text_file"):
            return original(i)
        target = str(i["text_file"])
        head, name = os.path.split(target)
        tmp = os.path.join(head, f".{name}.ckvision-{os.getpid()}.tmp")
        try:
            result = original({**i, "text_file": tmp})
            if result.get("return", 1) == 0:
                os.replace(tmp, target)
            return result
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    save_text_file.ckvision_atomic = True  # type: ignore[attr-defined]
    return save_text_file


def make_ck_writes_atomic() -> bool:
    """Patch ``ck.files.save_text_file`` (which ``save_json_to_file`` uses); idempotent."""
    try:
        import ck.files as ck_files  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return False
    if not getattr(ck_files.save_text_file, "ckvision_atomic", False):
        ck_files.save_text_file = _atomic(ck_files.save_text_file)
    return True
