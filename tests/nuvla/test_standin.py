"""The Nuvla stand-in against the contract in reference/catalog_standards.md section 1.

Raw HTTP (``requests``) pins each quirk of the wire; the real ``nuvla-api`` client (no mock)
shows the library Nuvla users run works against it unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.nuvla.conftest import ADMIN_KEY, ROOT, SECRETS, USER_KEY, login, make_s3_credential, standin
from tests.servers.mqtt_services import hold_files

JSON = {"Content-Type": "application/json", "Accept": "application/json"}
INFRA = "infrastructure-service/eb8e09c2-8387-4f6d-86a4-ff5ddf3d07d7"


def raw_session(server: Any, key: str = ADMIN_KEY) -> requests.Session:
    """A requests session holding the login cookie."""
    s = requests.Session()
    body = {"template": {"href": "session-template/api-key", "key": key, "secret": SECRETS[key]}}
    r = s.post(f"{server.endpoint}/api/session", json=body, headers=JSON)
    assert r.status_code == 201, r.text
    return s


def api(server: Any, path: str) -> str:
    return f"{server.endpoint}/api/{path}"


# --- session ---------------------------------------------------------------------------


def test_login_sets_the_doubled_com_cookie(nuvla_server: Any) -> None:
    body = {"template": {"href": "session-template/api-key", "key": ADMIN_KEY, "secret": SECRETS[ADMIN_KEY]}}
    r = requests.post(api(nuvla_server, "session"), json=body, headers=JSON)
    assert r.status_code == 201
    assert r.json()["status"] == 201
    assert r.json()["resource-id"].startswith("session/")
    assert "com.com.sixsq.nuvla.cookie" in r.cookies
    assert SECRETS[ADMIN_KEY] not in r.headers["Set-Cookie"]


def test_bad_secret_is_403_invalid_credentials(nuvla_server: Any) -> None:
    body = {"template": {"href": "session-template/api-key", "key": ADMIN_KEY, "secret": "wrong"}}
    r = requests.post(api(nuvla_server, "session"), json=body, headers=JSON)
    assert r.status_code == 403
    assert r.json() == {"status": 403, "message": f"invalid credentials for '{ADMIN_KEY}'"}


def test_no_cookie_is_403(nuvla_server: Any) -> None:
    r = requests.get(api(nuvla_server, "data-set"), headers=JSON)
    assert r.status_code == 403 and r.json()["status"] == 403


def test_session_query_and_logout(nuvla_server: Any) -> None:
    client = login(nuvla_server)
    sid = client.current_session()
    assert sid and sid.startswith("session/")
    client.logout()
    assert requests.get(api(nuvla_server, "data-set"), cookies=client.session.cookies).status_code == 403


# --- collections, CRUD -------------------------------------------------------------------


def test_collection_shape_and_add(nuvla_server: Any) -> None:
    s = raw_session(nuvla_server)
    r = s.put(api(nuvla_server, "data-set"), data={"last": 0})
    assert r.status_code == 200
    coll = r.json()
    assert coll["id"] == "data-set" and coll["resource-type"] == "data-set-collection"
    assert coll["count"] == 0 and coll["resources"] == []
    assert {"rel": "add", "href": "data-set"} in coll["operations"]
    assert "aggregations" not in coll
    r = s.post(api(nuvla_server, "data-set"), json={"name": "ds"}, headers=JSON)
    assert r.status_code == 201
    rid = r.json()["resource-id"]
    assert r.headers["Location"] == rid
    assert r.json() == {"status": 201, "message": f"{rid} created", "resource-id": rid}
    doc = s.get(api(nuvla_server, rid)).json()
    for key in ("id", "resource-type", "created", "updated", "acl", "operations"):
        assert key in doc
    assert doc["created"].endswith("Z") and len(doc["created"]) == len("2025-01-01T00:00:00.000Z")
    assert s.put(api(nuvla_server, "data-set"), data={"last": 0}).json()["count"] == 1


def test_errors_are_json(nuvla_server: Any) -> None:
    s = raw_session(nuvla_server)
    missing = f"data-set/{uuid.uuid4()}"
    r = s.get(api(nuvla_server, missing))
    assert r.status_code == 404 and r.json() == {"status": 404, "message": f"{missing} not found"}
    rid = s.post(api(nuvla_server, "data-set"), json={}, headers=JSON).json()["resource-id"]
    assert s.post(api(nuvla_server, rid), json={}, headers=JSON).status_code == 405
    assert s.patch(api(nuvla_server, "data-set"), json={}, headers=JSON).status_code == 405
    r = s.post(api(nuvla_server, f"{rid}/nope"), json={}, headers=JSON)
    assert r.status_code == 404 and r.json()["status"] == 404
    r = s.post(api(nuvla_server, "data-set"), data="{not json", headers=JSON)
    assert r.status_code == 400


def test_edit_merges_and_select_deletes(nuvla_server: Any) -> None:
    s = raw_session(nuvla_server)
    rid = s.post(api(nuvla_server, "data-set"), json={"name": "a", "description": "d"}, headers=JSON).json()[
        "resource-id"
    ]
    doc = s.put(api(nuvla_server, rid), json={"tags": ["x"], "id": "data-set/evil"}, headers=JSON).json()
    assert doc["name"] == "a" and doc["tags"] == ["x"] and doc["id"] == rid
    doc = s.put(api(nuvla_server, rid) + "?select=description", json={}, headers=JSON).json()
    assert "description" not in doc and doc["name"] == "a"
    patch = [{"op": "replace", "path": "/name", "value": "b"}, {"op": "remove", "path": "/tags"}]
    doc = s.put(
        api(nuvla_server, rid), json=patch, headers={"Content-Type": "application/json-patch+json"}
    ).json()
    assert doc["name"] == "b" and "tags" not in doc
    r = s.delete(api(nuvla_server, rid))
    assert r.json() == {"status": 200, "message": f"{rid} deleted", "resource-id": rid}
    assert s.get(api(nuvla_server, rid)).status_code == 404


def test_bulk_delete(nuvla_server: Any) -> None:
    s = raw_session(nuvla_server)
    for n in range(3):
        s.post(api(nuvla_server, "data-set"), json={"name": f"n{n}"}, headers=JSON)
    r = s.delete(api(nuvla_server, "data-set"), data={"filter": 'name!="n1"'}, headers={"bulk": "yes"})
    assert r.status_code == 200
    assert [d["name"] for d in s.get(api(nuvla_server, "data-set")).json()["resources"]] == ["n1"]


def test_other_users_resources_are_hidden(nuvla_server: Any) -> None:
    admin, user = raw_session(nuvla_server), raw_session(nuvla_server, USER_KEY)
    theirs = admin.post(api(nuvla_server, "data-set"), json={"name": "a"}, headers=JSON).json()["resource-id"]
    mine = user.post(api(nuvla_server, "data-set"), json={"name": "u"}, headers=JSON).json()["resource-id"]
    assert user.get(api(nuvla_server, theirs)).status_code == 403
    assert user.delete(api(nuvla_server, theirs)).status_code == 403
    assert [d["id"] for d in user.get(api(nuvla_server, "data-set")).json()["resources"]] == [mine]
    assert raw_session(nuvla_server, USER_KEY).get(api(nuvla_server, mine)).status_code == 200  # new session
    assert admin.get(api(nuvla_server, mine)).status_code == 200  # admin sees everything


# --- CIMI filters and query parameters -----------------------------------------------------


@pytest.fixture
def records(nuvla_server: Any) -> requests.Session:
    s = raw_session(nuvla_server)
    rows = [
        {
            "name": "alpha",
            "bytes": 10,
            "flag": True,
            "timestamp": "2025-01-02T00:00:00.000Z",
            "tags": ["a", "b"],
        },
        {"name": "beta", "bytes": 20, "flag": False, "timestamp": "2025-03-01T12:00:00.000Z", "tags": ["b"]},
        {"name": "gamma", "bytes": 30, "timestamp": "2025-06-01T00:00:00.000Z", "nested": {"k": 1}},
    ]
    for row in rows:
        r = s.post(
            api(nuvla_server, "data-record"), json={**row, "infrastructure-service": INFRA}, headers=JSON
        )
        assert r.status_code == 201, r.text
    return s


def names(s: requests.Session, server: Any, **params: Any) -> list[str]:
    r = s.put(api(server, "data-record"), data=params)
    assert r.status_code == 200, r.text
    return [d["name"] for d in r.json()["resources"]]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("bytes=20", ["beta"]),
        ("bytes>=20 and bytes<30", ["beta"]),
        ("bytes<20 or bytes>20", ["alpha", "gamma"]),
        ("(bytes=10 or bytes=30) and name!='alpha'", ["gamma"]),
        ('name^="al"', ["alpha"]),
        ("name='beta'", ["beta"]),
        ("flag=true", ["alpha"]),
        ("flag=false", ["beta"]),
        ("flag=null", ["gamma"]),
        ("flag!=null", ["alpha", "beta"]),
        ("timestamp>2025-02-01", ["beta", "gamma"]),
        ("timestamp<2025-03-01T12:00:00.000Z", ["alpha"]),
        ("tags='b'", ["alpha", "beta"]),
        ("name=['alpha','gamma']", ["alpha", "gamma"]),
        ("nested/k=1", ["gamma"]),
        ("name=='ALP'", ["alpha"]),
        ("timestamp>=2025-03-01T13:00:00+01:00", ["beta", "gamma"]),
        ('name="be\\"ta" or name="beta"', ["beta"]),
    ],
)
def test_filters(records: requests.Session, nuvla_server: Any, flt: str, expected: list[str]) -> None:
    assert sorted(names(records, nuvla_server, filter=flt)) == expected


def test_repeated_filters_are_anded(records: requests.Session, nuvla_server: Any) -> None:
    assert names(records, nuvla_server, filter=["bytes>10", "bytes<30"]) == ["beta"]


@pytest.mark.parametrize(
    "flt",
    [
        "bytes=1.5",
        "bytes=-1",
        "bytes=1e3",
        "bytes=",
        "(bytes=1",
        "bytes=1 and",
        "bytes 1",
        "=1",
        "a=b",
        "__import__('os')=1",
        "a=1 b=2",
    ],
)
def test_integer_only_and_bad_filters_are_400(nuvla_server: Any, flt: str) -> None:
    s = raw_session(nuvla_server)
    r = s.put(api(nuvla_server, "data-record"), data={"filter": flt})
    assert r.status_code == 400
    assert r.json()["status"] == 400 and r.json()["message"].startswith("Invalid CIMI filter")


def test_paging_orderby_select(records: requests.Session, nuvla_server: Any) -> None:
    assert names(records, nuvla_server, orderby="bytes:desc") == ["gamma", "beta", "alpha"]
    assert names(records, nuvla_server, orderby="bytes:desc", first=2, last=2) == ["beta"]
    r = records.put(api(nuvla_server, "data-record"), data={"last": 0}).json()
    assert r["count"] == 3 and r["resources"] == []
    doc = records.put(api(nuvla_server, "data-record"), data={"select": "name"}).json()["resources"][0]
    assert "bytes" not in doc and {"id", "resource-type", "name"} <= set(doc)


def test_aggregations(records: requests.Session, nuvla_server: Any) -> None:
    r = records.put(api(nuvla_server, "data-record"), data={"aggregation": "count:id,terms:tags,max:bytes"})
    aggs = r.json()["aggregations"]
    assert aggs["count:id"] == {"value": 3}
    assert aggs["terms:tags"]["buckets"] == [{"key": "b", "doc_count": 2}, {"key": "a", "doc_count": 1}]
    assert aggs["max:bytes"] == {"value": 30}
    bad = records.put(api(nuvla_server, "data-record"), data={"aggregation": "bogus:id"})
    assert bad.status_code == 400


# --- data-record prefixes, data-set ----------------------------------------------------------


def test_data_record_prefixes(nuvla_server: Any) -> None:
    admin, user = raw_session(nuvla_server), raw_session(nuvla_server, USER_KEY)
    rec = {"infrastructure-service": INFRA, "skyplug:uri": "s3://b/k"}
    r = user.post(api(nuvla_server, "data-record"), json=rec, headers=JSON)
    assert r.status_code == 406
    assert r.json() == {"status": 406, "message": "resource uses keys with undefined prefixes"}
    nested = {"infrastructure-service": INFRA, "outer": {"inner": [{"skyplug:x": 1}]}}
    assert user.post(api(nuvla_server, "data-record"), json=nested, headers=JSON).status_code == 406
    prefix = {"prefix": "skyplug", "uri": "https://example.org/skyplug#"}
    assert (
        user.post(api(nuvla_server, "data-record-key-prefix"), json=prefix, headers=JSON).status_code == 403
    )
    r = admin.post(api(nuvla_server, "data-record-key-prefix"), json=prefix, headers=JSON)
    assert r.status_code == 201 and r.json()["resource-id"] == "data-record-key-prefix/skyplug"
    assert (
        admin.post(api(nuvla_server, "data-record-key-prefix"), json=prefix, headers=JSON).status_code == 409
    )
    assert user.post(api(nuvla_server, "data-record"), json=rec, headers=JSON).status_code == 201
    assert user.post(api(nuvla_server, "data-record"), json=nested, headers=JSON).status_code == 201
    found = user.put(api(nuvla_server, "data-record"), data={"filter": 'skyplug:uri="s3://b/k"'}).json()
    assert found["count"] == 1


def test_data_record_needs_infrastructure_service(nuvla_server: Any) -> None:
    s = raw_session(nuvla_server)
    for bad in ({}, {"infrastructure-service": "nope/x"}):
        assert s.post(api(nuvla_server, "data-record"), json=bad, headers=JSON).status_code == 400
    bad_geo = {"infrastructure-service": INFRA, "geometry": {"type": "Line", "coordinates": []}}
    assert s.post(api(nuvla_server, "data-record"), json=bad_geo, headers=JSON).status_code == 400


def test_data_set_filters_must_be_non_blank(nuvla_server: Any) -> None:
    s = raw_session(nuvla_server)
    assert (
        s.post(api(nuvla_server, "data-set"), json={"data-record-filter": " "}, headers=JSON).status_code
        == 400
    )
    ok = {"data-record-filter": "bytes>10", "data-object-filter": "state='READY'"}
    assert s.post(api(nuvla_server, "data-set"), json=ok, headers=JSON).status_code == 201


# --- data-object state machine over S3 -----------------------------------------------------------


def new_object(s: requests.Session, server: Any, cred: str, bucket: str, obj: str = "a/b.txt") -> str:
    tpl = {
        "href": "data-object-template/generic",
        "resource-type": "data-object-template",
        "credential": cred,
        "bucket": bucket,
        "object": obj,
        "content-type": "text/plain",
        "name": "obj",
    }
    r = s.post(api(server, "data-object"), json={"template": tpl}, headers=JSON)
    assert r.status_code == 201, r.text
    return r.json()["resource-id"]


def ops(s: requests.Session, server: Any, rid: str) -> set[str]:
    return {o["rel"] for o in s.get(api(server, rid)).json()["operations"]}


def test_data_object_state_machine(
    nuvla_server: Any, s3_credential: str, s3_client_factory: Any, s3_site: Any
) -> None:
    s = raw_session(nuvla_server)
    bucket = f"n{uuid.uuid4().hex[:12]}"
    rid = new_object(s, nuvla_server, s3_credential, bucket)
    s3 = s3_client_factory(s3_site)
    s3.head_bucket(Bucket=bucket)  # created by the server
    doc = s.get(api(nuvla_server, rid)).json()
    assert doc["state"] == "NEW" and doc["subtype"] == "generic"
    assert ops(s, nuvla_server, rid) == {"edit", "delete", "upload"}
    for action in ("ready", "download"):
        r = s.post(api(nuvla_server, f"{rid}/{action}"), json={}, headers=JSON)
        assert r.status_code == 400
    r = s.post(api(nuvla_server, f"{rid}/ready"), json={}, headers=JSON)
    assert r.json()["message"] == "Invalid state 'NEW' for 'ready' action. Valid states: UPLOADING"
    r = s.post(api(nuvla_server, f"{rid}/upload"), json={"ttl": 5}, headers=JSON)
    assert r.status_code == 200
    assert ops(s, nuvla_server, rid) == {"edit", "delete", "upload", "ready"}
    put = requests.put(r.json()["uri"], data=b"hello nuvla", headers={"Content-Type": "text/plain"})
    assert put.status_code == 200
    r = s.post(api(nuvla_server, f"{rid}/ready"), json={}, headers=JSON)
    assert r.status_code == 200 and r.json()["state"] == "READY" and r.json()["bytes"] == 11
    assert ops(s, nuvla_server, rid) == {"edit", "delete", "download"}
    r = s.post(api(nuvla_server, f"{rid}/upload"), json={}, headers=JSON)
    assert r.json()["message"] == "Invalid state 'READY' for 'upload' action. Valid states: NEW, UPLOADING"
    r = s.post(api(nuvla_server, f"{rid}/download"), json={}, headers=JSON, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == r.json()["uri"]
    assert requests.get(r.headers["Location"]).content == b"hello nuvla"
    doc = s.put(
        api(nuvla_server, rid), json={"state": "NEW", "bucket": "x", "name": "renamed"}, headers=JSON
    ).json()
    assert doc["state"] == "READY" and doc["bucket"] == bucket and doc["name"] == "renamed"
    assert s.delete(api(nuvla_server, rid)).status_code == 200
    with pytest.raises(ClientError):  # object deleted, then the empty bucket too
        s3.head_bucket(Bucket=bucket)


def test_data_object_delete_can_keep_s3_object(
    nuvla_server: Any, s3_credential: str, s3_client_factory: Any, s3_site: Any
) -> None:
    s = raw_session(nuvla_server)
    bucket = f"n{uuid.uuid4().hex[:12]}"
    rid = new_object(s, nuvla_server, s3_credential, bucket)
    uri = s.post(api(nuvla_server, f"{rid}/upload"), json={}, headers=JSON).json()["uri"]
    requests.put(uri, data=b"x", headers={"Content-Type": "text/plain"}).raise_for_status()
    s.post(api(nuvla_server, f"{rid}/ready"), json={}, headers=JSON).raise_for_status()
    r = s.delete(api(nuvla_server, rid), json={"keep-s3-object": True}, headers=JSON)
    assert r.status_code == 200
    assert s3_client_factory(s3_site).get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"x"


def test_data_object_needs_known_template_and_fields(nuvla_server: Any, s3_credential: str) -> None:
    s = raw_session(nuvla_server)
    bad = {
        "template": {
            "href": "data-object-template/nope",
            "credential": s3_credential,
            "bucket": "b",
            "object": "o",
        }
    }
    assert s.post(api(nuvla_server, "data-object"), json=bad, headers=JSON).status_code == 404
    missing = {
        "template": {"href": "data-object-template/generic", "credential": s3_credential, "bucket": "b"}
    }
    assert s.post(api(nuvla_server, "data-object"), json=missing, headers=JSON).status_code == 400


def test_public_data_object_gets_a_public_url(nuvla_server: Any, s3_credential: str, s3_backend: str) -> None:
    s = raw_session(nuvla_server)
    tpl = {
        "href": "data-object-template/public",
        "credential": s3_credential,
        "bucket": f"n{uuid.uuid4().hex[:12]}",
        "object": "pub.txt",
        "content-type": "text/plain",
    }
    rid = s.post(api(nuvla_server, "data-object"), json={"template": tpl}, headers=JSON).json()["resource-id"]
    assert s.get(api(nuvla_server, rid)).json()["subtype"] == "public"
    uri = s.post(api(nuvla_server, f"{rid}/upload"), json={}, headers=JSON).json()["uri"]
    requests.put(uri, data=b"open", headers={"Content-Type": "text/plain"}).raise_for_status()
    r = s.post(api(nuvla_server, f"{rid}/ready"), json={}, headers=JSON)
    if s3_backend == "swift":  # Swift's s3api has no PutObjectAcl: the object stays UPLOADING
        assert r.status_code == 500 and r.json()["message"] == "Unable to make pub.txt public-read"
        assert s.get(api(nuvla_server, rid)).json()["state"] == "UPLOADING"
        return
    doc = r.json()
    assert doc["url"].endswith(f"/{tpl['bucket']}/pub.txt")
    assert requests.get(doc["url"]).content == b"open"  # public-read: no signature


def test_data_object_bucket_failure_is_503_and_unknown_credential_404(
    nuvla_server: Any, s3_credential: str
) -> None:
    s = raw_session(nuvla_server)
    tpl = {
        "href": "data-object-template/generic",
        "credential": s3_credential,
        "bucket": "Bad_Bucket!",
        "object": "o",
    }
    r = s.post(api(nuvla_server, "data-object"), json={"template": tpl}, headers=JSON)
    assert r.status_code == 503
    assert r.json() == {"status": 503, "message": "Unable to create the bucket Bad_Bucket!"}
    missing = f"credential/{uuid.uuid4()}"
    r = s.post(
        api(nuvla_server, "data-object"), json={"template": {**tpl, "credential": missing}}, headers=JSON
    )
    assert r.status_code == 404 and r.json()["message"] == f"{missing} not found"


# --- the real nuvla-api client ------------------------------------------------------------------


def test_client_crud(nuvla_api: Any) -> None:
    from nuvla.api import NuvlaError

    rid = nuvla_api.add("data-set", {"name": "ds", "data-record-filter": "bytes>0"}).data["resource-id"]
    got = nuvla_api.get(rid)
    assert got.id == rid and "edit" in got.operations
    assert nuvla_api.get(rid, select="name").data.get("data-record-filter") is None
    assert nuvla_api.edit(rid, {"description": "x"}).data["description"] == "x"
    assert nuvla_api.edit_patch(rid, [{"op": "add", "path": "/tags", "value": ["t"]}]).data["tags"] == ["t"]
    found = nuvla_api.search("data-set", filter="name='ds'", orderby="created:desc", select="name")
    assert found.count == 1 and found.resources[0].id == rid
    with pytest.raises(NuvlaError, match="Invalid CIMI filter"):
        nuvla_api.search("data-set", filter="bytes=0.5")
    assert nuvla_api.delete(rid).data["resource-id"] == rid
    with pytest.raises(NuvlaError, match="not found"):
        nuvla_api.get(rid)


def test_client_data_object_s3_and_download_303(nuvla_api: Any, s3_credential: str) -> None:
    from nuvla.api.resources.data import DataObjectS3

    content = b"\x00\x01radio bytes"
    md5 = hashlib.md5(content).hexdigest()
    bucket = f"n{uuid.uuid4().hex[:12]}"
    rid = DataObjectS3(nuvla_api).create(
        content, bucket, "obs/x.bin", s3_credential, content_type="application/octet-stream", md5sum=md5
    )
    obj = nuvla_api.get(rid)
    assert obj.data["state"] == "READY" and obj.data["md5sum"] == md5 and obj.data["bytes"] == len(content)
    uri = nuvla_api.operation(obj, "download").data["uri"]  # 303 body parsed as JSON (no redirects)
    assert requests.get(uri).content == content


def test_client_data_record_prefix(nuvla_api: Any, nuvla_server: Any) -> None:
    from nuvla.api import NuvlaError
    from nuvla.api.resources.data import DataRecord

    with pytest.raises(NuvlaError, match="undefined prefixes"):
        DataRecord(nuvla_api).create({"skyplug:partition": 3}, INFRA)
    nuvla_api.add("data-record-key-prefix", {"prefix": "skyplug", "uri": "https://example.org/sp#"})
    rid = DataRecord(nuvla_api).create({"skyplug:partition": 3, "data-object": "data-object/x"}, INFRA)
    assert nuvla_api.search("data-record", filter="skyplug:partition=3").resources[0].id == rid
    user = login(nuvla_server, USER_KEY)
    with pytest.raises(NuvlaError):
        user.add("data-record-key-prefix", {"prefix": "other", "uri": "https://example.org/o#"})


# --- CLI and MQTT ------------------------------------------------------------------------------------


def test_cli_prints_its_url(s3_site: Any, tmp_path: Any) -> None:
    script = ROOT / "tools" / "nuvla_standin.py"
    creds_file = tmp_path / "creds.json"
    cmd = [sys.executable, str(script), "--port", "0", "--s3-endpoint", s3_site.endpoint]
    proc = subprocess.Popen(
        [*cmd, "--credentials-file", str(creds_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(f"{url}/api/data-set", timeout=10).status_code == 403
        creds = json.loads(creds_file.read_text())
        assert creds_file.stat().st_mode & 0o077 == 0
        from nuvla.api import Api

        client = Api(url, persist_cookie=False)
        assert client.login_apikey(creds["key"], creds["secret"]).status_code == 201
        assert client.search("data-set").count == 0
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert creds["secret"] not in out + err  # no secret in any log line


def test_data_object_creation_publishes_mqtt(mqtt_broker: Any, s3_site: Any) -> None:
    import paho.mqtt.client as mqtt

    from skyplug.catalog.mqttloop import SelectorLoop

    received: list[dict] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_a: c.subscribe("nuvla/data", qos=1)
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = lambda _c, _u, msg: received.append(json.loads(msg.payload))
    sub.connect_async("127.0.0.1", mqtt_broker.port)
    loop = SelectorLoop(sub).start()
    held = contextlib.ExitStack()  # the stand-in's publisher must cope with fds >= 1024
    held.enter_context(hold_files(1100))
    try:
        assert subscribed.wait(10), "no SUBACK"
        users = {ADMIN_KEY: (SECRETS[ADMIN_KEY], True)}
        server = standin.NuvlaStandin(
            s3_region=s3_site.region, users=users, mqtt=f"mqtt://127.0.0.1:{mqtt_broker.port}/nuvla/data"
        ).start()
        try:
            client = login(server)
            cred = make_s3_credential(client, s3_site)
            tpl = {
                "href": "data-object-template/generic",
                "credential": cred,
                "bucket": f"n{uuid.uuid4().hex[:12]}",
                "object": "o",
                "name": "notified",
            }
            started = time.monotonic()
            rid = client.add("data-object", {"template": tpl}).data["resource-id"]
            assert time.monotonic() - started < 5  # the create never waits on MQTT
            for _ in range(100):
                if received:
                    break
                time.sleep(0.1)
        finally:
            server.stop()
        assert received and received[0]["RESOURCE_URI"] == rid and received[0]["RESOURCE_NAME"] == "notified"
    finally:
        held.close()
        loop.stop()


def test_create_does_not_wait_for_an_absent_broker(s3_site: Any) -> None:
    """No broker on the notification port: the create returns at once (the message stays queued)."""
    port = services_free_port()
    users = {ADMIN_KEY: (SECRETS[ADMIN_KEY], True)}
    server = standin.NuvlaStandin(
        s3_region=s3_site.region, users=users, mqtt=f"mqtt://127.0.0.1:{port}/nuvla/data"
    ).start()
    try:
        client = login(server)
        cred = make_s3_credential(client, s3_site)
        started = time.monotonic()
        for i in range(3):
            tpl = {
                "href": "data-object-template/generic",
                "credential": cred,
                "bucket": "nobroker",
                "object": f"o{i}",
            }
            client.add("data-object", {"template": tpl})
        assert time.monotonic() - started < 5
    finally:
        server.stop()


def services_free_port() -> int:
    from tests.servers.s3_services import services

    return int(services.svcbase.free_ports(1)[0])
