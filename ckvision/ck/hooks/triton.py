"""perf_analyzer rows as CK experiment entries; the ``script:triton-perf-analyzer`` entry.

The entry is written in ck's own layout by the one experiment writer
(:mod:`ckvision.experiments.offline_writer`), so ``ck list/find/rm experiment`` know it;
each recording adds one new point file ``ckp-<point>.0001.json`` (written atomically)
whose ``characteristics_list[i].run`` is one perf_analyzer row, as ``ck benchmark
--record`` stores our LoadGen runs.
CK passes the script entry's ``dict``; its keys are ``ckvision triton-perf`` options
(``url`` or ``repository``, ``batch``, ``concurrency``, ``protocol``, ``shm``, ``record``,
``tags`` ...).
"""

from __future__ import annotations

from typing import Any

from ckvision.ck.hooks import ck_hook
from ckvision.errors import ConfigError
from ckvision.triton.commands import record_perf_entry

__all__ = ["run_perf_script", "record_perf_entry"]


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
    from ckvision.triton.commands import dispatch, parse

    unknown = sorted(k for k in i if k not in (*_OPTIONS, "ck_kernel"))
    if unknown:
        raise ConfigError(f"unknown triton-perf option(s) {unknown}; use: {', '.join(_OPTIONS)}")
    argv = ["triton-perf"]
    for key in _OPTIONS:
        if key in i and i[key] not in (None, ""):
            argv += [f"--{key.replace('_', '-')}", str(i[key])]
    return {"return": dispatch(parse(argv))}
