"""Make the ``ck`` process write its files atomically (temp file + rename).

CK 2.6.4 writes entry metadata and experiment points with ``open(path, 'w')``; a record
killed in the middle leaves a truncated ``meta.json`` or point, and the entry stops
loading. The program's pre-processing calls :func:`make_ck_writes_atomic` in the ``ck``
process before anything is recorded, so every whole-file write CK makes from then on
goes to a temporary file beside the target and is renamed over it. Appends are left as
they are.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ckvision.fsutil import atomic_output, full_disk_note

__all__ = ["make_ck_writes_atomic"]

CkFunc = Callable[[dict[str, Any]], dict[str, Any]]


class _NotSaved(Exception):
    """CK's writer returned an error: the temporary file is dropped, the target kept."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("error", ""))
        self.result = result


def _atomic(original: CkFunc) -> CkFunc:
    def save_text_file(i: dict[str, Any]) -> dict[str, Any]:
        if i.get("append", "") == "yes" or not i.get("text_file"):
            return original(i)
        try:
            with atomic_output(Path(str(i["text_file"]))) as tmp:
                result = original({**i, "text_file": str(tmp)})
                if result.get("return", 1) != 0:
                    raise _NotSaved(result)
        except _NotSaved as failed:
            return failed.result
        except OSError as err:  # CK would print a traceback; a full disk is one line
            target = Path(str(i["text_file"]))
            note = full_disk_note(target.parent, err) or f": {err.strerror or err}"
            return {"return": 1, "error": f"cannot write {target}{note}; nothing was recorded"}
        return result

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
