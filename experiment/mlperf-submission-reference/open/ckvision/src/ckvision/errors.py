"""The one user-facing exception type and its exit codes.

Library code raises :class:`CkVisionError` (or a subclass) with the cause chained.
Only the CLI and the CK hooks turn it into one line; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "CkVisionError",
    "ConfigError",
    "DataError",
    "ModelError",
    "BackendError",
    "MissingPackageError",
    "RunError",
]


class CkVisionError(Exception):
    """An error the user can fix; ``str(err)`` is the one line we print."""

    exit_code = 1


class ConfigError(CkVisionError):
    """Bad settings: unknown scenario, non-positive batch size, out-of-range value."""

    exit_code = 2


class DataError(CkVisionError):
    """Missing, unreadable or inconsistent dataset."""

    exit_code = 3


class ModelError(CkVisionError):
    """Missing or unusable model file, or a model that does not fit the data."""

    exit_code = 4


class BackendError(CkVisionError):
    """The inference runtime is missing or failed."""

    exit_code = 5


class RunError(CkVisionError):
    """The benchmark ran but did not complete correctly (failed batches, LoadGen errors)."""

    exit_code = 6


class MissingPackageError(CkVisionError):
    """A CK package the run depends on is not installed; names the command that fixes it."""

    exit_code = 3

    def __init__(self, what: str, tags: str) -> None:
        self.what = what
        self.tags = tags
        super().__init__(f"{what} not found; install it with: ck install package --tags={tags}")
