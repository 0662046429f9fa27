"""Container images of this repository (``docker/`` CK entries), built and run with checks."""

from ckvision.containers.entries import DockerEntry, load_entry, read_env_list

__all__ = ["DockerEntry", "load_entry", "read_env_list"]
