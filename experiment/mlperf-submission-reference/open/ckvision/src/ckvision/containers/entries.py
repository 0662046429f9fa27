"""The ``docker/<name>/`` CK entries: their meta, their env.list, their build context.

One entry = one image. Its ``.cm/meta.json`` holds what ck's own ``module:docker`` reads
(``cmd``: the docker build/run argument strings) and, under ``ckvision``, what our checked
path reads: the image name and tag, the base image, the experiment folder in the image,
the group that may write there, named volumes, extra env vars it accepts.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError

__all__ = [
    "DockerEntry",
    "load_entry",
    "entry_names",
    "read_env_list",
    "context_files",
    "write_context",
    "DIGEST",
]

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,100}$")
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(=(.*))?$")
_ARG_BASE = re.compile(r"^ARG BASE_IMAGE=(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class DockerEntry:
    name: str
    path: Path  # docker/<name>
    root: Path  # the repository: the build context
    image: str  # repository part, e.g. ckvision/image-classification-onnxruntime-cpu
    tag: str
    experiment_dir: str  # where ck benchmark --record writes, inside the image
    group_gid: int  # the fixed group that may write in the image
    default_base: str  # ARG BASE_IMAGE default of the Dockerfile
    gpus: bool = False
    volumes: Mapping[str, str] = field(default_factory=dict)  # named volume -> mount point
    extra_env: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.tag}"

    @property
    def dockerfile(self) -> Path:
        return self.path / "Dockerfile"

    def wheels_dir(self) -> str:
        return f"docker/{self.name}/wheels"


def _docker_dir(root: Path) -> Path:
    return Path(root) / "docker"


def entry_names(root: Path) -> list[str]:
    base = _docker_dir(root)
    return (
        sorted(p.name for p in base.iterdir() if (p / ".cm" / "meta.json").is_file())
        if base.is_dir()
        else []
    )


def load_entry(root: Path, name: str) -> DockerEntry:
    if not _NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a docker entry name (lower-case letters, digits, '.', '_', '-')"
        )
    path = _docker_dir(root) / name
    meta_file = path / ".cm" / "meta.json"
    if not meta_file.is_file():
        known = ", ".join(entry_names(root)) or "none"
        raise ConfigError(f"no docker:{name} entry in {_docker_dir(root)} (known: {known})")
    meta: dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
    ours = meta.get("ckvision", {})
    match = _ARG_BASE.search((path / "Dockerfile").read_text(encoding="utf-8"))
    if not match:
        raise ConfigError(f"{path / 'Dockerfile'} has no 'ARG BASE_IMAGE=...' line")
    return DockerEntry(
        name=name,
        path=path,
        root=Path(root),
        image=ours["image"],
        tag=ours["tag"],
        experiment_dir=ours["experiment_dir"],
        group_gid=int(ours["group_gid"]),
        default_base=match.group(1),
        gpus=bool(ours.get("gpus", False)),
        volumes=dict(ours.get("volumes", {})),
        extra_env=tuple(ours.get("extra_env", ())),
    )


def read_env_list(
    entry: DockerEntry, path: Path | None = None, host_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The entry's env.list (docker --env-file syntax), validated: known names, valid values.

    ``NAME`` alone takes the value from ``host_env`` (as docker does) and is dropped if unset.
    """
    from ckvision.config import ENV_VARS, RunConfig
    from ckvision.containers.entrypoint import NO_VOLUME_ENV

    path = entry.path / "env.list" if path is None else Path(path)
    known = {var for var, _ in ENV_VARS.values()} | {"CK_BACKEND", NO_VOLUME_ENV, *entry.extra_env}
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            raise ConfigError(f"{path}:{number}: not NAME=VALUE: {line!r}")
        name = match.group(1)
        if name not in known:
            raise ConfigError(
                f"{path}:{number}: unknown variable {name} (known: {', '.join(sorted(known))})"
            )
        if match.group(2) is not None:
            values[name] = match.group(3)
        elif host_env is not None and name in host_env:
            values[name] = host_env[name]
    RunConfig.from_env(values)  # a bad value fails here, before any container starts
    return values


def context_files(root: Path) -> list[str]:
    """Repository files the build context holds (``.dockerignore`` applied, as docker does)."""
    from docker.utils.build import exclude_paths

    ignore = Path(root) / ".dockerignore"
    patterns = (
        [
            ln.strip()
            for ln in ignore.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")
        ]
        if ignore.is_file()
        else []
    )
    return sorted(
        p
        for p in exclude_paths(str(root), patterns)
        if (Path(root) / p).is_file() and not (Path(root) / p).is_symlink()
    )


def write_context(entry: DockerEntry, out: io.BufferedIOBase, wheels: Iterable[Path] = ()) -> str:
    """Write the build context tar to ``out``; return its content hash (the cache key)."""
    digest = hashlib.sha256()
    members: list[tuple[str, Path]] = [
        (rel, entry.root / rel) for rel in context_files(entry.root) if not rel.endswith(".whl")
    ]
    members += [(f"{entry.wheels_dir()}/{w.name}", Path(w)) for w in sorted(wheels)]
    with tarfile.open(fileobj=out, mode="w") as tar:
        for arcname, src in members:
            info = tarfile.TarInfo(arcname)
            info.size = src.stat().st_size
            info.mode = 0o755 if src.stat().st_mode & 0o111 else 0o644
            with src.open("rb") as handle:  # wheels are large: stream, never read whole
                tar.addfile(info, handle)
                handle.seek(0)
                content = hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    content.update(block)
            digest.update(f"{arcname}\0{info.mode:o}\0".encode())
            digest.update(content.digest())
    return digest.hexdigest()
