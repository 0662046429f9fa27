"""Moved to :mod:`ckvision.experiments.ck_tool` (the one ck wrapper; this name stays)."""

from ckvision.experiments.ck_tool import CkCommandError, ck_executable, ck_lines, run_ck

__all__ = ["ck_executable", "run_ck", "ck_lines", "CkCommandError"]
