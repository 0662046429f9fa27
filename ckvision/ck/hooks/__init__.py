"""Functions the CK entries call. Entries stay declarative; the logic lives here.

CK calls hooks with a dict ``i`` and expects ``{'return': 0, ...}`` or
``{'return': 1, 'error': '...'}``. :func:`ck_hook` turns our exceptions into that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ckvision.errors import CkVisionError

__all__ = ["ck_hook"]

Hook = Callable[[dict[str, Any]], dict[str, Any]]


def ck_hook(func: Hook) -> Hook:
    """Map CkVisionError to CK's error dict (one line, no traceback)."""

    @functools.wraps(func)
    def wrapper(i: dict[str, Any]) -> dict[str, Any]:
        try:
            return func(i)
        except CkVisionError as err:
            return {"return": 1, "error": str(err)}

    return wrapper
