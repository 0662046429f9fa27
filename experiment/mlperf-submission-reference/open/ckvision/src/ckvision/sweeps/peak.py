"""Peak search: the highest QPS whose p99 latency stays under each bound.

For each bound and each arrival process (``exponential``: LoadGen's Server, Poisson
arrivals, every trial a recorded ``ck benchmark`` point; ``linear``: equal-spaced
arrivals, see :mod:`ckvision.sweeps.arrivals`) the search brackets the peak by doubling
or halving from a start QPS, then bisects. A trial passes when its p99 is within the
bound and it kept up (completed at least ``KEEP_UP`` of the offered rate). Noise: a
pass within twice the tolerance of a failed rate is re-tested and counts only if it
passes again. Time: at most ``max_trials`` per search. A bound no rate meets has the
result -1, as in MLPerf's cloud reference; that is a finding, not an error (exit 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ckvision.errors import ConfigError

__all__ = ["Trial", "PeakResult", "search_peak", "parse_bounds", "DEFAULT_BOUNDS_MS", "KEEP_UP"]

DEFAULT_BOUNDS_MS = (10.0, 50.0, 100.0, 200.0)
KEEP_UP = 0.9
_MIN_QPS = 0.5


@dataclass(frozen=True)
class Trial:
    arrival: str  # linear | exponential
    bound_ms: float
    target_qps: float
    qps: float
    p99_ms: float
    mean_ms: float
    validity: str | None = None
    entry: str | None = None
    tiles_ms: dict[str, float] = field(default_factory=dict)
    invalid_because: str = ""  # LoadGen's checks that failed, when it says INVALID

    @property
    def passed(self) -> bool:
        """p99 within the bound, the offered rate kept up with, and, for a LoadGen trial,
        LoadGen's own verdict VALID (its early-stopping p99 estimate, minimum duration and
        query count): a rate LoadGen would not publish is not a peak either."""
        return (
            self.p99_ms <= self.bound_ms
            and self.qps >= KEEP_UP * self.target_qps
            and self.validity != "INVALID"
        )

    def line(self) -> str:
        tiles = ",".join(f"{k}:{v:.4f}" for k, v in self.tiles_ms.items())
        return (
            f"{self.arrival}/{self.bound_ms / 1000:g}/{self.target_qps:g} "
            f"qps={self.qps:.2f}, mean={self.mean_ms / 1000:.6f}, "
            f"p99={self.p99_ms / 1000:.6f}, tiles_ms={tiles} "
            f"{'pass' if self.passed else 'fail'}"
            + (
                f" (LoadGen: INVALID{': ' + self.invalid_because if self.invalid_because else ''})"
                if self.validity == "INVALID"
                else ""
            )
        )


@dataclass
class PeakResult:
    arrival: str
    bound_ms: float
    qps: float  # measured QPS of the best passing trial; -1 if none passed
    target_qps: float
    p99_ms: float | None
    trials: list[Trial]

    def result_line(self) -> str:
        measured = self.p99_ms / 1000 if self.p99_ms is not None else -1
        qps = int(self.qps) if self.qps >= 0 else -1
        return (
            f"===RESULT: {self.arrival} target_latency={self.bound_ms / 1000:g} "
            f"measured_latency={measured} qps={qps}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "qps": self.qps,
            "target_qps": self.target_qps,
            "measured_latency": None if self.p99_ms is None else self.p99_ms / 1000,
            "target_latency": self.bound_ms / 1000,
            "trials": len(self.trials),
        }


def parse_bounds(text: str) -> list[float]:
    """``10,50,100,200`` (ms): each > 0, increasing."""
    try:
        bounds = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"latency bounds {text!r}: use ms values like 10,50,100") from None
    if not bounds:
        raise ConfigError("latency bounds: none given")
    if any(b <= 0 or b != b for b in bounds):
        raise ConfigError(f"latency bound {min(bounds):g} ms must be > 0")
    if any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
        raise ConfigError(f"latency bounds {text!r} are not increasing")
    return bounds


def search_peak(
    measure: Callable[[float], Trial],
    start_qps: float,
    *,
    tolerance: float = 0.05,
    max_trials: int = 12,
    log: Callable[[str], None] = print,
) -> PeakResult:
    """Bracket then bisect; ``measure(qps)`` runs one trial at that offered rate."""
    if start_qps <= 0:
        raise ConfigError(f"start QPS {start_qps} must be > 0")
    trials: list[Trial] = []

    def run(qps: float) -> Trial:
        trial = measure(round(qps, 2))
        trials.append(trial)
        log(trial.line())
        return trial

    best: Trial | None = None
    fail_qps: float | None = None
    qps = start_qps
    while len(trials) < max_trials:  # bracket
        trial = run(qps)
        if trial.passed:
            best = trial
            if fail_qps is not None:
                break
            qps *= 2
        else:
            fail_qps = qps
            if best is not None:
                break
            qps /= 2
            if qps < _MIN_QPS:
                break
    while best is not None and fail_qps is not None and len(trials) < max_trials:
        lo, hi = best.target_qps, fail_qps
        if (hi - lo) / lo <= tolerance:
            break
        mid = (lo + hi) / 2
        trial = run(mid)
        passed = trial.passed
        if passed and (hi - mid) / mid <= 2 * tolerance and len(trials) < max_trials:
            again = run(mid)  # noise: near the edge a rate must pass twice
            passed = again.passed
            trial = min(trial, again, key=lambda t: t.qps)  # report the lower measurement
        if passed:
            best = trial
        else:
            fail_qps = mid
    first = trials[0]
    if best is None:
        return PeakResult(first.arrival, first.bound_ms, -1, -1, None, trials)
    return PeakResult(first.arrival, first.bound_ms, best.qps, best.target_qps, best.p99_ms, trials)


# LoadGen's checks behind a Server verdict, as named in the parsed summary
LOADGEN_CHECKS = (
    ("min_duration_satisfied", "minimum duration"),
    ("min_queries_satisfied", "minimum query count"),
    ("early_stopping_satisfied", "early stopping (too few queries for a p99 it can vouch for)"),
    ("performance_constraints_satisfied", "latency constraint"),
)


def failed_checks(summary: dict[str, Any]) -> str:
    """The LoadGen checks ``summary`` says failed, in words ("" if none is known)."""
    return ", ".join(words for key, words in LOADGEN_CHECKS if summary.get(key) is False)


def trial_record(trial: Trial) -> dict[str, Any]:
    return {**asdict(trial), "passed": trial.passed}
