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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def _prepare(spec: Mapping[str, Any], root: Path, where: str) -> tuple[Path, Path, bool]:
    import ray

    try:
        model, shipped_model = unpack(
            spec["model"], lambda: ray.get(spec["model_ref"]), root / "inputs"
        )
        dataset, shipped_data = unpack(
            spec["dataset"], lambda: ray.get(spec["dataset_ref"]), root / "inputs"
        )
    except (OSError, tarfile.TarError, CkVisionError) as err:
        raise NodePrepareError(
            f"node {where} cannot prepare the model and dataset: {err}"
        ) from None
    return model, dataset, shipped_model or shipped_data


def prepare_node(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray task run once per node before its first point: the inputs into the cache.

    Returns the node's :func:`node_info` and whether the inputs were shipped now;
    raises :class:`NodePrepareError` (one line) when the node cannot get them.
    """
    info = node_info()
    _model, _dataset, shipped = _prepare(spec, cache_root(), info["node"])
    return {**info, "shipped_inputs": shipped}


def run_point(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray task: ``spec`` holds the point's env, the input bundles and their refs."""
    from ckvision.experiments.record import collect_run, mlperf_submission_keys

    info = node_info()
    root = cache_root()
    model, dataset, shipped = _prepare(spec, root, info["node"])
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
        "shipped_inputs": shipped,
    }
    return record
