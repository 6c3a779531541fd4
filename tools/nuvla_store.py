"""Nuvla's resources in memory for the stand-in (tools/nuvla_standin.py serves them over HTTP).

Kept apart from the HTTP layer so each stays small. The rules follow
reference/catalog_standards.md 1.2-1.3: templates, ACL owners, the data-object state machine with
presigned S3 URLs (boto3, path-style), 406 on data-record keys with unregistered prefixes,
merge or RFC 6902 edits, and an MQTT notification on every data-object creation.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import re
import secrets
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cimi

log = logging.getLogger("nuvla_standin")
COOKIE = "com.com.sixsq.nuvla.cookie"
USER_TYPES = (
    "data-object",
    "data-record",
    "data-record-key-prefix",
    "data-set",
    "infrastructure-service",
    "credential",
)
TEMPLATES = {
    "session-template": ["api-key"],
    "data-object-template": ["generic", "public"],
    "infrastructure-service-template": ["generic"],
    "credential-template": ["infrastructure-service-minio"],
}
SERVER_MANAGED = ("id", "resource-type", "created", "updated", "created-by", "updated-by", "operations")
DATA_OBJECT_EDITABLE = ("name", "description", "tags", "acl")
STATE_ACTIONS = {"upload": ("NEW", "UPLOADING"), "ready": ("UPLOADING",), "download": ("READY",)}
INFRA_RE = re.compile(r"^infrastructure-service/[a-z0-9]+(-[a-z0-9]+)*(_\d+)?$")
PREFIX_RE = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")


class NuvlaHTTPError(Exception):
    """An error Nuvla answers with JSON ``{"status": code, "message": …}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _prefixed_keys(doc: Any) -> set[str]:
    """Prefixes of every ``prefix:key`` key, recursively through maps and lists."""
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if ":" in key:
                found.add(key.split(":", 1)[0])
            found |= _prefixed_keys(value)
    elif isinstance(doc, list):
        for value in doc:
            found |= _prefixed_keys(value)
    return found


