"""``python -m ckvision.cluster.child ARGS``: ``python -m ckvision run ARGS`` that dies
with the Ray worker that started it.

A point runs in this process, a child of the Ray worker. Linux's parent-death signal
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``) kills it when the worker dies for any reason
(a node killed, ``ray.cancel(force=True)``, the driver gone), so nothing is left
running on a node. Set here, in the child itself, because ``preexec_fn`` is unsafe in
the Ray worker's threaded process.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PARENT_ENV = "CKVISION_CLUSTER_PARENT"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    expected = os.environ.get(PARENT_ENV, "")
    if expected and os.getppid() != int(expected):  # the worker died before prctl
        os._exit(137)


def main() -> None:
    _die_with_parent()
    sys.argv = ["ckvision", "run", *sys.argv[1:]]
    runpy.run_module("ckvision", run_name="__main__", alter_sys=True)


if __name__ == "__main__":  # pragma: no cover
    main()
