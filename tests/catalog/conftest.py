"""Fixtures: catalogues on SQLite and PostgreSQL filled with synthetic records, and TAP servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyplug.catalog import synthetic
from skyplug.catalog.db import Catalog, make_record, open_catalog
from skyplug.catalog.server import TapServer

N_RECORDS = 2000


def synthetic_records(n: int = N_RECORDS) -> list[dict]:
    return [make_record(r, r["skyplug_uri"], "1", "ms") for r in synthetic.records(n)]


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("catalog") / "catalog.db"
    url = f"sqlite:///{path}"
    with open_catalog(url) as cat:
        cat.add(synthetic_records())
    return url


@pytest.fixture(scope="session")
def pg_catalog_url(pg_url: str) -> str:
    with open_catalog(pg_url) as cat:
        cat.add(synthetic_records())
    return pg_url


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.pg)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs on both backends (the same synthetic records)."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_catalog_url"
    return request.getfixturevalue(name)


@pytest.fixture
def catalog(backend_url: str) -> Iterator[Catalog]:
    with open_catalog(backend_url) as cat:
        yield cat


@pytest.fixture(scope="session")
def tap_url(backend_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A TAP server on a free port, in a thread, over the backend's catalogue."""
    cat = open_catalog(backend_url)
    server = TapServer(cat, port=0, jobs_dir=Path(tmp_path_factory.mktemp("jobs")), maxrec=1000).start()
    yield server.url
    server.stop()
    cat.close()
