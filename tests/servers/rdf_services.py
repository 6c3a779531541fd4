"""pytest plugin: Virtuoso and Oxigraph servers started by tools/rdfservers.py (``start_rdf``).

``rdf_server`` is parametrised over both stores (``virtuoso``, ``oxigraph``); each server starts on
first use, once per session, on free 127.0.0.1 ports, and stops at the end. A store that cannot
start fails its tests (never skips): both are installed by .ci/run and the ``sparql`` extra.
"""

from __future__ import annotations

import atexit
from typing import Any

import pytest

from tests.servers.s3_services import services

RDF_STORES = ("virtuoso", "oxigraph")


class _Servers:
    """Started stores, or why one failed to start (not retried)."""

    def __init__(self) -> None:
        self.running: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        atexit.register(self.stop_all)

    def get(self, kind: str) -> Any:
        if kind not in self.running and kind not in self.errors:
            try:
                self.running[kind] = services.start_rdf(kind)
            except Exception as exc:
                self.errors[kind] = f"{type(exc).__name__}: {exc}"
        if kind in self.errors:
            pytest.fail(f"RDF store {kind!r} could not be started: {self.errors[kind]}")
        return self.running[kind]

    def stop_all(self) -> None:
        for svc in self.running.values():
            svc.stop()
        self.running.clear()


_SERVERS = _Servers()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rdf: needs the Virtuoso and Oxigraph servers (tools/services.py)")


def pytest_unconfigure(config: pytest.Config) -> None:
    _SERVERS.stop_all()


@pytest.fixture(scope="session")
def virtuoso() -> Any:
    """The session's Virtuoso (``RdfService``: query, update, store URLs, writer user/password)."""
    return _SERVERS.get("virtuoso")


@pytest.fixture(scope="session")
def oxigraph_server() -> Any:
    """The session's ``oxigraph serve``."""
    return _SERVERS.get("oxigraph")


@pytest.fixture(scope="session", params=RDF_STORES)
def rdf_server(request: pytest.FixtureRequest) -> Any:
    """Each RDF server in turn."""
    return _SERVERS.get(request.param)
