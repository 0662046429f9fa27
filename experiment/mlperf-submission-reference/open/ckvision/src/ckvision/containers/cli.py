"""``python -m ckvision docker build|run|lock|list|entrypoint``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ckvision.errors import ConfigError

__all__ = ["add_parser", "dispatch"]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ckvision" / "wheelhouse"


def _user(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--user wants UID[:GID] as numbers, not {text!r}"
        ) from err


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    docker = sub.add_parser("docker", help="build/run the docker/ images (Docker or Podman)")
    dsub = docker.add_subparsers(dest="docker_command", required=True, metavar="ACTION")
    build = dsub.add_parser("build", help="build an image (reused if its context is unchanged)")
    build.add_argument("name", help="a docker/ entry, e.g. image-classification-onnxruntime-cpu")
    build.add_argument("--base-image", help="FROM image (default: the Dockerfile's pinned one)")
    build.add_argument(
        "--wheelhouse",
        type=Path,
        default=None,
        help="host folder of wheels built from the locks (default: ~/.cache/...)",
    )
    build.add_argument("--rebuild", action="store_true", help="build even if up to date")
    run = dsub.add_parser("run", help="run an image with a host experiment folder mounted")
    run.add_argument("name")
    run.add_argument(
        "--experiments",
        type=Path,
        required=True,
        help="host folder that receives the experiment entries",
    )
    run.add_argument(
        "--user",
        type=_user,
        default=(os.getuid(), os.getgid()),
        help="UID[:GID] to run as (default: yours)",
    )
    run.add_argument("--env-file", type=Path, help="instead of the entry's env.list")
    run.add_argument(
        "--command",
        dest="docker_command_line",
        default="",
        help="command run in the image, one string: --command='ck benchmark ...' "
        "(default: the image's recorded main job)",
    )
    dsub.add_parser("lock", help="rewrite the requirements-*.lock files from this venv")
    dsub.add_parser("list", help="the docker/ entries")
    dsub.add_parser("tensorrt-job", help="(inside the TensorRT image) self-check, engine, runs")
    entry = dsub.add_parser("entrypoint", help="(inside an image) check the volume, run CMD")
    entry.add_argument("docker_argv", nargs=argparse.REMAINDER, metavar="COMMAND")


def _root() -> Path:
    from ckvision.ck.setup import repo_root

    return repo_root()


def dispatch(args: argparse.Namespace) -> int:
    action = args.docker_command
    if action == "entrypoint":
        from ckvision.containers.entrypoint import main

        return main(args.docker_argv)
    if action == "tensorrt-job":
        from ckvision.containers.tensorrt_job import run_tensorrt_job

        run_tensorrt_job()
        return 0
    from ckvision.containers.entries import entry_names, load_entry

    root = _root()
    if action == "list":
        for name in entry_names(root):
            entry = load_entry(root, name)
            print(f"{name}\t{entry.reference}\tFROM {entry.default_base}")
        return 0
    lock_dir = root / "docker" / "image-classification-onnxruntime-cpu"
    if action == "lock":
        from ckvision.containers.lock import write_locks

        for path in write_locks(lock_dir):
            print(f"wrote {path}")
        return 0
    entry = load_entry(root, args.name)
    from ckvision.containers import engine

    if action == "build":
        client = engine.connect()
        wheels = engine.build_wheelhouse(entry, args.wheelhouse or _cache_dir(), lock_dir)
        engine.build_image(client, entry, base=args.base_image, wheels=wheels, rebuild=args.rebuild)
        return 0
    if action == "run":
        command = [args.docker_command_line] if args.docker_command_line else []
        host, env = engine.prepare_run(
            entry, experiments=args.experiments, user=args.user, env_file=args.env_file
        )
        return engine.run_image(
            engine.connect(), entry, host=host, env=env, user=args.user, command=command
        )
    raise ConfigError(f"unknown docker action {action!r}")  # pragma: no cover
