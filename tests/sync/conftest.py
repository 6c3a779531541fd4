"""Fixtures of the catalogue sync tests: real Mosquitto, real S3 (moto / swift), the Nuvla stand-in
as a process with ``--mqtt``, and small MS zip / h5parm / FITS files made once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from skyplug.catalog.mqttloop import SelectorLoop
from tests.servers.s3_services import ROOT

WAIT = 20.0


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small file of each format: an MS zip (STORED), an h5parm and a FITS cube."""
    from skyplug.synthetic import fits, h5parm
    from skyplug.synthetic.ms import make_ms, zip_ms

    root = tmp_path_factory.mktemp("sync-data")
    ms = make_ms(root / "obs.ms", ntime=4, nchan=4, nant=4)
    out = {
        "ms": zip_ms(ms, root / "SB001.ms.zip"),
        "h5": h5parm.make_solutions(root / "SB001.h5", times=(8, 4)),
    }
    out["fits"] = fits.make_all(root / "fits")["cube4"]
    return out


class SyncSite:
    """skyplug configured (in-process and in ``skyplug.toml`` for child processes) for the S3 test
    sites, a catalogue and a sync state in the test's folder; uploads objects."""

    def __init__(self, s3env: Any, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.s3, self.tmp = s3env, tmp
        self.catalog_url = f"sqlite:///{tmp / 'catalog.db'}"
        self.state_url = f"sqlite:///{tmp / 'sync-state.db'}"
        lines = ['default_site = "edge"', "", "[catalog]", f'url = "{self.catalog_url}"']
        for name, svc in s3env.services.items():
            lines += [
                "",
                f"[sites.{name}]",
                'type = "s3"',
                f'endpoint = "{svc.endpoint}"',
                f'region = "{svc.region}"',
            ]
        self.config_file = tmp / "skyplug.toml"
        self.config_file.write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("SKYPLUG_CONFIG", str(self.config_file))
        monkeypatch.setenv("SKYPLUG_PROV_DB", f"sqlite:///{tmp / 'prov.db'}")
        from skyplug.core import config

        raw = dict(s3env.config.raw)
        raw["catalog"] = {"url": self.catalog_url}
        config.set_config(config.Config.from_dict(raw))

    @property
    def bucket(self) -> str:
        return str(self.s3.bucket)

    def put(self, local: Path, key: str) -> str:
        return str(self.s3.upload(local, key))

    def rows(self) -> list[dict[str, Any]]:
        from skyplug.catalog.db import open_catalog

        with open_catalog(self.catalog_url) as cat:
            return cat.query(
                "SELECT skyplug_uri, skyplug_version, obs_publisher_did, obs_id, dataproduct_type"
                " FROM ivoa.obscore",
                maxrec=100000,
            ).as_dicts()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``skyplug ARGS`` in a child process with this configuration."""
        return subprocess.run(
            [sys.executable, "-m", "skyplug.cli", *args],
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
        )


@pytest.fixture
def sync_site(s3env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SyncSite:
    return SyncSite(s3env, tmp_path, monkeypatch)


class Publisher:
    """A paho client publishing QoS 1 messages (waiting for each PUBACK) on the selector loop."""

    def __init__(self, broker: Any) -> None:
        self.acked: set[int] = set()
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.paho.on_connect = lambda *_a: self.connected.set()
        self.paho.on_publish = self._acked
        self.paho.connect_async(broker.host, broker.port)
        self.loop = SelectorLoop(self.paho).start()
        assert self.connected.wait(WAIT), "no CONNACK"

    def _acked(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with self.cond:
            self.acked.add(mid)
            self.cond.notify_all()

    def send(self, topic: str, *payloads: bytes | dict) -> None:
        for payload in payloads:
            data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
            mid = self.paho.publish(topic, data, qos=1).mid
            with self.cond:
                assert self.cond.wait_for(lambda m=mid: m in self.acked, WAIT), "no PUBACK"

    def close(self) -> None:
        self.loop.stop()


@pytest.fixture
def publisher(mqtt_broker: Any) -> Iterator[Publisher]:
    pub = Publisher(mqtt_broker)
    try:
        yield pub
    finally:
        pub.close()


@pytest.fixture
def topic() -> str:
    return f"skyplug/sync/{uuid.uuid4().hex[:12]}"


class Standin:
    """The Nuvla stand-in as a process (``tools/nuvla_standin.py --mqtt``) with an admin API key in a
    credentials file; ``client()`` is a logged-in real ``nuvla-api`` client."""

    def __init__(self, s3_service: Any, mqtt_url: str, tmp: Path) -> None:
        self.creds_file = tmp / "nuvla-admin.json"
        cmd = [sys.executable, str(ROOT / "tools" / "nuvla_standin.py"), "--port", "0"]
        cmd += ["--s3-endpoint", s3_service.endpoint, "--s3-region", s3_service.region, "--mqtt", mqtt_url]
        self.log = open(tmp / "standin.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*cmd, "--credentials-file", str(self.creds_file)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        assert self.endpoint.startswith("http://127.0.0.1:"), self.endpoint
        creds = json.loads(self.creds_file.read_text())
        self.key, self.secret = creds["key"], creds["secret"]

    def client(self) -> Any:
        from nuvla.api import Api

        api = Api(self.endpoint, persist_cookie=False)
        assert api.login_apikey(self.key, self.secret).status_code == 201
        return api

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def s3_credential(api: Any, s3_service: Any) -> str:
    """An S3 infrastructure-service and its minio credential in the stand-in; the credential id."""
    infra = api.add(
        "infrastructure-service",
        {
            "template": {
                "href": "infrastructure-service-template/generic",
                "subtype": "s3",
                "endpoint": s3_service.endpoint,
                "parent": f"infrastructure-service-group/{uuid.uuid4()}",
                "name": "test s3",
            }
        },
    ).data["resource-id"]
    cred = api.add(
        "credential",
        {
            "template": {
                "href": "credential-template/infrastructure-service-minio",
                "parent": infra,
                "access-key": s3_service.access_key,
                "secret-key": s3_service.secret_key,
            }
        },
    )
    return str(cred.data["resource-id"])


def upload_data_object(api: Any, cred: str, bucket: str, key: str, data: bytes) -> str:
    """As the real client does: create the data-object, PUT to the presigned URL, mark it ready."""
    import hashlib

    import requests

    tpl = {
        "href": "data-object-template/generic",
        "credential": cred,
        "bucket": bucket,
        "object": key,
        "content-type": "application/octet-stream",
        "name": key,
    }
    rid = str(api.add("data-object", {"template": tpl}).data["resource-id"])
    ref = SimpleNamespace(id=rid)  # the client builds the action URL from the id alone
    url = api.operation(ref, "upload").data["uri"]
    resp = requests.put(url, data=data, headers={"Content-Type": "application/octet-stream"}, timeout=60)
    resp.raise_for_status()
    api.operation(ref, "ready", {"md5sum": hashlib.md5(data).hexdigest()})
    return rid


@pytest.fixture
def standin(s3env: Any, mqtt_broker: Any, topic: str, tmp_path: Path) -> Iterator[Standin]:
    server = Standin(s3env.services["edge"], f"{mqtt_broker.url}/{topic}", tmp_path)
    try:
        yield server
    finally:
        server.stop()
