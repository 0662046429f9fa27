"""CK detection hooks for this soft entry: all logic is in ckvision.ck.hooks.soft."""

from ckvision.ck.hooks.soft import setup, version_cmd  # noqa: F401
