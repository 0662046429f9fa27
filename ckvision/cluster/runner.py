"""The driver side: sweep points as Ray tasks, each returned point recorded here.

:class:`ClusterPointRunner` is a :class:`~ckvision.sweeps.points.CkPointRunner` (same
point ids, entry names, tags, resume) whose points run on a Ray cluster instead of
``ck benchmark``. Each point is one task (:func:`ckvision.cluster.node.run_point`) asking
for the per-node exclusive resource :data:`SLOT` (two measurements never share a node;
``shared_nodes`` drops it) and for whole GPUs when the point uses a GPU. A task whose
node dies is retried once on another node (Ray's ``max_retries=1``); a point that still
fails is reported "not run" in one line. Only a whole returned record is written, as a
CK experiment entry in the user's ``$CK_REPOS/local/experiment``
(:func:`ckvision.experiments.offline_writer.record_point`, the layout ``ck`` writes),
so a point is never recorded half and a killed driver keeps every point it recorded.
Ctrl-C cancels the tasks (their workers and children are killed) before it returns.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ckvision.cluster.bundle import pack_dir, pack_files
from ckvision.cluster.connection import one_line, pin, ray_error
from ckvision.errors import CkVisionError, ConfigError, RunError
from ckvision.experiments.entries import experiment_root
from ckvision.program import MODEL_SIDECAR, ProgramInputs
from ckvision.sweeps.points import CkPointRunner, Point, PointResult, check_tags

__all__ = ["ClusterPointRunner", "NodePoint", "SLOT"]

SLOT = "ckvision_slot"
_CANCEL_WAIT_S = 30.0


@dataclass(frozen=True)
class NodePoint(Point):
    """A point pinned to one node (``--each-node``)."""

    node_id: str = ""
    node: str = ""


@dataclass(frozen=True)
class _Task:
    point: Point
    attempt: int
    node: str  # the node it was pinned to ("" = Ray's choice)
    pinned: bool  # pinned by the user (--each-node): never moved


def _uses_gpu(backend: str, env: Mapping[str, str]) -> bool:
    return (
        backend == "tensorrt"
        or env.get("CK_DEVICE") == "cuda"
        or env.get("CK_ORT_PROVIDER") in ("cuda", "tensorrt")
    )


def _how(info: Mapping[str, Any]) -> str:
    """ ", model and dataset shipped" and the like: how a node got its inputs this time."""
    how = dict(info.get("inputs") or {})
    said = {
        "shipped": "shipped",
        "ck": "from its CK",
        "ck-installed": "installed through its CK",
    }
    parts = [f"{role} {said[h]}" for role, h in how.items() if h in said]
    if how and all(h == "shipped" for h in how.values()):
        parts = ["model and dataset shipped"]
    return "".join(f", {p}" for p in parts)


class ClusterPointRunner(CkPointRunner):
    """Runs points as Ray tasks and records each returned one on this machine."""

    what = "sweep"  # how its lines start

    def __init__(
        self,
        backend: str,
        tags: Sequence[str],
        base_env: Mapping[str, str],
        fingerprint: Mapping[str, Any],
        inputs: ProgramInputs,
        *,
        each_node: bool = False,
        shared_nodes: bool = False,
        gpus_per_point: int | None = None,
        packages: Mapping[str, tuple[str, str]] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(
            backend, [*tags, "cluster"], base_env, {**fingerprint, "cluster": True}, log=log
        )
        gpu = _uses_gpu(backend, self.base_env)
        if gpus_per_point is None:
            gpus_per_point = 1 if gpu else 0
        if gpus_per_point < 0 or (gpu and gpus_per_point < 1):
            raise ConfigError(
                f"--gpus-per-point={gpus_per_point}: a GPU point asks for 1 or more whole GPUs"
            )
        self.inputs = inputs
        # role -> (env var, CK package tags) of the inputs that came from this machine's
        # CK packages: a node with CK gets them through its own CK (installed if missing)
        self.packages = dict(packages or {})
        self.each_node = each_node
        self.shared_nodes = shared_nodes
        self.gpus_per_point = gpus_per_point
        self.not_run: list[str] = []
        self._ray: Any = None
        self._task: Any = None
        self._shipped: dict[str, Any] = {}
        self.ready: list[str] = []  # node ids that prepared the inputs
        self.node_infos: dict[str, dict[str, Any]] = {}  # node id -> its node_info()
        self.bad_nodes: dict[str, str] = {}  # node id -> why it cannot prepare (one line)
        self._turn = 0

    # --- identity: a pinned point is a different point on each node ---
    def point_id(self, point: Point) -> str:
        base = super().point_id(point)
        node_id = getattr(point, "node_id", "")
        if not node_id:
            return base
        return hashlib.sha256(f"{base}/{node_id}".encode()).hexdigest()[:16]

    # --- the cluster ---
    def attach(self, ray: Any) -> None:
        """Use a connected ``ray``: put the inputs in the object store, prepare each node."""
        from ckvision.cluster.node import prepare_node, run_point

        self._ray = ray
        self._task = ray.remote(run_point)
        model = self.inputs.model_path
        sidecar = model.parent / MODEL_SIDECAR
        files = [model, sidecar] if sidecar.is_file() else [model]
        model_bundle, model_bytes = pack_files(files, model.name)
        data_bundle, data_bytes = pack_dir(self.inputs.dataset_dir)
        self._shipped = {
            "model": model_bundle,
            "model_ref": ray.put(model_bytes),
            "dataset": data_bundle,
            "dataset_ref": ray.put(data_bytes),
            "packages": self.packages,
        }
        nodes = self.nodes()  # no usable node: one line now, before any point
        refs = {
            ray.remote(prepare_node)
            .options(num_cpus=0, max_retries=0, scheduling_strategy=pin(str(n["NodeID"])))
            .remote(self._shipped): str(n["NodeID"])
            for n in nodes
        }
        for ref, node_id in refs.items():
            try:
                info = ray.get(ref)
            except (CkVisionError, ray_error()) as err:
                self.bad_nodes[node_id] = one_line(err)
                self.log(f"cluster: {one_line(err)}; its points are not run")
                continue
            self.ready.append(node_id)
            self.node_infos[node_id] = info
            self.log(f"cluster: node {info['node']} ready ({info['hardware']}{_how(info)})")
        if not self.ready:
            raise RunError("no node of the cluster could prepare the model and dataset")

    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes that can take a point (with the exclusive slot unless shared)."""
        alive = [n for n in self._ray.nodes() if n.get("Alive")]
        want = SLOT if not self.shared_nodes else "CPU"
        usable = [n for n in alive if n.get("Resources", {}).get(want, 0) >= 1]
        if self.gpus_per_point:
            usable = [
                n for n in usable if n.get("Resources", {}).get("GPU", 0) >= self.gpus_per_point
            ]
        if not usable:
            raise ConfigError(
                f"no node of the cluster offers {want}=1"
                + (f" and {self.gpus_per_point} GPU(s)" if self.gpus_per_point else "")
                + f"; start each node with ray start --resources='{{\"{SLOT}\": 1}}' "
                "(or pass --shared-nodes)"
            )
        return sorted(usable, key=lambda n: str(n["NodeID"]))

    def _options(self, node_id: str) -> dict[str, Any]:
        """Ray task options: the node's slot, whole GPUs; pinned points are not retried by
        Ray (a pinned point the driver placed is retried by the driver, elsewhere)."""
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0 if node_id else 1}
        if not self.shared_nodes:
            options["resources"] = {SLOT: 1}
        if self.gpus_per_point:
            options["num_gpus"] = self.gpus_per_point
        if node_id:
            options["scheduling_strategy"] = pin(node_id)
        return options

    def _expand(self, points: Sequence[Point]) -> list[Point]:
        if not self.each_node:
            return list(points)
        nodes = self.nodes()
        return [
            NodePoint(
                p.kind,
                f"{p.label} @{n['NodeManagerHostname']}/{str(n['NodeID'])[:8]}",
                p.env,
                p.tags,
                node_id=str(n["NodeID"]),
                node=f"{n['NodeManagerHostname']}/{str(n['NodeID'])[:8]}",
            )
            for n in nodes
            for p in points
        ]

    # --- running ---
    def run(self, point: Point) -> PointResult:
        before = len(self.not_run)
        results = self.run_all([point])
        if not results:
            raise RunError(self.not_run[-1] if len(self.not_run) > before else "point not run")
        return results[0]

    def _not_run(self, point: Point, why: str) -> None:
        line = f"{self.what}: {point.kind} {point.label}: not run: {why}"
        self.not_run.append(line)
        self.log(line)

    def _placement(self, point: Point, attempt: int, avoid: str = "") -> str:
        """The node a point is pinned to ("" = wherever Ray schedules it): its own node
        with --each-node; the ready nodes in turn when some node could not prepare."""
        pinned = getattr(point, "node_id", "")
        if pinned or (not self.bad_nodes and not avoid):
            return str(pinned)
        ready = [n for n in self.ready if n != avoid] or self.ready
        self._turn += 1
        return ready[(self._turn + attempt) % len(ready)]

    def _submit(self, point: Point, attempt: int, avoid: str = "") -> tuple[Any, _Task]:
        node_id = self._placement(point, attempt, avoid)
        spec = {
            "env": {**self.base_env, **point.env},
            "label": f"{point.kind} {point.label}",
            **self._shipped,
        }
        ref = self._task.options(**self._options(node_id)).remote(spec)
        return ref, _Task(point, attempt, node_id, pinned=bool(getattr(point, "node_id", "")))

    def run_all(self, points: Sequence[Point]) -> list[PointResult]:
        """Every point not yet recorded runs as a task; results in the points' order."""
        if self._ray is None:
            raise RunError("ClusterPointRunner.attach(ray) was not called")
        results: dict[int, PointResult] = {}
        pending: dict[Any, tuple[int, _Task]] = {}
        try:
            for index, point in enumerate(self._expand(points)):
                skipped = self._skip_or_submit(point, pending, index)
                if skipped is not None:
                    results[index] = skipped
            while pending:
                done, _ = self._ray.wait(list(pending), num_returns=1)
                index, task = pending.pop(done[0])
                outcome = self._collect(done[0], task)
                if isinstance(outcome, PointResult):
                    results[index] = outcome
                elif outcome is not None:
                    pending[outcome[0]] = (index, outcome[1])
        except KeyboardInterrupt:
            self._cancel(list(pending))
            raise
        note = self.hardware_note()
        if note:
            self.log(note)
        return [results[i] for i in sorted(results)]

    def _skip_or_submit(
        self, point: Point, pending: dict[Any, tuple[int, _Task]], index: int
    ) -> PointResult | None:
        """The recorded result (resume), or None after submitting the point (or reporting
        it not run: its node could not prepare)."""
        name = self.entry_name(point)
        existing = self.recorded(point)
        if existing is not None:
            self.log(f"{self.what}: {point.kind} {point.label}: already recorded ({name}), skipped")
            result = PointResult(point, existing.record, name, skipped=True)
            self.done.append(result)
            return result
        node_id = getattr(point, "node_id", "")
        if node_id in self.bad_nodes:
            self._not_run(point, self.bad_nodes[node_id])
            return None
        self._clear_unfinished(name)
        ref, task = self._submit(point, 0)
        pending[ref] = (index, task)
        self.log(f"{self.what}: {point.kind} {point.label}: submitted ({name})")
        return None

    def _clear_unfinished(self, name: str) -> None:
        if (experiment_root() / name).is_dir():  # a driver killed while recording
            self.log(f"{self.what}: removing the unfinished entry {name}")
            shutil.rmtree(experiment_root() / name)

    def _collect(self, ref: Any, task: _Task) -> PointResult | tuple[Any, _Task] | None:
        """The point's result, recorded; or its retry elsewhere; or None (not run)."""
        point = task.point
        try:
            record = self._ray.get(ref)
        except (CkVisionError, ray_error()) as err:
            from ray.exceptions import RayTaskError

            system = not isinstance(err, (RayTaskError, CkVisionError))  # node or worker died
            if system and task.node and not task.pinned and task.attempt == 0:
                self.log(f"{self.what}: {point.kind} {point.label}: {one_line(err)}; retrying")
                return self._submit(point, 1, avoid=task.node)
            self._not_run(point, one_line(err))
            return None
        result = PointResult(point, record, self._record(point, record))
        self.done.append(result)
        node = record["cluster"]
        shipped = _how(node)
        self.log(
            f"{self.what}: {point.kind} {point.label}: recorded ({result.entry}) "
            f"on {node['node']}{shipped}"
        )
        return result

    def _record(self, point: Point, record: dict[str, Any]) -> str:
        from ckvision.experiments.offline_writer import record_point

        name = self.entry_name(point)
        node = record["cluster"]
        node_tag = "node." + re.sub(r"[^A-Za-z0-9_.+-]", "-", str(node["node"]))[:59]
        tags = [*self.tags, *check_tags(point.tags), point.kind.replace("-", "_"), node_tag]
        env = {**self.base_env, **point.env}
        record_point(
            experiment_root(),
            name,
            tags=tags,
            meta={"ckvision": "sweep", "kind": point.kind, "label": point.label},
            characteristics={"run": record},
            features={"cluster": {k: node[k] for k in ("node", "hostname", "hardware")}},
            choices={"data_uoa": self.program, "module_uoa": "program", "env": env},
        )
        return name

    def _cancel(self, refs: list[Any]) -> None:
        """Ctrl-C: kill every running point (worker and child) and wait until they are."""
        if not refs:
            return
        self.log(f"{self.what}: cancelling {len(refs)} point(s) on the cluster")
        for ref in refs:
            self._ray.cancel(ref, force=True)
        self._ray.wait(refs, num_returns=len(refs), timeout=_CANCEL_WAIT_S)

    def hardware_note(self) -> str | None:
        """One line when the recorded points ran on different hardware."""
        kinds = sorted(
            {str((r.record.get("cluster") or {}).get("hardware")) for r in self.done} - {"None"}
        )
        if len(kinds) < 2:
            return None
        return (
            f"sweep: the points ran on {len(kinds)} kinds of hardware ({'; '.join(kinds)}); "
            "each row is one node's measurement, never averaged across them"
        )
