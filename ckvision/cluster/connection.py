"""Connecting to a Ray cluster, and the few Ray names the driver uses (imported lazily:
Ray is the optional extra ``cluster``)."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
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
            _init_within(ray, address, _connect_timeout_s())
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


CONNECT_TIMEOUT_ENV = "CKVISION_CLUSTER_CONNECT_TIMEOUT_S"
CONNECT_TIMEOUT_S = 120.0


def _connect_timeout_s() -> float:
    text = os.environ.get(CONNECT_TIMEOUT_ENV, "")
    if not text:
        return CONNECT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e6:
        raise ConfigError(f"{CONNECT_TIMEOUT_ENV}={text!r}: give seconds > 0, e.g. 120")
    return seconds


def _init_within(ray: Any, address: str, seconds: float) -> None:
    """``ray.init`` with a deadline: Ray Client can wait forever when the head's per-driver
    server dies at start (seen with Ray 2.60 on a busy head). The call runs on a daemon
    thread; past the deadline the driver stops waiting with one line (the thread is left
    to the process's exit)."""
    outcome: dict[str, BaseException | None] = {}

    def connect_now() -> None:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            outcome["error"] = None
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=connect_now, name="ray-connect", daemon=True)
    thread.start()
    thread.join(seconds)
    if "error" not in outcome:
        raise ConfigError(
            f"--cluster {address}: no connection within {seconds:g} s (Ray did not answer; "
            f"with ray:// check the head's ray_client_server*.err log; {CONNECT_TIMEOUT_ENV} "
            "sets the wait)"
        )
    if outcome["error"] is not None:
        raise outcome["error"]


def one_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    if isinstance(cause, CkVisionError):
        return str(cause)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip(": ")
