"""Connecting to a Ray cluster, and the few Ray names the driver uses (imported lazily:
Ray is the optional extra ``cluster``)."""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from ckvision.errors import CkVisionError, ConfigError

__all__ = ["check_address", "connect", "pin", "ray_error", "one_line"]

_ADDRESS = re.compile(r"^(auto|(ray://)?[A-Za-z0-9][A-Za-z0-9.-]{0,252}:\d{1,5})$")


def pin(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def ray_error() -> type[BaseException]:
    from ray.exceptions import RayError

    return RayError


def check_address(address: str) -> str:
    if not _ADDRESS.match(address):
        raise ConfigError(f"--cluster {address!r}: use auto, HOST:PORT or ray://HOST:PORT")
    return address


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Ray retries an address nobody listens on for minutes: one TCP connect first."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConfigError(
            f"--cluster {address}: nothing answers there ({err.strerror or err}); "
            "is the head node started (ray start --head)?"
        ) from None


def connect(address: str) -> Any:
    """``ray.init`` on an existing cluster; returns the ``ray`` module."""
    check_address(address)
    if address != "auto":
        _probe(address)
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--cluster needs Ray: pip install 'ckvision[cluster]' (ray==2.60.0)"
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            text = " ".join(str(err).split())[:300] or type(err).__name__  # one line
            if "Initialization failure from server" in text:
                text += (
                    " (the head's Ray Client server did not start a server for this driver in "
                    "time: a busy head? set RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S, default "
                    "30, where the head starts)"
                )
            raise ConfigError(f"--cluster {address}: cannot connect: {text}") from None
    return ray


def one_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    if isinstance(cause, CkVisionError):
        return str(cause)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip(": ")
