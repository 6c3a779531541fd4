"""Fixtures: three S3 sites (edge, lake-a, lake-b, behind fault proxies) and a local site.

The S3 sites run on each backend selected with ``--s3-backends`` (moto by default; CI adds Swift).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.s3_services import faultproxy, services

SITES = {"edge": "eu-west-1", "lake-a": "us-west-2", "lake-b": "us-east-1"}
PRICES = {  # $/GB egress from the site, $/GB-month storage at it
    "edge": (0.09, 0.023),
    "lake-a": (0.02, 0.023),
    "lake-b": (0.05, 0.023),
    "disk": (0.12, 0.01),
}


class FakeClock:
    """A wall clock that moves only when told: a lease expires without the test waiting for it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A FakeClock starting at the real time."""
    return FakeClock()


@pytest.fixture(scope="session")
def sky_services(s3_backend: str) -> Iterator[dict[str, Any]]:
    """Started S3 servers per site, each behind a FaultProxy (``.proxy``), stopped at the end."""
    started: dict[str, Any] = {}
    proxies: list[Any] = []
    try:
        for name, region in SITES.items():
            svc = services.start_s3(s3_backend, name, region)
            started[name] = svc
            proxy = faultproxy.FaultProxy("127.0.0.1", svc.port)
            proxy.start()
            proxies.append(proxy)
            svc.proxy = proxy
        yield started
    finally:
        for proxy in proxies:
            proxy.stop()
        for svc in started.values():
            svc.stop()


class Sky:
    """skyplug configured with the three S3 sites plus a local folder site ``disk``."""

    def __init__(
        self, services_: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch, **multisite: Any
    ):
        self.services, self.tmp, self.monkeypatch = services_, tmp, monkeypatch
        monkeypatch.setenv("SKYPLUG_DATA_DIR", str(tmp / "data"))  # the default location DB's folder
        self.bucket = f"sky{uuid.uuid4().hex[:10]}"
        self.sites: dict[str, Any] = {}
        for name, svc in services_.items():
            egress, storage = PRICES[name]
            self.sites[name] = {
                "type": "s3",
                "endpoint": svc.proxy.endpoint,
                "region": svc.region,
                "egress_per_gb": egress,
                "storage_per_gb_month": storage,
                "read_timeout": 5,
                "connect_timeout": 2,
            }
            env = name.upper().replace("-", "_")
            monkeypatch.setenv(f"SKYPLUG_SITE_{env}_ACCESS_KEY_ID", svc.access_key)
            monkeypatch.setenv(f"SKYPLUG_SITE_{env}_SECRET_ACCESS_KEY", svc.secret_key)
            svc.proxy.clear()
        self.sites["disk"] = {
            "type": "local",
            "path": str(tmp / "disk"),
            "egress_per_gb": PRICES["disk"][0],
            "storage_per_gb_month": PRICES["disk"][1],
        }
        self.multisite = {
            "db": f"sqlite:///{tmp / 'loc.db'}",
            "trace": str(tmp / "trace.csv"),
            "lease_seconds": 20,
        }
        self.multisite.update(multisite)
        self.apply()

    def apply(self, **multisite: Any) -> Any:
        """(Re)load the configuration with changes to ``[multisite]``; the new Context."""
        from skyplug.core import config, plugins
        from skyplug.plugins.locators.multisite.context import get_context
        from skyplug.plugins.locators.multisite.placement import HEALTH

        self.multisite.update(multisite)
        self.raw = {"sites": self.sites, "default_site": "edge", "multisite": self.multisite}
        self.config = config.Config.from_dict(self.raw)
        config.set_config(self.config)
        plugins.registered.cache_clear()
        HEALTH.reset()
        self.ctx = get_context(self.config)
        return self.ctx

    def write_toml(self) -> Path:
        """The configuration as a skyplug.toml (for subprocesses and the CLI)."""
        path = self.tmp / "skyplug.toml"
        path.write_text(_toml(self.raw))
        return path

    def client(self, site: str) -> Any:
        from skyplug.plugins.locators.s3 import client_for

        return client_for(self.config.site(site))

    def put(self, data: bytes, key: str, at: str = "edge") -> Any:
        """Write bytes as sky://bucket/key from a site; the recorded object."""
        from skyplug.core.source import BytesSource
        from skyplug.plugins.locators.multisite.write import put_object

        obj, _ = put_object(self.ctx, BytesSource(f"mem:{key}", data, "v"), self.bucket, key, at)
        return obj

    def uri(self, key: str) -> str:
        return f"sky://{self.bucket}/{key}"

    def states(self, obj: Any) -> dict[str, str]:
        return {r.site: r.state for r in self.ctx.db.replicas(obj.id)}


def _toml(raw: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for the test configuration (tables of scalars and lists)."""
    scalars, tables = [], []
    for k, v in raw.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            scalars.append(f"{_key(k)} = {_value(v)}")
    out = "\n".join(scalars) + "\n"
    for k, v in tables:
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        out += f"\n[{name}]\n" + _toml(v, name)
    return out


def _key(k: str) -> str:
    return k if k.replace("_", "").isalnum() else f'"{k}"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


@pytest.fixture
def sky(sky_services: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sky:
    """A fresh logical bucket, location DB and trace on the three S3 sites and the local site."""
    return Sky(sky_services, tmp_path, monkeypatch)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty location DB URL: SQLite in a temporary folder, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'loc.db'}"
    import psycopg

    base = request.getfixturevalue("pg_url")
    name = f"loc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name
