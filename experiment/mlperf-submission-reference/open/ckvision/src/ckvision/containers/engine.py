"""Build and run the ``docker/`` images through the Docker SDK for Python.

Works against Docker and against Podman's Docker-compatible API (``DOCKER_HOST``). Unlike
``ck build/run docker:...`` (which runs ``docker`` through a shell and ignores its exit
status), every step here is checked: engine reachable, base image present or pullable,
build result, volume usable, container exit status. Each failure is one line.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ckvision.containers.entries import DockerEntry, read_env_list, write_context
from ckvision.errors import BackendError, ConfigError, RunError

__all__ = [
    "connect",
    "build_image",
    "prepare_run",
    "run_image",
    "build_wheelhouse",
    "check_host_folder",
]

CONTEXT_LABEL = "org.ckvision.context-sha256"
STAGE_LABEL = "org.ckvision.build-stage"  # LABEL of each Dockerfile's build stage


def connect(timeout: int = 900) -> Any:
    """A Docker SDK client for DOCKER_HOST (or the default socket), checked with a ping."""
    try:
        import docker
    except ImportError as err:
        raise BackendError(
            "the Docker SDK is not installed: pip install 'ckvision[containers]' (docker==7.2.0)"
        ) from err
    where = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as err:  # the SDK raises DockerException, requests and socket errors
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, PermissionError) or "Permission denied" in reason:
            reason = f"no permission for the engine socket ({reason})"
        raise BackendError(
            f"no container engine at {where}: {reason}; start Docker, or "
            "podman system service and set DOCKER_HOST"
        ) from err
    return client


def build_wheelhouse(
    entry: DockerEntry, wheelhouse: Path, lock_dir: Path, log: Callable[[str], None] = print
) -> list[Path]:
    """``pip wheel`` every locked package into ``wheelhouse`` (the host's pip and index)."""
    locks = sorted(
        {*Path(lock_dir).glob("requirements-*.lock"), *entry.path.glob("requirements-*.lock")}
    )
    if not locks:
        raise ConfigError(
            f"no requirements-*.lock in {lock_dir}; run python -m ckvision docker lock"
        )
    wheelhouse.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheelhouse)]
    for lock in locks:
        cmd += ["-r", str(lock)]
    log(f"ckvision: wheelhouse {wheelhouse} ({', '.join(p.name for p in locks)})")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise BackendError(f"pip wheel for the image failed: {last}")
    return sorted(wheelhouse.glob("*.whl"))


def _check_base(client: Any, base: str, log: Callable[[str], None]) -> None:
    import docker

    try:
        client.images.get(base)
        return
    except docker.errors.ImageNotFound:
        pass
    log(f"ckvision: pulling base image {base}")
    try:
        client.images.pull(base)
    except docker.errors.APIError as err:
        reason = (getattr(err, "explanation", None) or str(err)).splitlines()[0]
        raise BackendError(
            f"base image {base} is not present and cannot be pulled: {reason}; "
            "mirror it and pass --base-image"
        ) from err


