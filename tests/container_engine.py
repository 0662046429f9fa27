"""A real container engine for the tests, or a reason to skip.

Order: ``DOCKER_HOST`` or ``/var/run/docker.sock`` if they answer; else, as root with
``podman`` installed (Debian: see README "Containers"), a rootful ``podman system service``
with its configuration and image store in a fixed folder under /tmp, so images (the local
base, the built CPU image) stay cached from one test run to the next. The local base image
is made from Debian's packages (debootstrap + apt): no registry is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("CKVISION_TEST_ENGINE_DIR", "/tmp/ckvision-containers"))
LOCAL_BASE = "localhost/ckvision-bookworm-python3"
_MINBASE = "localhost/ckvision-bookworm-minbase"
_BASE_DOCKERFILE = """FROM localhost/ckvision-bookworm-minbase
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \\
    ca-certificates && rm -rf /var/lib/apt/lists/*
"""


class NoEngine(Exception):
    """Why there is no usable engine here (the tests skip with it)."""


def _podman_env() -> dict[str, str]:
    STATE.mkdir(parents=True, exist_ok=True)
    conf, storage = STATE / "containers.conf", STATE / "storage.conf"
    hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout
    nofile = hard.strip() if hard.strip().isdigit() else "1048576"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    storage.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{STATE}/graph"\nrunroot = "{STATE}/run"\n'
    )
    return dict(os.environ, CONTAINERS_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(storage))


def _ping(timeout: int = 30) -> Any:
    import docker

    deadline = time.monotonic() + timeout
    while True:
        try:
            client = docker.from_env(timeout=900)
            client.ping()
            return client
        except Exception as err:  # the SDK raises requests/socket errors while it starts
            if time.monotonic() > deadline:
                raise NoEngine(
                    f"engine at {os.environ.get('DOCKER_HOST')} does not answer: {err}"
                ) from err
            time.sleep(0.5)


def start_engine() -> tuple[Any, subprocess.Popen[bytes] | None]:
    """(client, podman service process we started or None); raises NoEngine."""
    try:
        import docker  # noqa: F401
    except ImportError as err:
        raise NoEngine("the docker SDK is not installed (pip install docker==7.2.0)") from err
    if os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists():
        return _ping(5), None
    podman = shutil.which("podman")
    if podman is None or os.geteuid() != 0:
        raise NoEngine(
            "no DOCKER_HOST, no /var/run/docker.sock, and no rootful podman "
            "(apt-get install podman buildah runc debootstrap, as root)"
        )
    env = _podman_env()
    sock = STATE / "podman.sock"
    sock.unlink(missing_ok=True)
    log = (STATE / "service.log").open("ab")
    proc = subprocess.Popen(
        [podman, "system", "service", "--time=0", f"unix://{sock}"],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    os.environ.update(
        DOCKER_HOST=f"unix://{sock}",
        CONTAINERS_CONF=env["CONTAINERS_CONF"],
        CONTAINERS_STORAGE_CONF=env["CONTAINERS_STORAGE_CONF"],
    )
    try:
        return _ping(60), proc
    except NoEngine:
        proc.terminate()
        raise


def ensure_local_base(client: Any, budget_s: int = 600) -> str:
    """The local Debian base with python3.11 (debootstrap + apt, ~1 min once); its name."""
    import docker

    try:
        client.images.get(LOCAL_BASE)
        return LOCAL_BASE
    except docker.errors.ImageNotFound:
        pass
    debootstrap = shutil.which("debootstrap")
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if debootstrap is None or not sources.is_file():
        raise NoEngine(f"no {LOCAL_BASE} and no debootstrap/Debian mirror to make it")
    mirror = next(
        ln.split()[1] for ln in sources.read_text().splitlines() if ln.startswith("URIs:")
    )
    rootfs = STATE / "rootfs"
    if not (rootfs / "usr" / "bin" / "apt-get").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(
            [debootstrap, "--variant=minbase", "bookworm", str(rootfs), mirror],
            check=True,
            capture_output=True,
            timeout=budget_s,
        )
    archive = STATE / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    with archive.open("rb") as data:
        client.api.import_image_from_data(data.read(), repository=_MINBASE, tag="latest")
    archive.unlink()
    context = STATE / "base-context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(_BASE_DOCKERFILE)
    client.images.build(path=str(context), tag=LOCAL_BASE, rm=True, forcerm=True)
    return LOCAL_BASE
