"""CK detection hooks for this soft entry: all logic is in ckvision.ckhooks.soft."""

from ckvision.ckhooks.soft import setup, version_cmd  # noqa: F401
