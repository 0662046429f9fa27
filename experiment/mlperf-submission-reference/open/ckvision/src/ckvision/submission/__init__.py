"""MLPerf Inference submissions (v6.1 layout) from recorded runs: build, check, run.

* :mod:`ckvision.submission.build` turns recorded CK experiment entries into the tree
  MLPerf's submission checker reads, refusing what the checker would let through
  (INVALID runs, mixed runs, missing compliance, closed runs below the minimums);
* :mod:`ckvision.submission.compliance` is our TEST01 / TEST04 verification;
* :mod:`ckvision.submission.check` runs MLPerf's own checker (``--version v6.1``);
* :mod:`ckvision.submission.runner` runs whatever a division and scenario set needs,
  resumably, then builds and checks.

MLPerf's tools are run, never copied: the formats and numbers here come from
mlcommons/inference (see ``/work/shared/mlperf-submission.md`` in the project notes).
"""

from __future__ import annotations

__all__ = ["SubmissionError", "KINDS"]

from ckvision.errors import CkVisionError

# the runs one result needs, in the order they are made
KINDS = ("accuracy", "performance", "TEST01", "TEST04")


class SubmissionError(CkVisionError):
    """A submission that cannot be built honestly; the message names the entry."""

    exit_code = 7
