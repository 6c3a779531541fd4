"""Test-wide fixtures: an isolated configuration and cache, S3 sites on real servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["SKYPLUG_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # tests install third-party plugins themselves

pytest_plugins = [
    "tests.servers.s3_services",
    "tests.servers.pg_services",
    "tests.servers.rdf_services",
    "tests.servers.mqtt_services",
    "tests.servers.slurm_services",
    "tests.docs_collector",
]


@pytest.fixture(autouse=True)
def isolated_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every test starts with an empty configuration, its own cache and data folders (no test
    writes to the user's folders: provenance is recorded by default) and no provenance run."""
    from skyplug.core import config, plugins
    from skyplug.core import provenance as pv

    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SKYPLUG_CACHE_DIR", str(cache))
    monkeypatch.setenv("SKYPLUG_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    for name in (pv.RUN_ENV, pv.PARENT_ENV, pv.DB_ENV, pv.SWITCH_ENV):
        # set, then removed: undone at teardown even when the test's code sets it (activities set
        # the store and run for their workers), so no later test, nor a module fixture, inherits it
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.delenv("SKYPLUG_CONFIG", raising=False)
    config.set_config(config.Config.from_dict({}))
    plugins.registered.cache_clear()
    yield
    config.set_config(None)
    plugins.registered.cache_clear()
    _close_cached_databases()


def _close_cached_databases() -> None:
    """Close the location DBs and provenance stores a test opened (their URLs are the test's own:
    kept open, a long run would hold thousands of files)."""
    import sys

    if "skyplug.plugins.locators.multisite.context" in sys.modules:
        sys.modules["skyplug.plugins.locators.multisite.context"].reset()
    if "skyplug.plugins.provenance.store" in sys.modules:
        sys.modules["skyplug.plugins.provenance.store"].close_all()


class S3Env:
    """skyplug configured for S3 sites started by tools/services.py; uploads test data."""

    def __init__(self, services: dict, monkeypatch: pytest.MonkeyPatch) -> None:
        from skyplug.core import config

        self.services = services
        raw = {"sites": {}, "default_site": "edge"}
        for name, svc in services.items():
            raw["sites"][name] = {"type": "s3", "endpoint": svc.endpoint, "region": svc.region}
            monkeypatch.setenv(f"SKYPLUG_SITE_{name.upper()}_ACCESS_KEY_ID", svc.access_key)
            monkeypatch.setenv(f"SKYPLUG_SITE_{name.upper()}_SECRET_ACCESS_KEY", svc.secret_key)
        self.config = config.Config.from_dict(raw)
        config.set_config(self.config)
        self.bucket = f"t{uuid.uuid4().hex[:12]}"
        for name in services:
            self.client(name).create_bucket(Bucket=self.bucket, **self._location(name))

    def _location(self, site: str) -> dict:
        region = self.services[site].region
        return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}

    def client(self, site: str = "edge"):
        from skyplug.plugins.locators.s3 import client_for

        return client_for(self.config.site(site))

    def upload(self, local: str | Path, key: str | None = None, site: str = "edge") -> str:
        """Upload a file, or a folder as a prefix; return its ``s3://`` URI."""
        local = Path(local)
        key = key or local.name
        cli = self.client(site)
        if local.is_dir():
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                cli.upload_file(str(path), self.bucket, f"{key}/{path.relative_to(local).as_posix()}")
        else:
            cli.upload_file(str(local), self.bucket, key)
        return f"s3://{self.bucket}/{key}"


@pytest.fixture
def s3env(s3_sites: dict, monkeypatch: pytest.MonkeyPatch) -> S3Env:
    """skyplug pointed at the S3 sites ``edge`` (default) and ``lake`` of the selected backend."""
    return S3Env(s3_sites, monkeypatch)