class Store:
    """Nuvla's resources in memory, behind one lock; every method enforces the contract.

    Unlike Nuvla, anonymous requests are refused (403): the stand-in serves no public resources.
    """

    def __init__(
        self,
        users: dict[str, tuple[str, bool]],
        s3_endpoint: str | None,
        s3_region: str,
        mqtt: str | None = None,
    ) -> None:
        self.users = users  # api-key id -> (secret, is_admin)
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        self.mqtt = mqtt
        self.lock = threading.RLock()
        self.docs: dict[str, dict[str, dict]] = {t: {} for t in (*USER_TYPES, "session")}
        self.sessions: dict[str, str] = {}  # cookie token -> session id

    # --- identity -------------------------------------------------------------------------
    def login(self, body: dict) -> tuple[dict, str]:
        tpl = body.get("template") or {}
        if tpl.get("href") != "session-template/api-key":
            raise NuvlaHTTPError(400, "invalid session template")
        key, secret = str(tpl.get("key", "")), str(tpl.get("secret", ""))
        known = self.users.get(key)
        if known is None or not secrets.compare_digest(known[0].encode(), secret.encode()):
            raise NuvlaHTTPError(403, f"invalid credentials for '{key}'")
        token = secrets.token_urlsafe(24)
        sid = f"session/{uuid.uuid4()}"
        with self.lock:
            self.sessions[token] = sid
            self.docs["session"][sid] = self._common(
                sid,
                "session",
                {"identifier": key, "user": self._user(key)},
                self._user(key),
                {"owners": [self._user(key)]},
            )
        return {"status": 201, "message": f"{sid} created", "resource-id": sid}, token

    @staticmethod
    def _user(key: str) -> str:
        return "user/" + key.split("/", 1)[-1]

    def who(self, token: str | None) -> tuple[str, bool, str]:
        """(user id, is admin, session id) of a cookie, or 403."""
        with self.lock:
            sid = self.sessions.get(token or "")
            if sid is None or sid not in self.docs["session"]:
                raise NuvlaHTTPError(403, "access denied: not authenticated")
            key = self.docs["session"][sid]["identifier"]
        return self._user(key), self.users[key][1], sid

    @staticmethod
    def can(doc: dict, user: str, admin: bool, write: bool) -> bool:
        acl = doc.get("acl") or {}
        rights = ("owners", "edit-acl", "edit-data", "edit-meta") + (
            () if write else ("view-acl", "view-data", "view-meta")
        )
        allowed = {p for r in rights for p in acl.get(r, [])}
        return admin or bool(allowed & {user, "group/nuvla-user", "group/nuvla-anon"})

    # --- helpers ---------------------------------------------------------------------------
    def _common(self, rid: str, rtype: str, body: dict, user: str, acl: dict | None = None) -> dict:
        now = _now()
        doc = {k: v for k, v in body.items() if k not in SERVER_MANAGED}
        doc.update({"id": rid, "resource-type": rtype, "created": now, "updated": now, "created-by": user})
        doc.setdefault("acl", acl or {"owners": [user]})
        return doc

    def _get(self, rtype: str, rid: str, user: str, admin: bool, write: bool = False) -> dict:
        doc = self.docs.get(rtype, {}).get(rid)
        if doc is None:
            raise NuvlaHTTPError(404, f"{rid} not found")
        if not self.can(doc, user, admin, write):
            raise NuvlaHTTPError(403, f"invalid credentials for '{rid}'")
        return doc

    def operations(self, doc: dict) -> list[dict]:
        rid = doc["id"]
        ops = [{"rel": "edit", "href": rid}, {"rel": "delete", "href": rid}]
        if doc["resource-type"] == "data-object":
            ops += [
                {"rel": a, "href": f"{rid}/{a}"} for a, ok in STATE_ACTIONS.items() if doc.get("state") in ok
            ]
        return ops

    def render(self, doc: dict) -> dict:
        return {**copy.deepcopy(doc), "operations": self.operations(doc)}

    def _template(self, rtype: str, rid: str) -> dict:
        name = rid.split("/", 1)[1]
        if name not in TEMPLATES[rtype]:
            raise NuvlaHTTPError(404, f"{rid} not found")
        return {
            "id": rid,
            "resource-type": rtype,
            "method": name,
            "subtype": name,
            "acl": {"owners": ["group/nuvla-admin"], "view-data": ["group/nuvla-anon"]},
        }

    # --- CRUD ------------------------------------------------------------------------------
    def query(self, rtype: str, params: dict[str, list[str]], user: str, admin: bool, sid: str) -> dict:
        if rtype in TEMPLATES:
            docs = [self._template(rtype, f"{rtype}/{n}") for n in TEMPLATES[rtype]]
        elif rtype in self.docs:
            with self.lock:
                docs = [self.render(d) for d in self.docs[rtype].values() if self.can(d, user, admin, False)]
            if rtype == "session":
                docs = [d for d in docs if d["id"] == sid]
        else:
            raise NuvlaHTTPError(404, f"{rtype} not found")
        pred = cimi.filters(params.get("filter", []))
        matched = cimi.order([d for d in docs if pred(d)], params.get("orderby", []))
        first = self._int(params, "first", 1)
        last = self._int(params, "last", 10000)
        page = matched[max(first, 1) - 1 : last] if last > 0 else []
        out = {
            "id": rtype,
            "resource-type": f"{rtype}-collection",
            "count": len(matched),
            "resources": [cimi.select(d, params.get("select", [])) for d in page],
            "acl": {"query": ["group/nuvla-user"], "add": ["group/nuvla-user"]},
            "operations": [{"rel": "add", "href": rtype}],
        }
        if params.get("aggregation"):
            out["aggregations"] = cimi.aggregate(matched, params["aggregation"])
        return out

    @staticmethod
    def _int(params: dict[str, list[str]], name: str, default: int) -> int:
        raw = (params.get(name) or [str(default)])[-1]
        if not raw.isdigit():
            raise NuvlaHTTPError(400, f"invalid '{name}' parameter: {raw!r}")
        return int(raw)

    def add(self, rtype: str, body: dict, user: str, admin: bool) -> dict:
        if rtype not in USER_TYPES:
            raise NuvlaHTTPError(
                405 if rtype in self.docs or rtype in TEMPLATES else 404,
                f"add not allowed on {rtype}" if rtype in self.docs else f"{rtype} not found",
            )
        if not isinstance(body, dict):
            raise NuvlaHTTPError(400, "resource must be a JSON object")
        with self.lock:
            doc = getattr(self, "_new_" + rtype.replace("-", "_"))(body, user, admin)
            self.docs[rtype][doc["id"]] = doc
        log.info("created %s", doc["id"])
        if rtype == "data-object":
            self.notify(doc)
        return {"status": 201, "message": f"{doc['id']} created", "resource-id": doc["id"]}

    def _from_template(self, rtype: str, body: dict) -> tuple[dict, str]:
        tpl = body.get("template")
        if not isinstance(tpl, dict) or not isinstance(tpl.get("href"), str):
            raise NuvlaHTTPError(400, f"{rtype} must be created from a template")
        href = tpl["href"]
        if not href.startswith(f"{rtype}-template/"):
            raise NuvlaHTTPError(400, f"invalid template href {href!r}")
        self._template(f"{rtype}-template", href)  # 404 on an unknown template
        fields = {k: v for k, v in tpl.items() if k not in ("href", "resource-type")}
        return fields, href.split("/", 1)[1]

    def _new_data_object(self, body: dict, user: str, admin: bool) -> dict:
        fields, subtype = self._from_template("data-object", body)
        for key in ("object", "bucket", "credential"):
            if not isinstance(fields.get(key), str) or not fields[key]:
                raise NuvlaHTTPError(400, f"resource does not satisfy defined schema: missing '{key}'")
        fields.update(subtype=subtype, state="NEW")
        cred = self._get("credential", fields["credential"], user, admin)
        client = self.s3(cred)
        try:
            client.head_bucket(Bucket=fields["bucket"])
        except Exception:
            try:
                loc = (
                    {}
                    if self.s3_region == "us-east-1"
                    else {"CreateBucketConfiguration": {"LocationConstraint": self.s3_region}}
                )
                client.create_bucket(Bucket=fields["bucket"], **loc)
            except Exception as exc:
                raise NuvlaHTTPError(503, f"Unable to create the bucket {fields['bucket']}") from exc
        return self._common(f"data-object/{uuid.uuid4()}", "data-object", fields, user)

    def _new_data_record(self, body: dict, user: str, admin: bool) -> dict:
        self._check_record(body)
        return self._common(f"data-record/{uuid.uuid4()}", "data-record", body, user)

    def _check_record(self, body: dict) -> None:
        infra = body.get("infrastructure-service")
        if not isinstance(infra, str) or not INFRA_RE.match(infra):
            raise NuvlaHTTPError(400, "resource does not satisfy defined schema: 'infrastructure-service'")
        geometry = body.get("geometry")
        if geometry is not None and (
            not isinstance(geometry, dict)
            or geometry.get("type") not in ("Point", "Polygon", "MultiPolygon")
            or "coordinates" not in geometry
        ):
            raise NuvlaHTTPError(400, "resource does not satisfy defined schema: 'geometry'")
        known = {d["prefix"] for d in self.docs["data-record-key-prefix"].values()}
        if _prefixed_keys(body) - known:
            raise NuvlaHTTPError(406, "resource uses keys with undefined prefixes")

    def _new_data_record_key_prefix(self, body: dict, user: str, admin: bool) -> dict:
        if not admin:
            raise NuvlaHTTPError(403, "invalid credentials for 'data-record-key-prefix'")
        prefix, uri = body.get("prefix"), body.get("uri")
        if not isinstance(prefix, str) or not PREFIX_RE.match(prefix) or not isinstance(uri, str) or not uri:
            raise NuvlaHTTPError(400, "resource does not satisfy defined schema: 'prefix', 'uri'")
        rid = f"data-record-key-prefix/{prefix}"
        if rid in self.docs["data-record-key-prefix"]:
            raise NuvlaHTTPError(409, f"conflict with {rid}")
        return self._common(
            rid,
            "data-record-key-prefix",
            body,
            user,
            {"owners": ["group/nuvla-admin"], "view-data": ["group/nuvla-user"]},
        )

    def _new_data_set(self, body: dict, user: str, admin: bool) -> dict:
        for key in ("data-record-filter", "data-object-filter", "module-filter"):
            if key in body and (not isinstance(body[key], str) or not body[key].strip()):
                raise NuvlaHTTPError(400, f"resource does not satisfy defined schema: '{key}'")
        return self._common(f"data-set/{uuid.uuid4()}", "data-set", body, user)

    def _new_infrastructure_service(self, body: dict, user: str, admin: bool) -> dict:
        fields, _ = self._from_template("infrastructure-service", body)
        fields.setdefault("state", "CREATED")
        return self._common(f"infrastructure-service/{uuid.uuid4()}", "infrastructure-service", fields, user)

    def _new_credential(self, body: dict, user: str, admin: bool) -> dict:
        fields, method = self._from_template("credential", body)
        for key in ("parent", "access-key", "secret-key"):
            if not isinstance(fields.get(key), str):
                raise NuvlaHTTPError(400, f"resource does not satisfy defined schema: missing '{key}'")
        fields.update(subtype=method, method=method)
        return self._common(f"credential/{uuid.uuid4()}", "credential", fields, user)

    def retrieve(self, rid: str, user: str, admin: bool, select: list[str]) -> dict:
        rtype = rid.split("/", 1)[0]
        if rtype in TEMPLATES:
            return self._template(rtype, rid)
        with self.lock:
            return cimi.select(self.render(self._get(rtype, rid, user, admin)), select)

    def edit(self, rid: str, body: Any, patch: bool, drop: list[str], user: str, admin: bool) -> dict:
        rtype = rid.split("/", 1)[0]
        with self.lock:
            old = self._get(rtype, rid, user, admin, write=True)
            new = (
                _json_patch(old, body)
                if patch
                else {**copy.deepcopy(old), **(body if isinstance(body, dict) else {})}
            )
            if not isinstance(new, dict) or (not patch and not isinstance(body, dict)):
                raise NuvlaHTTPError(400, "invalid edit body")
            for key in (k for spec in drop for k in spec.split(",") if k):
                new.pop(key, None)
            if rtype == "data-object":
                new = {**old, **{k: new[k] for k in DATA_OBJECT_EDITABLE if k in new}}
            for key in SERVER_MANAGED:
                if key in old:
                    new[key] = old[key]
            if rtype == "data-record":
                self._check_record(new)
            new["updated"], new["updated-by"] = _now(), user
            self.docs[rtype][rid] = new
            return self.render(new)

    def delete(self, rid: str, body: dict, user: str, admin: bool) -> dict:
        rtype = rid.split("/", 1)[0]
        with self.lock:
            doc = self._get(rtype, rid, user, admin, write=True)
            if rtype == "data-object":
                self._drop_s3(doc, body, user, admin)
            del self.docs[rtype][rid]
            if rtype == "session":
                self.sessions = {t: s for t, s in self.sessions.items() if s != rid}
        return {"status": 200, "message": f"{rid} deleted", "resource-id": rid}

    def delete_bulk(self, rtype: str, params: dict[str, list[str]], user: str, admin: bool) -> dict:
        if not params.get("filter"):
            raise NuvlaHTTPError(400, "bulk delete needs a filter")
        pred = cimi.filters(params["filter"])
        with self.lock:
            ids = [
                i for i, d in self.docs.get(rtype, {}).items() if self.can(d, user, admin, True) and pred(d)
            ]
        for rid in ids:
            self.delete(rid, {}, user, admin)
        return {"status": 200, "message": f"{len(ids)} resources deleted", "deleted": len(ids)}

    # --- data-object actions over S3 ------------------------------------------------------------
    def s3(self, cred: dict) -> Any:
        """boto3 client for a credential: endpoint from its parent infrastructure-service, path-style."""
        import boto3
        from botocore.config import Config

        infra = self.docs["infrastructure-service"].get(cred.get("parent", ""), {})
        endpoint = infra.get("endpoint") or self.s3_endpoint
        if not endpoint:
            raise NuvlaHTTPError(400, f"no S3 endpoint for {cred['id']}")
        # one client per (endpoint, keys): making one costs ~50 ms, and boto3 clients are thread-safe
        key = (endpoint, cred["access-key"], hashlib.sha256(cred["secret-key"].encode()).hexdigest())
        clients = self.__dict__.setdefault("_s3_clients", {})
        if key not in clients:
            clients[key] = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                region_name=self.s3_region,
                aws_access_key_id=cred["access-key"],
                aws_secret_access_key=cred["secret-key"],
                config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
            )
        return clients[key]

    def action(self, rid: str, name: str, body: dict, user: str, admin: bool) -> tuple[int, dict]:
        rtype = rid.split("/", 1)[0]
        with self.lock:
            doc = self._get(rtype, rid, user, admin, write=name != "download")
            if rtype != "data-object" or name not in STATE_ACTIONS:
                raise NuvlaHTTPError(404, f"undefined action ({name}) for {rid}")
            if doc["state"] not in STATE_ACTIONS[name]:
                valid = ", ".join(STATE_ACTIONS[name])
                raise NuvlaHTTPError(
                    400, f"Invalid state '{doc['state']}' for '{name}' action. Valid states: {valid}"
                )
            client = self.s3(self._get("credential", doc["credential"], user, True))
            where = {"Bucket": doc["bucket"], "Key": doc["object"]}
            if name == "upload":
                ttl = int((body or {}).get("ttl", 15))
                ctype = doc.get("content-type", "application/octet-stream")
                uri = client.generate_presigned_url(
                    "put_object", Params={**where, "ContentType": ctype}, ExpiresIn=ttl * 60
                )
                doc["state"] = "UPLOADING"
                return 200, {"uri": uri}
            if name == "download":
                ttl = int((body or {}).get("ttl", 15))
                return 303, {
                    "uri": client.generate_presigned_url("get_object", Params=where, ExpiresIn=ttl * 60)
                }
            head = client.head_object(**where)
            if doc.get("subtype") == "public":
                try:
                    client.put_object_acl(ACL="public-read", **where)
                except Exception as exc:  # e.g. Swift's s3api has no object ACLs
                    raise NuvlaHTTPError(500, f"Unable to make {doc['object']} public-read") from exc
                doc["url"] = f"{client.meta.endpoint_url.rstrip('/')}/{doc['bucket']}/{doc['object']}"
            doc["bytes"] = int(head["ContentLength"])
            if "content-md5" in head.get("Metadata", {}):
                doc["md5sum"] = head["Metadata"]["content-md5"]
            doc["state"], doc["updated"] = "READY", _now()
            return 200, self.render(doc)

    def _drop_s3(self, doc: dict, body: dict, user: str, admin: bool) -> None:
        if body.get("keep-s3-object"):
            return
        try:
            client = self.s3(self._get("credential", doc["credential"], user, True))
            client.delete_object(Bucket=doc["bucket"], Key=doc["object"])
            if not body.get("keep-s3-bucket"):
                with contextlib.suppress(Exception):  # fails unless empty: that is intended
                    client.delete_bucket(Bucket=doc["bucket"])
        except NuvlaHTTPError:
            pass

    # --- notifications --------------------------------------------------------------------
    def notify(self, doc: dict) -> None:
        """Queue a kafka-notify-style JSON message for a new data-object; never blocks the create."""
        if not self.mqtt:
            return
        payload = {
            "NAME": "data-object created",
            "RESOURCE_URI": doc["id"],
            "RESOURCE_NAME": doc.get("name", ""),
            "RESOURCE_DESCRIPTION": doc.get("description", ""),
            "METRIC": "created",
            "TRIGGER_RESOURCE_PATH": doc["id"],
            "TIMESTAMP": doc["created"],
            "ts": int(time.time() * 1000),
        }
        with self.lock:
            if getattr(self, "_notifier", None) is None:
                self._notifier = _Notifier(self.mqtt)
        self._notifier.put(doc["id"], json.dumps(payload))


