"""Catalogue sync jobs: keep the catalogue in step with new objects, from MQTT notifications or a scan.

Each object is handled once per version: indexed by its format plugin, catalogued (a changed object
replaces its record), recorded in provenance (one activity per object, the index and catalogue
events inside it) and published to the chosen publishers. A state table (through
:mod:`skyplug.sqlbackend`, in the data folder) keyed by (object URI, version) makes handling
idempotent: a duplicate notification changes nothing, and a poison message (unknown data-object,
missing S3 object, unreadable file, malformed JSON) is logged once, recorded as failed and acked.

The listener is paho-mqtt 2.x at QoS 1 with a persistent session (fixed client id,
``clean_session=False``) and manual acks sent only once a message is fully handled, so a killed job
gets its unacknowledged notifications again and a broker restart loses none (it keeps the session).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skyplug.core.errors import ConfigError, NotFound, SiteError, SkyplugError
from skyplug.core.logs import redact

log = logging.getLogger("skyplug.catalog.sync")

READY_WAIT = 60.0  # seconds a notified data-object may take to become READY
DONE, FAILED = "done", "failed"


class SyncError(SkyplugError):
    """One object or message could not be synced; the message names it and the cause."""


# --- Nuvla: the data-object a notification names ---------------------------------------------


def nuvla_login(endpoint: str) -> Any:
    """A real ``nuvla-api`` client logged in by API key, as the Nuvla publisher logs in
    (``SKYPLUG_NUVLA_API_KEY`` / ``SKYPLUG_NUVLA_API_SECRET``, else ``SKYPLUG_NUVLA_CREDENTIALS``),
    logging in again when its session expires."""
    from skyplug.plugins.publishers.nuvla import connect

    return connect(endpoint, reauthenticate=True)


def data_object_location(
    api: Any, rid: str, endpoints: dict[str, str | None] | None = None
) -> tuple[str, str, str | None, str]:
    """(bucket, object, S3 endpoint of its infrastructure service or None, state) of a data-object;
    ``endpoints`` caches credential id -> endpoint between calls."""
    from nuvla.api import NuvlaError

    try:
        doc = api.get(rid).data
        cache = {} if endpoints is None else endpoints
        if doc["credential"] not in cache:
            cache[doc["credential"]] = _infrastructure_endpoint(api, doc)
        endpoint = cache[doc["credential"]]
    except NuvlaError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise NotFound(f"{rid}: not found in Nuvla ({status})") from None
    except KeyError as exc:
        raise SyncError(f"{rid}: data-object without {exc}") from None
    return doc["bucket"], doc["object"], endpoint, doc.get("state", "")


def _infrastructure_endpoint(api: Any, doc: dict[str, Any]) -> str | None:
    """The S3 endpoint of a data-object's credential's infrastructure service, when it can be read."""
    from nuvla.api import NuvlaError

    try:
        cred = api.get(doc["credential"]).data
        return api.get(cred["parent"]).data.get("endpoint")  # type: ignore[no-any-return]
    except (NuvlaError, KeyError):
        return None


# --- the state table -------------------------------------------------------------------------------


class SyncState:
    """What was handled: (object URI, version) -> done / failed, with the cause of a failure."""

    def __init__(self, url: str | None = None) -> None:
        from skyplug.core.config import data_dir
        from skyplug.sqlbackend import SQLBackend

        self.db = SQLBackend(url or f"sqlite:///{data_dir() / 'catalog-sync.db'}", timeout=30)
        with self.db.transaction(immediate=False) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS skyplug_sync (uri TEXT NOT NULL, version TEXT NOT NULL, "
                "status TEXT NOT NULL, detail TEXT, record TEXT, updated REAL NOT NULL, "
                "PRIMARY KEY (uri, version))"
            )

    def status(self, uri: str, version: str) -> str | None:
        rows = self.db.query("SELECT status FROM skyplug_sync WHERE uri = ? AND version = ?", (uri, version))
        return str(rows[0][0]) if rows else None

    def mark(self, uri: str, version: str, status: str, detail: str = "", record: str = "") -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM skyplug_sync WHERE uri = ? AND version = ?", (uri, version))
            self.db.execute(
                "INSERT INTO skyplug_sync (uri, version, status, detail, record, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (uri, version, status, detail, record, time.time()),
            )

    def other_done(self, uri: str, version: str) -> bool:
        """True if another version of ``uri`` was catalogued."""
        sql = "SELECT 1 FROM skyplug_sync WHERE uri = ? AND version <> ? AND status = ?"
        return bool(self.db.query(sql, (uri, version, DONE)))

    def counts(self) -> dict[str, int]:
        return {
            str(s): int(n)
            for s, n in self.db.query("SELECT status, COUNT(*) FROM skyplug_sync GROUP BY status")
        }

    def close(self) -> None:
        self.db.close()


# --- handling one object -----------------------------------------------------------------------------


@dataclass
class Syncer:
    """Handles objects and notifications: index, catalogue, provenance, publish; remembers each."""

    site: str | None = None
    nuvla: str | None = None
    publish_to: Sequence[str] = ()
    db_url: str | None = None
    state_url: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"seen": 0, "added": 0, "skipped": 0, "failed": 0})

    def __post_init__(self) -> None:
        from skyplug.catalog.service import open_configured

        self.state = SyncState(self.state_url)
        self.catalog = open_configured(self.db_url)
        self.catalog.init()
        self._api: Any = None
        self._endpoints: dict[str, str | None] = {}
        self._publishers = [_publisher(name) for name in self.publish_to]
        self._lock = threading.Lock()

    def close(self) -> None:
        for pub in self._publishers:
            pub.close()
        self.catalog.close()
        self.state.close()

    # --- messages
    def handle_message(self, payload: bytes) -> str:
        """Handle one notification; the outcome (added / updated / skipped / failed)."""
        try:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            digest = hashlib.sha256(payload).hexdigest()[:16]
            return self._fail(f"message:{digest}", "", f"message {digest}: malformed JSON ({exc})")
        if isinstance(msg.get("uri"), str):
            return self.handle_object(msg["uri"], self.site)
        rid = msg.get("RESOURCE_URI")
        if isinstance(rid, str) and rid.startswith("data-object/"):
            return self.handle_data_object(rid)
        digest = hashlib.sha256(payload).hexdigest()[:16]
        return self._fail(
            f"message:{digest}", "", f"message {digest}: neither 'uri' nor a data-object RESOURCE_URI"
        )

    def handle_data_object(self, rid: str) -> str:
        """A Nuvla data-object: wait until READY, then handle its S3 object."""
        if self.nuvla is None:
            return self._fail(rid, "", f"{rid}: a Nuvla notification, but no --nuvla endpoint")
        if self.state.status(rid, "") == FAILED:
            return self._skip()
        deadline = time.monotonic() + READY_WAIT
        while True:
            try:
                bucket, key, endpoint, state = data_object_location(self._nuvla(), rid, self._endpoints)
            except SkyplugError as exc:
                return self._fail(rid, "", str(exc))
            if state == "READY":
                break
            if time.monotonic() > deadline:
                return self._fail(rid, "", f"{rid}: still {state or 'not READY'} after {READY_WAIT:.0f} s")
            time.sleep(0.2)
        try:
            site = self.site or _site_for_endpoint(endpoint)
        except ConfigError as exc:
            return self._fail(rid, "", f"{rid}: {exc}")
        return self.handle_object(f"s3://{bucket}/{key}", site)

    def handle_object(self, uri: str, site: str | None, version: str | None = None) -> str:
        """Catalogue one object version once (re-cataloguing it when its version changed)."""
        with self._lock:
            self.counts["seen"] += 1
            try:
                version = version if version is not None else _version(uri, site)
            except SkyplugError as exc:
                if _transient(exc):
                    raise  # S3 unreachable: not the object's fault; unacked, it comes again
                return self._fail(uri, "", str(exc))
            if self.state.status(uri, version) is not None:
                return self._skip()
            try:
                did, status = self._catalogue(uri, site, version)
            except SkyplugError as exc:
                if _transient(exc):
                    raise  # a store (S3, the catalogue, a publisher) is down: retried, never poison
                return self._fail(uri, version, str(exc))
            except Exception as exc:  # a format plugin tripped on a bad file: still one line
                return self._fail(uri, version, f"{uri}: {type(exc).__name__}: {exc}")
            self.state.mark(uri, version, DONE, status, did)
            self.counts["added"] += 1
            log.info("%s %s (version %s)", status, uri, version)
            return status

    def _catalogue(self, uri: str, site: str | None, version: str) -> tuple[str, str]:
        from skyplug.catalog.service import record_for
        from skyplug.core import provenance as pv
        from skyplug.core.publisher import publishing_explicitly

        with pv.activity("catalog sync", {"uri": uri, "version": version}) as act:
            record = record_for(uri, site)
            with publishing_explicitly(self.publish_to):  # published below, at least once
                report = self.catalog.add([record])[0]
            replaced = 0
            if self.state.other_done(uri, version):  # an older version was catalogued: replace it
                replaced = self.catalog.drop_other_versions(uri, str(record.get("skyplug_version") or ""))
            run = act.run
        if self._publishers:
            self._publish(record, run)
        status = "updated" if replaced or report["status"] == "updated" else report["status"]
        return str(report["obs_publisher_did"]), status

    def _publish(self, record: dict[str, Any], run: str) -> None:
        from skyplug.plugins.provenance import store as prov_store

        with prov_store.open_store(prov_store.store_url()) as store:
            runs = {run: store.run_rows(run)}
        for pub in self._publishers:
            pub.publish([record], runs)

    def _nuvla(self) -> Any:
        if self._api is None:
            assert self.nuvla is not None
            self._api = nuvla_login(self.nuvla)
        return self._api

    def _skip(self) -> str:
        self.counts["skipped"] += 1
        return "skipped"

    def _fail(self, uri: str, version: str, why: str) -> str:
        """Log a poison object once and remember it as failed (so it is acked, never retried); a
        message about an object already known as failed is skipped."""
        if self.state.status(uri, version) is not None:
            return self._skip()
        why = redact(" ".join(why.split()))
        log.warning("%s", why)
        self.state.mark(uri, version, FAILED, why)
        self.counts["failed"] += 1
        return "failed"

    # --- backfill
    def scan(self, prefix_uri: str, progress: bool = False) -> dict[str, int]:
        """Handle every object under ``s3://bucket/prefix`` or every file under a local folder
        (already-done versions skipped)."""
        from tqdm import tqdm

        objects = list(
            _list_s3(prefix_uri, self.site) if prefix_uri.startswith("s3://") else _list_dir(prefix_uri)
        )
        for uri, etag in tqdm(objects, desc="objects", unit="obj", disable=not progress):
            self.handle_object(uri, self.site, etag)
        return dict(self.counts)


def _transient(exc: BaseException) -> bool:
    """A failure of a store rather than of the object (S3, catalogue or publisher unreachable):
    the job stops with it and the unacknowledged message comes again, instead of being poison."""
    from skyplug.catalog.db import CatalogUnreachable

    if isinstance(exc, NotFound):
        return False
    return isinstance(exc, SiteError | CatalogUnreachable | OSError)


def _publisher(name: str) -> Any:
    """The publisher ``name`` configured from ``[publishers.NAME]`` (the SPARQL default store as
    ``catalog publish`` has it)."""
    from skyplug.core import plugins
    from skyplug.core.config import data_dir, get_config

    impl = plugins.find("publishers", name)
    options = dict((get_config().raw.get("publishers", {}) or {}).get(name, {}) or {})
    if name == "sparql":
        options.setdefault("endpoint", f"oxigraph:{data_dir() / 'sparql-store'}")
    return type(impl).from_options(options) if hasattr(type(impl), "from_options") else impl


def _site_for_endpoint(endpoint: str | None) -> str | None:
    """The configured site whose endpoint is ``endpoint`` (None: the default site)."""
    from skyplug.core.config import get_config

    if not endpoint:
        return None
    want = endpoint.rstrip("/")
    for name, site in get_config().sites.items():
        if str(site.options.get("endpoint", "")).rstrip("/") == want:
            return str(name)
    raise ConfigError(f"no configured site has the endpoint {endpoint} (name one with --site)")


def _s3(uri: str, site: str | None) -> tuple[Any, str, str]:
    from skyplug.core.config import get_config
    from skyplug.plugins.locators.s3 import client_for

    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"{uri}: an s3://bucket/key URI is needed")
    return client_for(get_config().site(site)), parts.netloc, parts.path.lstrip("/")


def _version(uri: str, site: str | None) -> str:
    """The object's current ETag (S3) or mtime+size (a local file); NotFound when it is absent."""
    if not uri.startswith("s3://"):
        path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
        try:
            st = path.stat()
        except OSError:
            raise NotFound(f"{uri}: no such object") from None
        return f"{st.st_mtime_ns}-{st.st_size}"
    from botocore.exceptions import BotoCoreError, ClientError

    client, bucket, key = _s3(uri, site)
    try:
        return str(client.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            raise NotFound(f"{uri}: no such S3 object") from None
        raise SiteError(f"{uri}: S3 HEAD failed ({code})") from None
    except BotoCoreError as exc:
        raise SiteError(f"{uri}: S3 unreachable ({type(exc).__name__})") from None


def _list_dir(folder: str) -> Iterator[tuple[str, str]]:
    root = Path(folder[len("file://") :] if folder.startswith("file://") else folder)
    if not root.is_dir():
        raise NotFound(f"{folder}: no such folder")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield str(path.resolve()), _version(str(path), None)


def _list_s3(prefix_uri: str, site: str | None) -> Iterator[tuple[str, str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    client, bucket, prefix = _s3(prefix_uri, site)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield f"s3://{bucket}/{obj['Key']}", str(obj["ETag"]).strip('"')
    except (ClientError, BotoCoreError) as exc:
        raise SiteError(f"{prefix_uri}: cannot list ({type(exc).__name__})") from None


# --- the MQTT listener --------------------------------------------------------------------------------


def parse_listen(url: str) -> tuple[str, int, str]:
    """``mqtt://HOST:PORT/TOPIC`` -> (host, port, topic)."""
    parts = urlsplit(url)
    topic = parts.path.lstrip("/")
    if parts.scheme != "mqtt" or not parts.hostname or not topic:
        raise ConfigError(f"{url}: use mqtt://HOST:PORT/TOPIC")
    return parts.hostname, parts.port or 1883, topic


def listen(
    syncer: Syncer,
    url: str,
    client_id: str | None = None,
    max_messages: int | None = None,
    idle_exit: float | None = None,
    on_outcome: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Handle notifications from ``url`` until ``max_messages`` were handled or none came for
    ``idle_exit`` seconds (forever when neither is given); each is acked once handled."""
    import paho.mqtt.client as mqtt

    from skyplug.catalog.mqttloop import SelectorLoop

    host, port, topic = parse_listen(url)
    client_id = client_id or "skyplug-sync-" + hashlib.sha256(url.encode()).hexdigest()[:12]
    inbox: queue.Queue[tuple[int, int, bytes]] = queue.Queue()
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
    )
    client.manual_ack_set(True)
    client.on_connect = lambda c, _u, _f, reason, _p: (
        c.subscribe(topic, qos=1) if not reason.is_failure else log.warning("MQTT %s: %s", url, reason)
    )
    client.on_message = lambda _c, _u, msg: inbox.put((msg.mid, msg.qos, bytes(msg.payload)))
    client.connect_async(host, port, keepalive=30)
    loop = SelectorLoop(client, "sync-mqtt").start()
    handled, last = 0, time.monotonic()
    try:
        while max_messages is None or handled < max_messages:
            try:
                mid, qos, payload = inbox.get(timeout=0.2)
            except queue.Empty:
                if idle_exit is not None and time.monotonic() - last > idle_exit:
                    break
                continue
            outcome = syncer.handle_message(payload)
            if qos > 0:
                client.ack(mid, qos)  # only now: a job killed before this gets the message again
            handled, last = handled + 1, time.monotonic()
            if on_outcome is not None:
                on_outcome(outcome)
        time.sleep(0.1)  # let the last PUBACK leave
    finally:
        loop.stop()
    return dict(syncer.counts)
