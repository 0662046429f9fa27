"""The ``script:ckvision-submission`` entry: ``ck run script:ckvision-submission @s.json``.

``s.json`` holds ``{"dict": {"action": "build", "entries": "DIR1;DIR2", "tags": "mine",
"out": "sub", "submitter": "Me", "system": "vm", "system_desc": "system.json"}}``:
``action`` is build, check, run or install-source; every other key is an option of
``python -m ckvision submission ACTION`` (``entries`` / ``dir`` are its positional
arguments; ``entries`` takes several values separated by ``;``; ``true`` is a flag).
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.errors import ConfigError

__all__ = ["run", "submission_argv"]

_OPTION = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_ACTIONS = ("build", "check", "run", "install-source")


def submission_argv(options: dict[str, Any]) -> list[str]:
    options = {k: v for k, v in options.items() if k not in ("ck_kernel", "action")} | {
        "action": options.get("action", "")
    }
    action = str(options.pop("action"))
    if action not in _ACTIONS:
        raise ConfigError(f"--dict.action={action!r}: use one of {', '.join(_ACTIONS)}")
    argv = ["submission", action]
    positional: list[str] = []
    for key, value in options.items():
        if not _OPTION.match(key) or isinstance(value, (dict, list)):
            raise ConfigError(f"--dict.{key}: not an option of ckvision submission {action}")
        if key == "entries" and action == "build":
            positional += [v for v in str(value).split(";") if v]
        elif key == "dir" and action == "check":
            positional.append(str(value))
        elif value is True or str(value).lower() == "true":
            argv.append("--" + key.replace("_", "-"))
        else:
            argv.append(f"--{key.replace('_', '-')}={value}")
    return argv + (["--", *positional] if positional else [])


@ck_hook
def run(i: dict[str, Any]) -> dict[str, Any]:
    from ckvision.cli import build_parser
    from ckvision.submission.cli import dispatch

    argv = submission_argv(i)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = build_parser().parse_args(argv)
    except SystemExit:
        last = errors.getvalue().strip().splitlines()
        raise ConfigError(last[-1] if last else f"bad options: {' '.join(argv)}") from None
    code = dispatch(args)
    return (
        {"return": code, "error": f"ckvision submission {argv[1]} exit status {code}"}
        if code
        else {"return": 0}
    )
