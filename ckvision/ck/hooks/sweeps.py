"""The ``script:ckvision-sweep`` entry: ``--dict.kind=...`` options -> ``ckvision sweep``."""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.errors import ConfigError

__all__ = ["run", "sweep_argv"]

_OPTION = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_REPEATED = ("env", "ck_arg")


def sweep_argv(options: dict[str, Any]) -> list[str]:
    """``{'kind': 'batch', 'batches': '1..8', 'env': 'A=1;B=2'}`` -> the CLI's argv."""
    options = {k: v for k, v in options.items() if k != "ck_kernel"}
    kind = str(options.pop("kind", ""))
    if kind not in ("batch", "concurrency", "setting", "peak"):
        raise ConfigError(f"--dict.kind={kind!r}: use batch, concurrency, setting or peak")
    argv = ["sweep", kind]
    for key, value in options.items():
        if not _OPTION.match(key) or isinstance(value, (dict, list)):
            raise ConfigError(f"--dict.{key}: not an option of ckvision sweep {kind}")
        flag = "--" + key.replace("_", "-")
        values = str(value).split(";") if key in _REPEATED else [str(value)]
        argv.extend(f"{flag}={v}" for v in values)
    return argv


@ck_hook
def run(i: dict[str, Any]) -> dict[str, Any]:
    from ckvision.sweeps.command import parse, run_sweep_command

    argv = sweep_argv(i)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parse(argv)
    except SystemExit:
        last = errors.getvalue().strip().splitlines()
        raise ConfigError(last[-1] if last else f"bad options: {' '.join(argv)}") from None
    run_sweep_command(args)
    return {"return": 0}
