"""pytest plugin: Mosquitto brokers started by tools/mqttservers.py (``start_mqtt``).

``mqtt_broker`` is one broker for the whole session, started on first use on a free 127.0.0.1
port and stopped at the end; tests sharing it use their own topics and client ids.
``fresh_mqtt_broker`` is a broker of the test's own, for tests that restart or stop it. A broker
that cannot start fails its tests (never skips): .ci/run installs Debian's ``mosquitto``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers.s3_services import services


class _Broker:
    """The session's broker, or why it failed to start (not retried)."""

    def __init__(self) -> None:
        self.running: Any = None
        self.error = ""
        atexit.register(self.stop)

    def get(self) -> Any:
        if self.running is None and not self.error:
            try:
                self.running = services.start_mqtt()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
        if self.error:
            pytest.fail(f"Mosquitto could not be started: {self.error}")
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


_BROKER = _Broker()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mqtt: needs the Mosquitto broker (tools/services.py)")


def pytest_unconfigure(config: pytest.Config) -> None:
    _BROKER.stop()


@pytest.fixture(scope="session")
def mqtt_broker() -> Any:
    """The session's Mosquitto (``MqttService``: host, port, url ``mqtt://127.0.0.1:PORT``)."""
    return _BROKER.get()


@pytest.fixture
def fresh_mqtt_broker() -> Iterator[Any]:
    """A Mosquitto of this test's own, free to ``restart()`` or ``stop()``; stopped afterwards."""
    try:
        svc = services.start_mqtt()
    except Exception as exc:
        pytest.fail(f"Mosquitto could not be started: {type(exc).__name__}: {exc}")
    try:
        yield svc
    finally:
        svc.stop()


@contextlib.contextmanager
def hold_files(n: int = 1100) -> Iterator[None]:
    """Hold ``n`` open files, so the next sockets get descriptors >= 1024 (where paho's own
    select() loop fails); the soft RLIMIT_NOFILE is raised for it when needed (never the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    try:
        with contextlib.ExitStack() as stack:
            for _ in range(n):
                stack.enter_context(open(os.devnull))
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
