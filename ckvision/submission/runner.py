"""``submission run``: every run a division and scenario set needs, resumable.

Per scenario: an accuracy run on the whole dataset, a performance run, TEST01 and
TEST04 (the official audit configs, :mod:`ckvision.harness.settings`), each made by the
run pipeline (:func:`ckvision.program.run_program`, as ``ckvision run`` makes it) in
``<work>/runs/<Scenario>/<kind>/`` and recorded as a CK experiment entry in
``<work>/experiment/`` (ck's own layout, :mod:`ckvision.experiments.offline_writer`).

Resumable: a run whose entry already holds a valid record made with the same settings,
model file and dataset is reused; an interrupted run recorded nothing and is made again.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ckvision.config import Mode, RunConfig, Scenario
from ckvision.errors import ConfigError
from ckvision.experiments.entries import find_entries, iter_runs
from ckvision.experiments.offline_writer import record_point
from ckvision.program import ProgramInputs, run_program
from ckvision.submission import KINDS

__all__ = [
    "RunPlan",
    "PlanExecutor",
    "plan_runs",
    "run_plans",
    "record_plan",
    "valid_run",
    "OFFICIAL_MIN_DURATION_S",
    "entry_name",
]

OFFICIAL_MIN_DURATION_S = 600.0
# config fields that must match for a recorded run to be reused (progress and the
# watchdog do not change what is measured)
_IGNORED_FIELDS = {"progress", "batch_timeout_s", "verbose", "autotune"}
_OFFLINE_SLACK = 1.1  # LoadGen issues 1.1 x the min duration's samples in Offline
_SETUP_S = 15.0
_QPS_SCENARIOS = (Scenario.OFFLINE, Scenario.SERVER)  # load, warm up, record: a guess for the ETA


@dataclass(frozen=True)
class RunPlan:
    scenario: Scenario
    kind: str  # accuracy | performance | TEST01 | TEST04
    config: RunConfig

    @property
    def label(self) -> str:
        return f"{self.scenario.value} {self.kind}"

    def estimate_s(self, dataset_size: int) -> float:
        if self.kind == "accuracy":
            return _SETUP_S + dataset_size / 50.0
        duration = self.config.min_duration_s or OFFICIAL_MIN_DURATION_S
        if self.scenario is Scenario.OFFLINE:
            duration *= _OFFLINE_SLACK
        return _SETUP_S + duration


def entry_name(model: str, plan: RunPlan) -> str:
    return f"submission.{model}.{plan.scenario.value.lower()}.{plan.kind.lower()}"


def plan_runs(base: RunConfig, scenarios: Sequence[Scenario]) -> list[RunPlan]:
    """The four runs of each scenario, in order: accuracy, performance, TEST01, TEST04."""
    plans: list[RunPlan] = []
    for scenario in scenarios:
        for kind in KINDS:
            config = base.with_(
                scenario=scenario,
                # each scenario's own target: no 'does not apply' notes, no stray settings
                target_qps=base.target_qps if scenario in _QPS_SCENARIOS else None,
                target_latency_ms=(
                    None if scenario is Scenario.OFFLINE else base.target_latency_ms
                ),
                mode=Mode.ACCURACY if kind == "accuracy" else Mode.PERFORMANCE,
                compliance_test=kind if kind.startswith("TEST") else None,
            )
            plans.append(RunPlan(scenario, kind, config))
    return plans


def _same_settings(recorded: Mapping[str, Any], config: RunConfig) -> bool:
    """Whether a recorded run's settings are ``config``'s. A setting the record lacks (the
    table grew after the run) counts as its default, which is what that run used."""
    wanted = config.as_record()
    defaults = RunConfig().as_record()
    return all(
        recorded.get(name, defaults.get(name)) == value
        for name, value in wanted.items()
        if name not in _IGNORED_FIELDS
    ) and set(recorded) - _IGNORED_FIELDS <= set(wanted)


def valid_run(record: Mapping[str, Any], config: RunConfig, inputs: ProgramInputs) -> bool:
    """The record's model is ours, and the run is complete: no failed sample, an accuracy
    or a VALID LoadGen result (what a submission can use; the settings are checked apart)."""
    model = record.get("model") or {}
    if inputs.model_info.get("sha256") and model.get("sha256") != inputs.model_info["sha256"]:
        return False
    if int(record.get("failures") or 0):
        return False
    if config.mode is Mode.ACCURACY:
        return bool(record.get("accuracy"))
    return (record.get("loadgen") or {}).get("result_validity") == "VALID"


def _reusable(record: Mapping[str, Any], config: RunConfig, inputs: ProgramInputs) -> bool:
    if not _same_settings(record.get("config") or {}, config):
        return False
    recorded = (record.get("dataset") or {}).get("path")
    if not recorded or Path(recorded).resolve() != Path(inputs.dataset_dir).resolve():
        return False
    return valid_run(record, config, inputs)


def find_reusable(
    experiment_dir: Path,
    name: str,
    config: RunConfig,
    inputs: ProgramInputs,
    accept: Callable[[Mapping[str, Any]], bool] | None = None,
) -> dict[str, Any] | None:
    """The last recorded run of entry ``name`` that can be reused (``accept``: instead of
    the local check, e.g. a cluster run's)."""
    entry = experiment_dir / name
    if not entry.is_dir():
        return None
    check = accept or (lambda record: _reusable(record, config, inputs))
    found = None
    for run in iter_runs(find_entries([entry]), warn=lambda _m: None):
        if check(run.record):
            found = run.record
    return found


def record_plan(
    experiment_dir: Path,
    name: str,
    plan: RunPlan,
    model: str,
    tags: Sequence[str],
    record: Mapping[str, Any],
    features: Mapping[str, Any] | None = None,
) -> None:
    """The one writer of a submission run's entry (local or from a cluster node)."""
    record_point(
        experiment_dir,
        name,
        tags=["ckvision", "submission", *tags, plan.scenario.value.lower(), plan.kind],
        meta={"model": model, "scenario": plan.scenario.value, "kind": plan.kind},
        characteristics={"run": dict(record)},
        features=features,
    )


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class PlanExecutor(Protocol):
    """Where a submission's runs are made instead of this process (a Ray cluster)."""

    def reusable(self, experiment_dir: Path, name: str, plan: RunPlan) -> bool: ...

    def make_run(self, plan: RunPlan, name: str) -> dict[str, Any]:
        """Make the run and record it as entry ``name``; returns its record."""
        ...


def run_plans(
    plans: Sequence[RunPlan],
    inputs: ProgramInputs,
    work_dir: Path,
    *,
    tags: Sequence[str],
    tune: Callable[[RunConfig], tuple[RunConfig, dict[str, Any] | None]] | None = None,
    executor: PlanExecutor | None = None,
    log: Callable[[str], None] = print,
) -> list[tuple[RunPlan, str, bool]]:
    """Make (or reuse) every planned run; returns ``(plan, entry name, reused)`` each.

    Here by default; by ``executor`` (:mod:`ckvision.submission.cluster`) when given."""
    experiment_dir = work_dir / "experiment"
    experiment_dir.mkdir(parents=True, exist_ok=True)
    model = inputs.contract.name
    size = _dataset_size(inputs)
    remaining = [p.estimate_s(size) for p in plans]
    done: list[tuple[RunPlan, str, bool]] = []
    for index, plan in enumerate(plans):
        name = entry_name(model, plan)
        if executor is None:
            config, tuning = tune(plan.config) if tune else (plan.config, None)
            reuse = find_reusable(experiment_dir, name, config, inputs) is not None
        else:
            reuse = executor.reusable(experiment_dir, name, plan)
        left = sum(remaining[index:])
        eta = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=left)
        head = f"submission: [{index + 1}/{len(plans)}] {plan.label}"
        if reuse:
            log(f"{head}: reusing the valid run recorded in {experiment_dir / name}")
            done.append((plan, name, True))
            continue
        log(
            f"{head}: about {_fmt_s(remaining[index])}; all remaining about "
            f"{_fmt_s(left)}, done around {eta:%H:%M} UTC"
        )
        started = time.monotonic()
        if executor is None:
            run_dir = work_dir / "runs" / plan.scenario.value / plan.kind
            record = run_program(config, inputs, run_dir, log=log, tuning=tuning)
            record_plan(experiment_dir, name, plan, model, tags, record)
        else:
            record = executor.make_run(plan, name)
        validity = (record.get("loadgen") or {}).get("result_validity")
        took = time.monotonic() - started
        state = f", {validity}" if validity else ""
        log(f"{head}: done in {_fmt_s(took)}{state}; recorded in {experiment_dir / name}")
        done.append((plan, name, False))
    return done


def _dataset_size(inputs: ProgramInputs) -> int:
    from ckvision.data.cache import PreprocessedDataset

    return PreprocessedDataset.open(inputs.dataset_dir).size


def check_scenarios(text: str) -> list[Scenario]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    by_name = {s.value.lower(): s for s in Scenario}
    bad = [n for n in names if n.lower() not in by_name]
    if bad or not names:
        raise ConfigError(
            f"--scenarios {text!r}: use a comma list of {', '.join(s.value for s in Scenario)}"
        )
    return list(dict.fromkeys(by_name[n.lower()] for n in names))
