"""Fixtures: the Nuvla stand-in on a free port, backed by the session's S3 test site."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers.s3_services import ROOT, _load

standin = _load("skyplug_tools_nuvla_standin", ROOT / "tools" / "nuvla_standin.py")

ADMIN_KEY = f"credential/{uuid.uuid4()}"
USER_KEY = f"credential/{uuid.uuid4()}"
SECRETS = {ADMIN_KEY: secrets.token_urlsafe(16), USER_KEY: secrets.token_urlsafe(16)}


@pytest.fixture
def nuvla_server(s3_site: Any) -> Iterator[Any]:
    """A started NuvlaStandin with an admin key (ADMIN_KEY) and a plain user key (USER_KEY)."""
    users = {ADMIN_KEY: (SECRETS[ADMIN_KEY], True), USER_KEY: (SECRETS[USER_KEY], False)}
    server = standin.NuvlaStandin(s3_region=s3_site.region, users=users).start()
    try:
        yield server
    finally:
        server.stop()


def login(server: Any, key: str = ADMIN_KEY) -> Any:
    """A logged-in real ``nuvla-api`` client (no cookie file)."""
    from nuvla.api import Api

    api = Api(server.endpoint, persist_cookie=False)
    assert api.login_apikey(key, SECRETS[key]).status_code == 201
    return api


@pytest.fixture
def nuvla_api(nuvla_server: Any) -> Any:
    """The real client, logged in as the admin key."""
    return login(nuvla_server)


def make_s3_credential(nuvla_api: Any, s3_site: Any) -> str:
    """Register an S3 infrastructure-service for the test site; return its minio credential id."""
    infra = nuvla_api.add(
        "infrastructure-service",
        {
            "template": {
                "href": "infrastructure-service-template/generic",
                "subtype": "s3",
                "endpoint": s3_site.endpoint,
                "parent": f"infrastructure-service-group/{uuid.uuid4()}",
                "name": "test s3",
            }
        },
    ).data["resource-id"]
    cred = nuvla_api.add(
        "credential",
        {
            "template": {
                "href": "credential-template/infrastructure-service-minio",
                "parent": infra,
                "access-key": s3_site.access_key,
                "secret-key": s3_site.secret_key,
            }
        },
    )
    return cred.data["resource-id"]


@pytest.fixture
def s3_credential(nuvla_api: Any, s3_site: Any) -> str:
    """The credential id of make_s3_credential for the admin client."""
    return make_s3_credential(nuvla_api, s3_site)


# --- the publisher's tests (test_publisher.py) ------------------------------------------------


@pytest.fixture(scope="session")
def product_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A synthetic MS zip, h5parm and FITS cube (made once): name -> path."""
    from skyplug.synthetic import fits, h5parm
    from skyplug.synthetic.ms import make_ms, zip_ms

    root = tmp_path_factory.mktemp("products")
    ms = make_ms(root / "SB001.ms", ntime=4, nchan=4)
    return {
        "ms": zip_ms(ms, root / "SB001.ms.zip"),
        "h5parm": h5parm.make_all(root / "h5")["dp3"],
        "fits": fits.make_all(root / "fits")["cube4"],
    }


@pytest.fixture
def nuvla_env(nuvla_server: Any, s3env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stand-in, skyplug configured for its S3 sites (``s3env``) and the admin API key in
    ``$SKYPLUG_NUVLA_API_KEY`` / ``$SKYPLUG_NUVLA_API_SECRET``."""
    monkeypatch.setenv("SKYPLUG_NUVLA_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("SKYPLUG_NUVLA_API_SECRET", SECRETS[ADMIN_KEY])
    monkeypatch.delenv("SKYPLUG_NUVLA_CREDENTIALS", raising=False)
    return nuvla_server
