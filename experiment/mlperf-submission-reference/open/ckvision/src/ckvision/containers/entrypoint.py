"""The images' entrypoint: check the experiment volume, then run the command (never a shell).

``docker run IMAGE "ck benchmark program:... --record ..."`` (one string, the habit of
ck-mlperf's images) is split with :func:`shlex.split` and executed directly; several
arguments are executed as given. Before anything runs, the folder ``ck benchmark --record``
writes into (``$CK_REPOS/local/experiment``) must be a mounted volume this uid can write:
otherwise every recorded entry would vanish with the container, or the run would fail at
its very end. A bad volume is one line and exit status 2.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ckvision.errors import ConfigError

__all__ = ["check_volume", "command_of", "main"]

NO_VOLUME_ENV = "CKVISION_NO_EXPERIMENT_VOLUME"  # "1": run without a volume (nothing recorded)


def _mounted(path: Path) -> bool:
    try:
        mounts = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return os.path.ismount(path)
    points = {line.split()[4] for line in mounts.splitlines() if len(line.split()) > 4}
    return str(path) in points


def check_volume(path: Path, *, require_mount: bool = True) -> None:
    """Raise ConfigError unless ``path`` is a mounted folder this process can write into."""
    who = f"uid {os.getuid()} gid {os.getgid()}"
    if not path.is_dir():
        raise ConfigError(f"experiment folder {path} does not exist in the container")
    if require_mount and not _mounted(path):
        raise ConfigError(
            f"no experiment volume mounted at {path}: recorded runs would be lost with the "
            f"container; add --volume HOST_DIR:{path} (or set {NO_VOLUME_ENV}=1)"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".ckvision-probe.", dir=path)
    except OSError as err:
        reason = "it is read-only" if err.errno == 30 else f"{err.strerror}"
        raise ConfigError(
            f"experiment volume {path} is not writable by {who}: {reason}; mount it "
            f"read-write and make the host folder writable by that uid"
        ) from err
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def command_of(argv: Sequence[str]) -> list[str]:
    """The command to execute: one string is split like a shell would (but not run by one)."""
    args = list(argv)
    if args and args[0] == "--":
        args = args[1:]
    if len(args) == 1 and any(c.isspace() for c in args[0]):
        try:
            args = shlex.split(args[0])
        except ValueError as err:
            raise ConfigError(f"cannot split the command {args[0]!r}: {err}") from err
    if not args:
        raise ConfigError("no command given")
    return args


def main(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Check, then replace this process with the command (so signals and exit codes pass)."""
    from ckvision.experiments.entries import experiment_root

    env = dict(os.environ) if env is None else env
    command = command_of(argv)
    check_volume(experiment_root(env), require_mount=env.get(NO_VOLUME_ENV, "") != "1")
    sys.stdout.flush()
    try:
        os.execvp(command[0], command)
    except OSError as err:
        raise ConfigError(f"cannot run {command[0]!r}: {err.strerror}") from err
    return 0  # pragma: no cover - execvp does not return
