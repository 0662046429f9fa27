"""``submission run --cluster ADDRESS``: the submission's runs as Ray tasks on ONE node.

The runs go through the sweeps' cluster point runner
(:class:`ckvision.cluster.ClusterPointRunner`: the inputs shipped to the nodes, one task
per run, ``python -m ckvision run`` on the node, Ctrl-C cancels), one after another. A
submission describes one system, so every run is pinned to one node: the one the user
names (``--node``), else the node of the runs already recorded, else the node the first
run lands on. Each returned run is recorded on this machine in ``<work>/experiment``
exactly as a local ``submission run`` records it
(:func:`ckvision.submission.runner.record_plan`), plus the node's provenance in the
entry's features; a valid recorded run made on that node with the same settings is
reused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.cluster.runner import ClusterPointRunner, NodePoint
from ckvision.config import RunConfig
from ckvision.errors import CkVisionError, ConfigError
from ckvision.program import ProgramInputs
from ckvision.submission.runner import RunPlan, find_reusable, record_plan, valid_run
from ckvision.sweeps.points import Point

__all__ = ["SubmissionOnCluster", "PLAN_SETTINGS"]

# the settings a plan itself decides (run_plans changes them per scenario and kind)
PLAN_SETTINGS = ("scenario", "mode", "compliance_test", "target_qps", "target_latency_ms")


@dataclass(frozen=True)
class _PlanPoint(NodePoint):
    plan: RunPlan | None = None
    entry: str = ""


class SubmissionOnCluster(ClusterPointRunner):
    """A :class:`~ckvision.submission.runner.PlanExecutor` on a Ray cluster."""

    what = "submission"

    def __init__(
        self,
        backend: str,
        inputs: ProgramInputs,
        *,
        experiment_dir: Path,
        tags: Iterable[str],
        explicit: Iterable[str],
        node: str = "",
        gpus_per_point: int | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(
            backend, ["submission"], {}, {}, inputs, gpus_per_point=gpus_per_point, log=log
        )
        self.experiment_dir = experiment_dir
        self.submission_tags = list(tags)
        # what the node's `ckvision run` is told; the rest it auto-tunes, as a local run
        self.explicit = sorted({*explicit, *PLAN_SETTINGS})
        self.wanted_node = node
        self.node_id = ""

    def attach(self, ray: Any) -> None:
        super().attach(ray)
        if self.wanted_node:
            self.node_id = self._named_node(self.wanted_node)
            self.log(f"submission: every run on node {self._describe(self.node_id)}")

    def _named_node(self, name: str) -> str:
        """The one ready node whose id (a prefix of 8+ characters), host name or IP is
        ``name``; one line otherwise."""
        alive = {str(n["NodeID"]): n for n in self._ray.nodes() if n.get("Alive")}
        keys = ("NodeManagerHostname", "NodeManagerAddress")

        def matches(node_id: str) -> bool:
            if len(name) >= 8 and node_id.startswith(name):
                return True
            return name in (alive.get(node_id, {}).get(k) for k in keys)

        found = [node_id for node_id in self.ready if matches(node_id)]
        if len(found) != 1:
            known = ", ".join(self._describe(n) for n in self.ready)
            what = "no ready node" if not found else f"{len(found)} nodes"
            raise ConfigError(
                f"--node {name!r}: {what} of the cluster match; "
                f"name one by id (8+ characters), host name or IP: {known}"
            )
        return found[0]

    def _describe(self, node_id: str) -> str:
        for n in self._ray.nodes():
            if str(n["NodeID"]) == node_id:
                return f"{n['NodeManagerHostname']}/{node_id[:8]} ({n['NodeManagerAddress']})"
        return node_id[:8]

    # --- PlanExecutor ---
    def reusable(self, experiment_dir: Path, name: str, plan: RunPlan) -> bool:
        def accept(record: Mapping[str, Any]) -> bool:
            return self._same_run(record, plan)

        found = find_reusable(experiment_dir, name, plan.config, self.inputs, accept)
        if found is not None and not self.node_id:
            self._pin(str(found["cluster"]["node_id"]))
        return found is not None

    def _same_run(self, record: Mapping[str, Any], plan: RunPlan) -> bool:
        """Made on our node (or the same host and hardware, when that node is gone), with
        the settings we send, on this model and this dataset (the shipped archive)."""
        node = record.get("cluster") or {}
        if not node.get("node_id"):
            return False
        if self.node_id and node["node_id"] != self.node_id:
            mine = self.node_infos.get(self.node_id, {})
            same_kind = all(mine.get(k) == node.get(k) for k in ("hostname", "hardware"))
            if str(node["node_id"]) in self.node_infos or not same_kind:
                return False  # another node of this cluster, or other hardware
        if not self.node_id and str(node["node_id"]) not in self.ready:
            return False
        sent = plan.config.as_env(self.explicit)
        try:
            recorded = RunConfig.from_record(record.get("config") or {})
        except (TypeError, ValueError, CkVisionError):  # a record of another version
            return False
        if recorded.as_env(self.explicit) != sent:
            return False
        digest = self._shipped["dataset"].digest
        if digest not in Path(str((record.get("dataset") or {}).get("path", ""))).parts:
            return False
        return valid_run(record, plan.config, self.inputs)

    def make_run(self, plan: RunPlan, name: str) -> dict[str, Any]:
        point = _PlanPoint(
            "run",
            plan.label,
            plan.config.as_env(self.explicit),
            node_id=self.node_id,
            plan=plan,
            entry=name,
        )
        return super().run(point).record

    def _pin(self, node_id: str) -> None:
        self.node_id = node_id
        self.log(f"submission: every run of this submission on node {self._describe(node_id)}")

    # --- the cluster runner's hooks ---
    def entry_name(self, point: Point) -> str:
        return str(getattr(point, "entry", "")) or super().entry_name(point)

    def recorded(self, point: Point) -> None:
        return None  # reuse is decided by run_plans, before the run

    def _clear_unfinished(self, name: str) -> None:
        return None  # an entry gains a run; it is never removed (as a local run)

    def _record(self, point: Point, record: dict[str, Any]) -> str:
        plan = getattr(point, "plan", None)
        if plan is None:
            raise TypeError("a submission run point carries its plan")
        node = record["cluster"]
        name = self.entry_name(point)
        record_plan(
            self.experiment_dir,
            name,
            plan,
            self.inputs.contract.name,
            self.submission_tags,
            record,
            features={"cluster": {k: node[k] for k in ("node", "node_id", "hostname", "hardware")}},
        )
        if not self.node_id:
            self._pin(str(node["node_id"]))
        return name
