"""Sweep points, each run and recorded by ``ck benchmark --record``, resumable.

A point is the program's env for one run. Its id hashes the sweep kind, that env, the
extra ``ck`` arguments and the provenance that decides the number (package versions,
CPU model, usable cores, host name); the point is recorded as experiment entry
``ckvision.sweep.<kind>.<id>`` with the sweep's shared tags. Running a sweep again skips
every point whose entry already holds a run record, so an interrupted sweep resumes
where it stopped, and a new version or machine measures again. ``ck benchmark`` writes
an entry only when its run finished, so Ctrl-C loses at most the point in progress (an
entry left without a run record by a ``ck`` killed while recording is removed and run
again).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckvision.errors import ConfigError, RunError
from ckvision.experiments.entries import RecordedRun, experiment_root, find_entries, iter_runs

__all__ = ["Point", "PointResult", "CkPointRunner", "PROGRAMS", "check_tags"]

PROGRAMS = {
    "onnxruntime": "image-classification-onnxruntime-loadgen-py",
    "null": "image-classification-onnxruntime-loadgen-py",
    "pytorch": "image-classification-onnxruntime-loadgen-py",
    "tensorrt": "image-classification-tensorrt-loadgen-py",
}
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_ENV_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def check_tags(tags: Sequence[str]) -> list[str]:
    bad = [t for t in tags if not _TAG.match(t)]
    if bad:
        raise ConfigError(f"bad tag {bad[0]!r}: use letters, digits and _ . + - (max 64)")
    return list(tags)


@dataclass(frozen=True)
class Point:
    kind: str  # batch | concurrency | peak-poisson | accuracy
    label: str  # what the point is in its sweep, e.g. "batch=4"
    env: Mapping[str, str]
    tags: tuple[str, ...] = ()


@dataclass
class PointResult:
    point: Point
    record: dict[str, Any]
    entry: str
    skipped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def loadgen(self) -> dict[str, Any]:
        return dict(self.record.get("loadgen") or {})


class CkPointRunner:
    """Runs points with ``ck benchmark PROGRAM --record`` in the local repo."""

    def __init__(
        self,
        backend: str,
        tags: Sequence[str],
        base_env: Mapping[str, str],
        fingerprint: Mapping[str, Any],
        *,
        ck_args: Sequence[str] = (),
        log: Callable[[str], None] = print,
    ) -> None:
        if backend not in PROGRAMS:
            raise ConfigError(f"--backend={backend!r} unknown; use one of: {', '.join(PROGRAMS)}")
        for key in base_env:
            if not _ENV_KEY.match(key):
                raise ConfigError(f"bad env var name {key!r}")
        self.backend = backend
        self.program = PROGRAMS[backend]
        self.tags = check_tags(["ckvision", "sweep", *tags])
        self.base_env = {"CK_BACKEND": backend, "CK_PROGRESS": "plain", **base_env}
        self.fingerprint = dict(fingerprint)
        self.ck_args = list(ck_args)
        self.log = log
        self.done: list[PointResult] = []

    def point_id(self, point: Point) -> str:
        material = {
            "kind": point.kind,
            "env": {**self.base_env, **point.env},
            "program": self.program,
            "ck_args": self.ck_args,
            "tags": self.tags,
            "provenance": self.fingerprint,
        }
        blob = json.dumps(material, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def entry_name(self, point: Point) -> str:
        return f"ckvision.sweep.{point.kind}.{self.point_id(point)}"

    def recorded(self, point: Point) -> RecordedRun | None:
        entry = experiment_root() / self.entry_name(point)
        if not entry.is_dir():
            return None
        runs = list(iter_runs(find_entries([entry])))
        return runs[-1] if runs else None

    def run(self, point: Point) -> PointResult:
        from ckvision.ck.tool import run_ck

        name = self.entry_name(point)
        existing = self.recorded(point)
        if existing is not None:
            self.log(f"sweep: {point.kind} {point.label}: already recorded ({name}), skipped")
            result = PointResult(point, existing.record, name, skipped=True)
        else:
            if (experiment_root() / name).is_dir():  # a ck killed mid-record left it
                self.log(f"sweep: removing the unfinished entry {name}")
                run_ck(["rm", f"experiment:{name}", "--force"], capture=True)
            self.log(f"sweep: {point.kind} {point.label}: running ({name})")
            env = {**self.base_env, **point.env}
            tags = ",".join([*self.tags, *check_tags(point.tags), point.kind.replace("-", "_")])
            run_ck(
                [
                    "benchmark",
                    f"program:{self.program}",
                    "--repetitions=1",
                    *(f"--env.{k}={v}" for k, v in env.items()),
                    *self.ck_args,
                    "--record",
                    "--record_repo=local",
                    f"--record_uoa={name}",
                    f"--tags={tags}",
                    "--skip_print_timers",
                    "--skip_stat_analysis",
                    "--process_multi_keys",
                    "--quiet",
                    "--return_error_if_external_fail=yes",
                ]
            )
            recorded = self.recorded(point)
            if recorded is None:
                raise RunError(
                    f"ck benchmark recorded no run for {point.kind} {point.label}; "
                    "see its output above"
                )
            result = PointResult(point, recorded.record, name)
        self.done.append(result)
        return result
