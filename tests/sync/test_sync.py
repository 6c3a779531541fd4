"""``skyplug catalog sync``: idempotent, at-least-once cataloguing from MQTT notifications and scans,
against real Mosquitto, real S3 servers and the Nuvla stand-in process."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from skyplug.catalog import sync
from skyplug.plugins.publishers import nuvla as nuvla_pub
from tests.sync.conftest import Publisher, Standin, SyncSite, s3_credential, upload_data_object

pytestmark = pytest.mark.mqtt


def _listen(
    site: SyncSite, broker: Any, topic: str, n: int, client_id: str, **kw: Any
) -> tuple[dict, list[str]]:
    """Run the listener in this process until ``n`` messages were handled (or 3 s of silence)."""
    outcomes: list[str] = []
    syncer = sync.Syncer(db_url=site.catalog_url, state_url=site.state_url, **kw)
    try:
        counts = sync.listen(
            syncer,
            f"{broker.url}/{topic}",
            client_id,
            max_messages=n,
            idle_exit=3,
            on_outcome=outcomes.append,
        )
    finally:
        syncer.close()
    return counts, outcomes


def _subscribe_first(broker: Any, topic: str, client_id: str) -> None:
    """Create the persistent session, so messages published before the job starts wait for it."""
    import threading

    import paho.mqtt.client as mqtt

    from skyplug.catalog.mqttloop import SelectorLoop

    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *_a: done.set()
    c.connect_async(broker.host, broker.port)
    loop = SelectorLoop(c).start()
    try:
        assert done.wait(10), "no SUBACK"
    finally:
        loop.stop()


def test_duplicate_message_changes_nothing(
    sync_site: SyncSite,
    sample_files: dict[str, Path],
    mqtt_broker: Any,
    publisher: Publisher,
    topic: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from skyplug.plugins.publishers import sparql

    published: list[str] = []
    real = sparql.SparqlPublisher.publish

    def counting(self: Any, records: Any, provenance: Any = None) -> Any:
        records = list(records)
        published.extend(r["skyplug_uri"] for r in records)
        return real(self, records, provenance)

    monkeypatch.setattr(sparql.SparqlPublisher, "publish", counting)
    uri = sync_site.put(sample_files["ms"], "dup/SB001.ms.zip")
    client_id = "sync-dup"
    _subscribe_first(mqtt_broker, topic, client_id)
    publisher.send(topic, {"uri": uri}, {"uri": uri})
    counts, outcomes = _listen(sync_site, mqtt_broker, topic, 2, client_id, publish_to=["sparql"])
    assert outcomes == ["added", "skipped"]
    assert counts == {"seen": 2, "added": 1, "skipped": 1, "failed": 0}
    rows = sync_site.rows()
    assert [r["skyplug_uri"] for r in rows] == [uri]
    assert published == [uri]  # one publish, not two
    # the record and its provenance run are in the SPARQL store
    import pyoxigraph

    from skyplug.core.config import data_dir

    store = pyoxigraph.Store(str(data_dir() / "sparql-store"))
    graphs = {str(g.value) for g in store.named_graphs()}
    assert any("run" in g for g in graphs) and len(graphs) >= 2
    # acked: the session has nothing left for the same client id
    _, outcomes = _listen(sync_site, mqtt_broker, topic, 1, client_id)
    assert outcomes == []


def test_poison_messages_are_logged_once_and_acked(
    sync_site: SyncSite,
    mqtt_broker: Any,
    publisher: Publisher,
    topic: str,
    standin: Standin,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(nuvla_pub.KEY_ENV, standin.key)
    monkeypatch.setenv(nuvla_pub.SECRET_ENV, standin.secret)
    corrupt = tmp_path / "broken.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\x00garbage" * 400)
    unknown = tmp_path / "notes.bin"
    unknown.write_bytes(b"\x01\x02 nothing skyplug knows " * 50)
    poison = [
        b"{not json",
        {"RESOURCE_URI": "data-object/00000000-0000-0000-0000-000000000000"},
        {"uri": f"s3://{sync_site.bucket}/missing/object.fits"},
        {"uri": sync_site.put(corrupt, "poison/broken.fits")},
        {"uri": sync_site.put(unknown, "poison/notes.bin")},
    ]
    client_id = "sync-poison"
    _subscribe_first(mqtt_broker, topic, client_id)
    publisher.send(topic, *poison, *poison)  # each twice
    caplog.set_level(logging.WARNING, logger="skyplug.catalog.sync")
    _, outcomes = _listen(sync_site, mqtt_broker, topic, 10, client_id, nuvla=standin.endpoint)
    assert outcomes == ["failed"] * 5 + ["skipped"] * 5  # known poison is not handled again
    warnings = [r.getMessage() for r in caplog.records if r.name == "skyplug.catalog.sync"]
    assert len(warnings) == 5, warnings  # once each
    for needle in (
        "malformed JSON",
        "data-object/00000000",
        "missing/object.fits",
        "broken.fits",
        "notes.bin",
    ):
        assert sum(needle in w for w in warnings) == 1, (needle, warnings)
    assert all("\n" not in w and "Traceback" not in w for w in warnings)
    assert sync_site.rows() == []
    state = sync.SyncState(sync_site.state_url)
    assert state.counts() == {"failed": 5}
    state.close()
    _, outcomes = _listen(sync_site, mqtt_broker, topic, 1, client_id, nuvla=standin.endpoint)
    assert outcomes == []  # all acked: nothing comes back


def test_changed_object_is_recatalogued_not_duplicated(
    sync_site: SyncSite, sample_files: dict[str, Path]
) -> None:
    from skyplug.synthetic import fits

    other = fits.make_all(sync_site.tmp / "other")["cube3_i16"]
    uri = sync_site.put(sample_files["fits"], "chg/image.fits")
    syncer = sync.Syncer(db_url=sync_site.catalog_url, state_url=sync_site.state_url)
    try:
        assert syncer.handle_object(uri, None) == "added"
        first = sync_site.rows()
        sync_site.put(other, "chg/image.fits")  # new bytes, new ETag
        assert syncer.handle_object(uri, None) == "updated"
        assert syncer.handle_object(uri, None) == "skipped"
    finally:
        syncer.close()
    rows = sync_site.rows()
    assert len(first) == 1 and len(rows) == 1
    assert rows[0]["skyplug_uri"] == uri and rows[0]["skyplug_version"] != first[0]["skyplug_version"]


def test_scan_backfills_once(sync_site: SyncSite, sample_files: dict[str, Path]) -> None:
    for i, kind in enumerate(("ms", "h5", "fits")):
        sync_site.put(sample_files[kind], f"scan/{i}-{sample_files[kind].name}")
    sync_site.put(sample_files["fits"], "elsewhere/x.fits")
    args = [
        "catalog",
        "sync",
        "--scan",
        f"s3://{sync_site.bucket}/scan/",
        "--state",
        sync_site.state_url,
        "--json",
    ]
    first = sync_site.cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"seen": 3, "added": 3, "skipped": 0, "failed": 0}
    again = sync_site.cli(*args)
    assert json.loads(again.stdout) == {"seen": 3, "added": 0, "skipped": 3, "failed": 0}
    assert sorted(r["skyplug_uri"].split("/")[-1] for r in sync_site.rows()) == [
        "0-SB001.ms.zip",
        "1-SB001.h5",
        "2-cube4.fits",
    ]
    bad = sync_site.cli("catalog", "sync", "--scan", "s3://no-such-bucket-here/x")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "no-such-bucket-here" in bad.stderr


def test_nuvla_notifications_and_no_secret_anywhere(
    sync_site: SyncSite,
    sample_files: dict[str, Path],
    mqtt_broker: Any,
    topic: str,
    standin: Standin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(nuvla_pub.KEY_ENV, standin.key)
    monkeypatch.setenv(nuvla_pub.SECRET_ENV, standin.secret)
    client_id = "sync-nuvla"
    _subscribe_first(mqtt_broker, topic, client_id)
    api = standin.client()
    edge = sync_site.s3.services["edge"]
    cred = s3_credential(api, edge)
    rids = [
        upload_data_object(api, cred, sync_site.bucket, f"nuvla/{p.name}", p.read_bytes())
        for p in sample_files.values()
    ]
    result = sync_site.cli(
        "-v",
        "catalog",
        "sync",
        "--listen",
        f"{mqtt_broker.url}/{topic}",
        "--nuvla",
        standin.endpoint,
        "--client-id",
        client_id,
        "--state",
        sync_site.state_url,
        "--max-messages",
        str(len(rids)),
        "--idle-exit",
        "20",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 3
    uris = sorted(r["skyplug_uri"] for r in sync_site.rows())
    assert uris == sorted(f"s3://{sync_site.bucket}/nuvla/{p.name}" for p in sample_files.values())
    secrets = [standin.secret, edge.secret_key]
    stored = [result.stdout, result.stderr]
    stored += [p.read_bytes().decode("latin-1") for p in sync_site.tmp.glob("*.db*")]
    for secret in secrets:
        assert all(secret not in text for text in stored)


def test_unreachable_store_is_not_poison(
    sync_site: SyncSite,
    sample_files: dict[str, Path],
    mqtt_broker: Any,
    publisher: Publisher,
    topic: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 down is not the object's fault: the job stops with one line, the message stays unacked
    and is handled when the job runs again against a working site."""
    from tests.servers.s3_services import services

    uri = sync_site.put(sample_files["h5"], "transient/SB001.h5")
    dead = services.svcbase.free_ports(1)[0]
    with sync_site.config_file.open("a") as fh:
        fh.write(f'\n[sites.dead]\ntype = "s3"\nendpoint = "http://127.0.0.1:{dead}"\nregion = "us-east-1"\n')
    monkeypatch.setenv("SKYPLUG_SITE_DEAD_ACCESS_KEY_ID", "dead")
    monkeypatch.setenv("SKYPLUG_SITE_DEAD_SECRET_ACCESS_KEY", "dead-secret")
    client_id = "sync-transient"
    _subscribe_first(mqtt_broker, topic, client_id)
    publisher.send(topic, {"uri": uri})
    base = ["catalog", "sync", "--listen", f"{mqtt_broker.url}/{topic}", "--client-id", client_id]
    base += ["--state", sync_site.state_url, "--max-messages", "1", "--idle-exit", "20", "--json"]
    down = sync_site.cli(*base, "--site", "dead")
    assert down.returncode != 0
    errors = [ln for ln in down.stderr.splitlines() if ln.startswith("skyplug: error")]
    assert len(errors) == 1 and "transient/SB001.h5" in errors[0] and "Traceback" not in down.stderr, (
        down.stderr
    )
    state = sync.SyncState(sync_site.state_url)
    assert state.counts() == {}  # not recorded as failed
    state.close()
    up = sync_site.cli(*base, "--site", "edge")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["added"] == 1
    assert [r["skyplug_uri"] for r in sync_site.rows()] == [uri]
