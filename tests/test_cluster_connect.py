"""The driver's wait for Ray has a deadline (Ray Client can wait forever when the head's
per-driver server dies at start). A stand-in for ``ray`` (named so: it only blocks or
raises) exercises the deadline without a cluster; the real connections are in
tests/test_cluster.py and tests/test_cluster_client.py."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ckvision.cluster.connection import CONNECT_TIMEOUT_ENV, _connect_timeout_s, _init_within
from ckvision.errors import ConfigError

pytestmark = pytest.mark.timeout(30)


class StandInRay:
    """``init`` blocks until released, or raises ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.release = threading.Event()
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def init(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        self.release.wait(20)


def test_a_connection_that_never_answers_ends_in_one_line_at_the_deadline() -> None:
    ray = StandInRay()
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"no connection within 0.3 s .*ray_client_server"):
        _init_within(ray, "ray://127.0.0.1:10001", 0.3)
    assert time.monotonic() - started < 5
    assert ray.calls == [{"address": "ray://127.0.0.1:10001", "log_to_driver": False,
                          "logging_level": 30}]  # fmt: skip
    ray.release.set()


def test_connect_errors_and_success_pass_through() -> None:
    with pytest.raises(ConnectionError, match="refused"):
        _init_within(StandInRay(ConnectionError("refused")), "127.0.0.1:6379", 5)
    quick = StandInRay()
    quick.release.set()
    _init_within(quick, "127.0.0.1:6379", 5)  # returns: connected


def test_the_wait_is_a_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONNECT_TIMEOUT_ENV, raising=False)
    assert _connect_timeout_s() == 120.0
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, "7.5")
    assert _connect_timeout_s() == 7.5
    for bad in ("0", "-3", "soon", "nan", "1e9"):
        monkeypatch.setenv(CONNECT_TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=CONNECT_TIMEOUT_ENV):
            _connect_timeout_s()
