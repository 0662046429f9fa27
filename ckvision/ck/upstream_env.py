"""Moved to :mod:`ckvision.upstream_env` (the run pipeline reads it; this name stays)."""

from ckvision.upstream_env import UPSTREAM_ENV, ck_mlperf_answer, refuse_unsupported

__all__ = ["UPSTREAM_ENV", "refuse_unsupported", "ck_mlperf_answer"]
