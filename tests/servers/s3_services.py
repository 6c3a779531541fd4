"""pytest plugin: real S3 servers (moto, swift, seaweedfs) started by tools/services.py.

Select backends with ``--s3-backends moto,swift,seaweedfs`` or ``$SKYPLUG_S3_BACKENDS``
(default ``moto``). Tests using ``s3_backend`` (directly or through ``s3_sites``,
``s3_site``, ``fault_proxy``) run once per selected backend. Each backend's two sites,
``edge`` (eu-west-1) and ``lake`` (us-east-1), are started once per session and
stopped at its end. A backend that cannot start makes its tests fail, not skip.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITES = {"edge": "eu-west-1", "lake": "us-east-1"}
DEFAULT_BACKENDS = "moto"


def _load(name: str, path: Path) -> ModuleType:
    """Import a tools/ script by path (tools/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


services = _load("skyplug_tools_services", ROOT / "tools" / "services.py")
faultproxy = _load("skyplug_tools_faultproxy", ROOT / "tools" / "faultproxy.py")


class _Pool:
    """Started sites per backend, or the reason a backend failed to start."""

    def __init__(self) -> None:
        self.sites: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}
        atexit.register(self.stop_all)  # backstop if pytest_unconfigure never runs

    def get(self, backend: str) -> dict[str, Any]:
        if backend not in self.sites and backend not in self.errors:
            started: dict[str, Any] = {}
            try:
                for site, region in SITES.items():
                    started[site] = services.start_s3(backend, site, region)
            except Exception as exc:
                for svc in started.values():
                    svc.stop()
                self.errors[backend] = f"{type(exc).__name__}: {exc}"
            else:
                self.sites[backend] = started
        if backend in self.errors:  # outside the except: no chained traceback
            pytest.fail(f"S3 backend {backend!r} could not be started: {self.errors[backend]}")
        return self.sites[backend]

    def stop_all(self) -> None:
        for started in self.sites.values():
            for svc in started.values():
                svc.stop()
        self.sites.clear()


_POOL_KEY = pytest.StashKey[_Pool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("s3", "S3 test servers (tools/services.py)")
    group.addoption(
        "--s3-backends",
        default=os.environ.get("SKYPLUG_S3_BACKENDS") or DEFAULT_BACKENDS,
        help="comma list of S3 backends to test against: moto, swift, seaweedfs "
        "(default: $SKYPLUG_S3_BACKENDS or moto)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        "s3: talks to S3 servers started by tools/services.py",
        "swift: needs OpenStack Swift s3api",
        "seaweedfs: needs SeaweedFS",
        "slow: takes more than a few seconds",
    ):
        config.addinivalue_line("markers", marker)
    config.stash[_POOL_KEY] = _Pool()


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(_POOL_KEY, None)
    if pool is not None:
        pool.stop_all()


def selected_backends(config: pytest.Config) -> list[str]:
    """Backends chosen by --s3-backends / $SKYPLUG_S3_BACKENDS."""
    names = [b.strip() for b in str(config.getoption("--s3-backends")).split(",") if b.strip()]
    unknown = [b for b in names if b not in services.BACKENDS]
    if unknown:
        raise pytest.UsageError(f"--s3-backends: unknown {unknown}; choose from {services.BACKENDS}")
    return list(dict.fromkeys(names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "s3_backend" not in metafunc.fixturenames:
        return
    params = []
    for backend in selected_backends(metafunc.config):
        marks = [pytest.mark.s3]
        if backend in ("swift", "seaweedfs"):
            marks.append(getattr(pytest.mark, backend))
        params.append(pytest.param(backend, id=backend, marks=marks))
    metafunc.parametrize("s3_backend", params, indirect=True, scope="session")


@pytest.fixture(scope="session")
def s3_backend(request: pytest.FixtureRequest) -> str:
    """Name of the S3 backend under test (parametrised over the selected ones)."""
    return str(request.param)


@pytest.fixture(scope="session")
def s3_sites(request: pytest.FixtureRequest, s3_backend: str) -> dict[str, Any]:
    """Site name -> running services.S3Service: ``edge`` (eu-west-1), ``lake`` (us-east-1)."""
    return request.config.stash[_POOL_KEY].get(s3_backend)


@pytest.fixture(scope="session")
def s3_site(s3_sites: dict[str, Any]) -> Any:
    """The ``edge`` site's S3Service."""
    return s3_sites["edge"]


@pytest.fixture(scope="session")
def s3_client_factory() -> Callable[..., Any]:
    """``make(service, *, endpoint_url=None, max_attempts=None, **config)`` -> boto3 client.

    Path-style addressing, region = service.region; ``max_attempts=1`` disables retries.
    """
    import boto3
    from botocore.config import Config

    def make(
        service: Any,
        *,
        endpoint_url: str | None = None,
        max_attempts: int | None = None,
        secret_key: str | None = None,
        **config: Any,
    ) -> Any:
        cfg: dict[str, Any] = {"s3": {"addressing_style": "path"}, **config}
        if max_attempts is not None:
            cfg["retries"] = {"total_max_attempts": max_attempts, "mode": "standard"}
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or service.endpoint,
            region_name=service.region,
            aws_access_key_id=service.access_key,
            aws_secret_access_key=secret_key or service.secret_key,
            config=Config(**cfg),
        )

    return make


@pytest.fixture
def fault_proxy(s3_site: Any) -> Iterator[Any]:
    """A started faultproxy.FaultProxy in front of the ``edge`` site (``.endpoint``)."""
    url = urlsplit(s3_site.endpoint)
    proxy = faultproxy.FaultProxy(url.hostname or "127.0.0.1", url.port or 80)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
