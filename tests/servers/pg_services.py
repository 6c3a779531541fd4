"""pytest plugin: a throwaway PostgreSQL 15 + pgSphere cluster started by tools/pg.py.

``pg_url`` (session scope) is ``postgresql://skyplug@127.0.0.1:PORT/skyplug``. The cluster starts on
first use and stops at the end of the session. Set ``$SKYPLUG_PG_URL`` to use an existing server
instead (it must have the pg_sphere extension). A cluster that cannot start makes tests fail, not skip.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_pg() -> ModuleType:
    name = "skyplug_tools_pg"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "pg.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pg = _load_pg()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pg: needs PostgreSQL with pgSphere (tools/pg.py)")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a PostgreSQL database with pg_sphere, started once per session."""
    existing = os.environ.get("SKYPLUG_PG_URL")
    if existing:
        yield existing
        return
    handle = pg.start_pg()
    try:
        yield handle.url
    finally:
        handle.stop()
