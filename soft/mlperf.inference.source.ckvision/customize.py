"""CK detection hooks for this soft entry: all logic is in ckvision.submission.source."""

from ckvision.submission.source import setup, version_cmd  # noqa: F401
