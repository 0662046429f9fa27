"""perf_analyzer rows as CK experiment entries; the ``script:triton-perf-analyzer`` entry.

The entry is made by the real ``ck`` (``ck add experiment:NAME --common_func``), so
``ck list/find/rm experiment`` know it; each recording adds one new point file
``ckp-<point>.0001.json`` (written atomically) whose ``characteristics_list[i].run`` is
one perf_analyzer row, as ``ck benchmark --record`` stores our LoadGen runs.
CK passes the script entry's ``dict``; its keys are ``ckvision triton-perf`` options
(``url`` or ``repository``, ``batch``, ``concurrency``, ``protocol``, ``shm``, ``record``,
``tags`` ...).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.ck.tool import ck_lines, run_ck
from ckvision.errors import ConfigError
from ckvision.fsutil import atomic_write_json

__all__ = ["run_perf_script", "record_perf_entry"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def record_perf_entry(name: str, tags: list[str], records: list[dict[str, Any]]) -> Path:
    """Add ``records`` to experiment entry ``name`` (created with ``tags`` if new)."""
    for value in (name, *tags):
        if not _NAME.match(value):
            raise ConfigError(
                f"experiment name/tag {value!r} must be letters, digits, _ . - (up to 100)"
            )
    found = [ln for ln in _find(name) if ln.startswith("/")]
    if not found:
        run_ck(
            ["add", f"experiment:{name}", "--common_func", f"--tags={','.join(tags)}", "--quiet"],
            capture=True,
        )
        found = [ln for ln in _find(name) if ln.startswith("/")]
    entry = Path(found[0])
    atomic_write_json(
        entry / f"ckp-{secrets.token_hex(8)}.0001.json",
        {"characteristics_list": [{"run": r} for r in records]},
    )
    return entry


def _find(name: str) -> list[str]:
    from ckvision.ck.tool import CkCommandError

    try:
        return ck_lines(["find", f"experiment:{name}"])
    except CkCommandError:  # not there yet
        return []


_OPTIONS = (
    "url",
    "repository",
    "protocol",
    "model_name",
    "batch",
    "concurrency",
    "shm",
    "request_count",
    "stability_percent",
    "output_dir",
    "record",
    "tags",
    "python",
)


@ck_hook
def run_perf_script(i: dict[str, Any]) -> dict[str, Any]:
    from ckvision.cli import build_parser
    from ckvision.triton.commands import dispatch

    unknown = sorted(k for k in i if k not in (*_OPTIONS, "ck_kernel"))
    if unknown:
        raise ConfigError(f"unknown triton-perf option(s) {unknown}; use: {', '.join(_OPTIONS)}")
    argv = ["triton-perf"]
    for key in _OPTIONS:
        if key in i and i[key] not in (None, ""):
            argv += [f"--{key.replace('_', '-')}", str(i[key])]
    return {"return": dispatch(build_parser().parse_args(argv))}