class _Notifier:
    """One paho client publishing queued notifications at QoS 1 from a background thread.

    paho's own loop (and ``publish.single``) uses select(), which fails for fds >= 1024 and then
    blocks for good, so the client runs on skyplug's selector loop; a message not acknowledged
    within NOTIFY_WAIT s is logged once and stays queued in paho (re-sent after a reconnect).
    """

    NOTIFY_WAIT = 10.0

    def __init__(self, url: str) -> None:
        import queue

        import paho.mqtt.client as mqtt

        from skyplug.catalog.mqttloop import SelectorLoop

        parts = urlsplit(url)
        self.topic = parts.path.lstrip("/")
        self.queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self.acked: set[int] = set()
        self.cond = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"nuvla-standin-{secrets.token_hex(6)}"
        )
        self.client.on_publish = self._acked
        self.client.connect_async(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        self.loop = SelectorLoop(self.client, "nuvla-mqtt").start()
        threading.Thread(target=self._run, name="nuvla-notify", daemon=True).start()

    def put(self, rid: str, payload: str) -> None:
        self.queue.put((rid, payload))

    def _acked(self, _c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self.cond:
            self.acked.add(mid)
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            rid, payload = self.queue.get()
            try:
                mid = self.client.publish(self.topic, payload, qos=1).mid  # queued even when offline
            except Exception as exc:  # a broken client must not take the stand-in down
                log.warning("MQTT notification for %s failed: %s", rid, type(exc).__name__)
                continue
            with self.cond:
                if not self.cond.wait_for(lambda m=mid: m in self.acked, self.NOTIFY_WAIT):
                    log.warning("MQTT notification for %s not acknowledged yet (kept queued)", rid)
                self.acked.discard(mid)


def _json_patch(doc: dict, ops: Any) -> dict:
    """RFC 6902 add/remove/replace/test on a copy (what ``edit_patch`` sends)."""
    out = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise NuvlaHTTPError(400, "JSON patch must be a list of operations")
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op.get("path", "")).split("/")[1:]]
        if not parts:
            raise NuvlaHTTPError(400, "invalid JSON patch path")
        parent = out
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op.get("op")
        if kind in ("add", "replace") and isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), op["value"])
        elif kind in ("add", "replace"):
            parent[last] = op["value"]
        elif kind == "remove":
            parent.pop(int(last) if isinstance(parent, list) else last, None)
        elif kind == "test" and (parent.get(last) if isinstance(parent, dict) else None) != op.get("value"):
            raise NuvlaHTTPError(409, "JSON patch test failed")
        elif kind not in ("add", "replace", "remove", "test"):
            raise NuvlaHTTPError(400, f"unsupported JSON patch op {kind!r}")
    return out
