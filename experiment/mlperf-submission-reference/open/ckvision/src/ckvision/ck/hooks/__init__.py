"""Functions the CK entries call. Entries stay declarative; the logic lives here.

CK calls hooks with a dict ``i`` and expects ``{'return': 0, ...}`` or
``{'return': 1, 'error': '...'}``. :func:`ck_hook` turns our exceptions into that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ckvision.errors import CkVisionError

__all__ = ["ck_hook", "ck_fatal_hook"]

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


def ck_fatal_hook(func: Hook) -> Hook:
    """For hooks whose error CK 2.6.4 would not turn into a failure: print, then exit ``ck``.

    CK turns a failed program pre/post-processing hook into exit status 0 unless the user
    passed ``--return_error_if_external_fail=yes`` (and ``ck benchmark`` moves on), and
    answers a failed soft ``version_cmd`` by asking for a version on stdin. Such a hook
    prints its one line and ends the ``ck`` process with the error's exit code: ``ck run``,
    ``ck benchmark`` and ``ck detect soft`` fail visibly with or without that flag, and
    ``ck benchmark --record`` records nothing (it has not reached its record step).
    """

    @functools.wraps(func)
    def wrapper(i: dict[str, Any]) -> dict[str, Any]:
        try:
            return func(i)
        except CkVisionError as err:
            print(f"ckvision: error: {err}", flush=True)
            raise SystemExit(err.exit_code) from None

    return wrapper