def build_image(
    client: Any,
    entry: DockerEntry,
    *,
    base: str | None,
    wheels: Sequence[Path],
    rebuild: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """Build ``entry``'s image (or reuse the one built from the same context); its reference."""
    import docker

    base = base or entry.default_base
    with tempfile.TemporaryFile() as context:
        key = write_context(entry, context, wheels)
        key = f"{key[:16]}-{_short(base)}"
        cached = f"{entry.image}:ctx-{key}"
        if not rebuild:
            try:
                client.images.get(cached).tag(entry.image, entry.tag)
                log(f"ckvision: {entry.reference} is up to date (context {key})")
                return entry.reference
            except docker.errors.ImageNotFound:
                pass
        _check_base(client, base, log)
        context.seek(0)
        log(f"ckvision: building {entry.reference} from {entry.dockerfile} on {base}")
        image_id = _stream_build(client, entry, context, base, key, rebuild, log)
    image = client.images.get(image_id)
    image.tag(entry.image, entry.tag)
    image.tag(entry.image, f"ctx-{key}")
    _drop_older(client, entry, f"ctx-{key}")
    _drop_older_stages(client, entry)
    log(f"ckvision: built {entry.reference} ({image.id[:19]})")
    return entry.reference


def _drop_older_stages(client: Any, entry: DockerEntry) -> None:
    """Remove this entry's untagged build-stage images but the newest (the next build's
    layer cache): each holds the build-only packages, GBs, and a build of a changed context
    leaves a new one behind."""
    import docker

    stages = client.images.list(filters={"dangling": True, "label": f"{STAGE_LABEL}={entry.name}"})
    stages.sort(key=_created, reverse=True)
    for image in stages[1:]:
        try:
            client.images.remove(image.id)
        except docker.errors.APIError:
            pass  # in use (a build running now): the next build removes it


def _drop_older(client: Any, entry: DockerEntry, keep: str) -> None:
    """Untag this entry's images built from older contexts (their layers go when unused)."""
    import docker

    for image in client.images.list(name=entry.image):
        for tag in image.tags:
            if tag.rsplit(":", 1)[-1].startswith("ctx-") and not tag.endswith(f":{keep}"):
                try:
                    client.images.remove(tag)
                except docker.errors.APIError:
                    pass  # still used by a container: keep it


def _stream_build(
    client: Any,
    entry: DockerEntry,
    context: Any,
    base: str,
    key: str,
    rebuild: bool,
    log: Callable[[str], None],
) -> str:
    """Run the build, echoing its output; the image id, or BackendError with the last line."""
    import docker

    image_id, last = "", "no output"
    try:
        for chunk in client.api.build(
            fileobj=context,
            custom_context=True,
            decode=True,
            rm=True,
            forcerm=True,
            dockerfile=str(entry.dockerfile.relative_to(entry.root)),
            nocache=rebuild,
            buildargs={"BASE_IMAGE": base},
            labels={CONTEXT_LABEL: key},
        ):
            if "error" in chunk:
                detail = str(chunk["error"]).strip().splitlines() or ["build error"]
                raise BackendError(
                    f"building {entry.reference} failed: {detail[-1]} (after: {last})"
                )
            text = str(chunk.get("stream", "")).rstrip()
            if text:
                log(text)
                last = text.splitlines()[-1]
                found = _BUILT.search(last)
                image_id = found.group(2) if found else image_id
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
    except docker.errors.APIError as err:
        raise BackendError(f"building {entry.reference} failed: {err.explanation}") from err
    if not image_id:
        raise BackendError(f"building {entry.reference} gave no image (last line: {last})")
    return image_id


_BUILT = re.compile(r"(^Successfully built |sha256:)([0-9a-f]+)$")
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?")


def _created(image: Any) -> tuple[float, int]:
    """When an image was made, comparable: (seconds, nanoseconds). Engines give seconds
    (Docker's list) or a UTC ISO time with up to 9 fraction digits (Podman's), whose
    strings do not sort by time."""
    value = image.attrs.get("Created", 0)
    if isinstance(value, int | float):
        return float(value), 0
    found = _ISO.match(str(value))
    if found is None:
        return 0.0, 0
    seconds = datetime.datetime.fromisoformat(found.group(1)).replace(tzinfo=datetime.UTC)
    return seconds.timestamp(), int((found.group(2) or "0")[:9].ljust(9, "0"))


def _short(base: str) -> str:
    import hashlib

    return hashlib.sha256(base.encode()).hexdigest()[:8]


def _writable_by(path: Path, uid: int, gid: int) -> bool:
    info = path.stat()
    if uid == 0:
        return True
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IWUSR and info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IWGRP and info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IWOTH and info.st_mode & stat.S_IXOTH)


def check_host_folder(path: Path, uid: int, gid: int) -> Path:
    """The experiment folder on the host: exists, is a folder, writable by uid:gid."""
    path = Path(path).absolute()
    if not path.exists():
        raise ConfigError(f"experiment folder {path} does not exist; create it first")
    if not path.is_dir():
        raise ConfigError(f"experiment folder {path} is not a folder")
    if not _writable_by(path, uid, gid) or not os.access(path, os.W_OK):
        raise ConfigError(
            f"experiment folder {path} is not writable by uid {uid} gid {gid} "
            f"(or is read-only); chown/chmod it or pass --user"
        )
    return path.resolve()


def prepare_run(
    entry: DockerEntry, *, experiments: Path, user: tuple[int, int], env_file: Path | None = None
) -> tuple[Path, dict[str, str]]:
    """Everything checkable before the engine is contacted: env.list, the host folder."""
    env = read_env_list(entry, env_file, os.environ)
    return check_host_folder(experiments, *user), env


def run_image(
    client: Any,
    entry: DockerEntry,
    *,
    host: Path,
    env: dict[str, str],
    user: tuple[int, int],
    command: Sequence[str],
    read_only: bool = False,
    check: bool = True,
    log: Callable[[str], None] = print,
    out: Callable[[bytes], Any] | None = None,
) -> int:
    """Run the image once with ``host`` mounted; its exit status (RunError if non-zero and
    ``check``)."""
    import docker

    uid, gid = user
    try:
        client.images.get(entry.reference)
    except docker.errors.ImageNotFound as err:
        raise ConfigError(
            f"image {entry.reference} is not built; run python -m ckvision "
            f"docker build {entry.name}"
        ) from err
    mode = "ro" if read_only else "rw"
    volumes: dict[str, dict[str, str]] = {str(host): {"bind": entry.experiment_dir, "mode": mode}}
    for volume, mount in entry.volumes.items():
        volumes[volume] = {"bind": mount, "mode": "rw"}
    extra: dict[str, Any] = {}
    if entry.gpus:
        extra["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    log(f"ckvision: running {entry.reference} as {uid}:{gid}, {host} -> {entry.experiment_dir}")
    container = client.containers.run(
        entry.reference,
        list(command) or None,
        user=f"{uid}:{gid}",
        group_add=[str(entry.group_gid)],
        environment=env,
        volumes=volumes,
        detach=True,
        **extra,
    )
    write = out or _stdout
    try:
        for chunk in container.logs(stream=True, follow=True):
            write(chunk)
        status = int(container.wait().get("StatusCode", -1))
    except KeyboardInterrupt:
        container.stop(timeout=10)
        raise
    finally:
        container.remove(force=True)
    if status != 0 and check:
        failed = RunError(f"{entry.reference} exited with status {status}; see its output above")
        failed.exit_code = status  # the container's own status is ours
        raise failed
    return status


def _stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
