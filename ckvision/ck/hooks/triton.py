"""The ``script:triton-perf-analyzer`` entry: perf_analyzer rows as CK experiment entries.

CK passes the entry's ``dict``; its keys are ``ckvision triton-perf`` options (``url`` or
``repository``, ``batch``, ``concurrency``, ``protocol``, ``shm``, ``record``, ``tags`` ...).
"""

from __future__ import annotations

from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.errors import ConfigError

__all__ = ["run_perf_script"]

_OPTIONS = ("url", "repository", "protocol", "model_name", "batch", "concurrency", "shm",
            "request_count", "stability_percent", "output_dir", "record", "tags", "python")


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
