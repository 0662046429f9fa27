"""What a Ray task does on a node: prepare the inputs, run the point in a child, return it.

:func:`run_point` is the task's body. The point runs as ``python -m ckvision run`` (our
one run pipeline, the command the CK programs run) in a child process of the Ray
worker (:mod:`.child`: it dies with the worker), in a run directory of its own under
the node cache. The record it returns is :func:`~ckvision.experiments.record.collect_run`
of that directory plus ck-mlperf's keys (as CK's post-processing stores it) and
``record["cluster"]``: which node ran it, its hardware, when it started and finished.
Nothing is written on the node that outlives the task except the input cache.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from ckvision.cluster.bundle import cache_root, unpack
from ckvision.cluster.child import PARENT_ENV
from ckvision.errors import CkVisionError, RunError

__all__ = ["run_point", "prepare_node", "node_info", "NodePrepareError", "RUNS_DIR"]

RUNS_DIR = "runs"
_RUN_DIR = re.compile(r"^run-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$")


class NodePrepareError(RunError):
    """A node cannot get the model or dataset: its points are not run."""


def _gpu_names(ids: list[Any]) -> list[str]:
    smi = shutil.which("nvidia-smi")
    if not ids or smi is None:
        return []
    try:
        out = subprocess.run(  # noqa: S603 - argument list, no shell
            [smi, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = dict(line.split(", ", 1) for line in out.splitlines() if ", " in line)
    return [names.get(str(i), f"GPU {i}") for i in ids]


def node_info() -> dict[str, Any]:
    """Which node this is and what hardware it has (for the record and the tables)."""
    import ray

    from ckvision.provenance import collect_provenance

    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    host: dict[str, Any] = dict(collect_provenance()["host"])  # type: ignore[call-overload]
    gpus = list(ray.get_gpu_ids())
    gpu_names = _gpu_names(gpus)
    hardware = f"{host.get('cpu_model')} x{host.get('cpu_affinity')}"
    if gpu_names:
        hardware += " + " + ", ".join(gpu_names)
    return {
        "node_id": node_id,
        "node": f"{host.get('hostname')}/{node_id[:8]}",
        "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
        "hostname": host.get("hostname"),
        "hardware": hardware,
        "gpus": [str(g) for g in gpus],
        "gpu_names": gpu_names,
    }


def _clear_stale_runs(runs: Path, hostname: str) -> None:
    """Run dirs of this host whose worker is gone (killed mid-point) are removed."""
    if not runs.is_dir():
        return
    for path in runs.iterdir():
        match = _RUN_DIR.match(path.name)
        if not match or match.group("host") != hostname:
            continue
        try:
            os.kill(int(match.group("pid")), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue


def _error_line(log: Path, returncode: int) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errors = [ln for ln in lines if ln.startswith("ckvision: error:")]
    line = errors[-1] if errors else (lines[-1] if lines else "")
    return f"exit status {returncode}: {line[:500]}" if line else f"exit status {returncode}"


def _ck_usable() -> bool:
    """CK runs on this node and knows our repository (so our packages can be installed)."""
    from ckvision.ck.setup import repo_known

    try:
        return repo_known()
    except CkVisionError:  # no ck command, or one that fails
        return False


def _from_ck(role: str, var: str, tags: str, where: str) -> tuple[Path, bool]:
    """The ``role`` input as this node's CK package with ``tags`` sets ``var``, installed
    through CK (``ckvision ck-install``'s checked install) when missing; returns the path
    and whether it was installed now. One line when the node cannot."""
    from ckvision.ck.deps import install, installed_env_value

    try:
        value = installed_env_value(tags, var)
        installed = not value
        if installed:
            install(tags)
            value = installed_env_value(tags, var)
    except CkVisionError as err:
        raise NodePrepareError(
            f"node {where} cannot install the {role} package through CK ({tags}): {err}"
        ) from None
    if not value:
        raise NodePrepareError(f"node {where}: CK installed {tags}, but no env entry sets {var}")
    return Path(value), installed


def _fetch(ref: Any) -> Callable[[], bytes]:
    """Reads an archive from Ray's object store, when called."""
    import ray

    return lambda: cast(bytes, ray.get(ref))


def _prepare(spec: Mapping[str, Any], where: str) -> tuple[dict[str, Path], dict[str, str]]:
    """The model and dataset paths on this node, and how each came (``ck``,
    ``ck-installed``, ``shipped`` or ``cached``): through this node's CK when the driver's
    came from CK packages and CK runs here, else the driver's files from the object store."""

    packages = dict(spec.get("packages") or {})
    use_ck = bool(packages) and _ck_usable()
    paths: dict[str, Path] = {}
    how: dict[str, str] = {}
    for role in ("model", "dataset"):
        if use_ck and role in packages:
            var, tags = packages[role]
            paths[role], installed = _from_ck(role, var, tags, where)
            how[role] = "ck-installed" if installed else "ck"
            continue
        try:
            paths[role], shipped = unpack(
                spec[role], _fetch(spec[f"{role}_ref"]), cache_root() / "inputs"
            )
        except (OSError, tarfile.TarError, CkVisionError) as err:
            raise NodePrepareError(
                f"node {where} cannot prepare the model and dataset: {err}"
            ) from None
        how[role] = "shipped" if shipped else "cached"
    return paths, how


def prepare_node(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray task run once per node before its first point: the inputs into the cache.

    Returns the node's :func:`node_info` and whether the inputs were shipped now;
    raises :class:`NodePrepareError` (one line) when the node cannot get them.
    """
    info = node_info()
    _paths, how = _prepare(spec, info["node"])
    return {**info, **_inputs_info(how)}


def _inputs_info(how: Mapping[str, str]) -> dict[str, Any]:
    return {"shipped_inputs": "shipped" in how.values(), "inputs": dict(how)}


def run_point(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray task: ``spec`` holds the point's env, the input bundles and their refs."""
    from ckvision.experiments.record import collect_run, mlperf_submission_keys

    info = node_info()
    root = cache_root()
    paths, how = _prepare(spec, info["node"])
    model, dataset = paths["model"], paths["dataset"]
    _clear_stale_runs(root / RUNS_DIR, str(info["hostname"]))
    run_dir = root / RUNS_DIR / f"run-{info['hostname']}-{os.getpid()}-{secrets.token_hex(4)}"
    run_dir.mkdir(parents=True)
    env = {**os.environ, **dict(spec["env"]), PARENT_ENV: str(os.getpid())}
    if "OMP_NUM_THREADS" not in spec["env"]:  # Ray's worker sets it to the task's 1 CPU: a
        env.pop("OMP_NUM_THREADS", None)  # point gets it only from the sweep's --env
    command = [
        sys.executable,
        "-m",
        "ckvision.cluster.child",
        "--model",
        str(model),
        "--dataset",
        str(dataset),
        "--output-dir",
        str(run_dir),
        "--quiet",
    ]
    started = time.time()
    try:
        with open(run_dir / "point.log", "wb") as log:
            child = subprocess.Popen(  # noqa: S603 - argument list, no shell
                command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                returncode = child.wait()
            except BaseException:  # ray.cancel: KeyboardInterrupt in this worker
                child.kill()
                child.wait()
                raise
        finished = time.time()
        if returncode != 0:
            raise RunError(
                f"{spec['label']} on node {info['node']}: "
                f"{_error_line(run_dir / 'point.log', returncode)}"
            )
        record = collect_run(run_dir)
        record.update(mlperf_submission_keys(run_dir))  # as CK's post-processing stores it
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    record["cluster"] = {
        **info,
        "started": started,
        "finished": finished,
        **_inputs_info(how),
    }
    return record
