"""The Nuvla publisher against the stand-in (real ``nuvla-api`` client, real S3 servers).

Records come from real catalogue adds of a synthetic MS zip, h5parm and FITS cube, on the S3
test site (registered in place) or as local files (uploaded by presigned URL).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skyplug.catalog.commands import _all_records
from skyplug.catalog.service import open_configured
from skyplug.cli import cli
from skyplug.core import config
from skyplug.core.errors import ConfigError, SiteError
from skyplug.plugins.publishers.nuvla import NuvlaPublisher, cimi_eq, cimi_quote
from skyplug.plugins.publishers.nuvla import publisher as nuvla
from tests.nuvla.conftest import ADMIN_KEY, SECRETS, USER_KEY, login

TYPES = (
    "data-object",
    "data-record",
    "data-set",
    "infrastructure-service",
    "credential",
    "data-record-key-prefix",
)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def counts(server: Any) -> dict[str, int]:
    """How many resources of each type the stand-in holds."""
    return {t: len(server.store.docs[t]) for t in TYPES}


def docs(server: Any, rtype: str) -> list[dict[str, Any]]:
    return list(server.store.docs[rtype].values())


def catalogue(tmp_path: Path, uris: list[str], site: str | None = None) -> str:
    """A catalogue holding ``uris`` (added through the CLI); its URL."""
    db = f"sqlite:///{tmp_path / 'cat.db'}"
    args = ["catalog", "add", *uris, "--db", db] + (["--site", site] if site else [])
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return db


def records(db: str) -> list[dict[str, Any]]:
    with open_configured(db) as cat:
        return _all_records(cat)


@pytest.fixture
def s3_catalogue(nuvla_env: Any, s3env: Any, product_files: dict[str, Path], tmp_path: Path) -> str:
    """The three products uploaded to the edge site and catalogued from there."""
    uris = [s3env.upload(path) for path in product_files.values()]
    return catalogue(tmp_path, uris, site="edge")


# --- quoting -----------------------------------------------------------------------------------


def test_cimi_values_are_quoted_and_escaped() -> None:
    assert cimi_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert cimi_quote(12) == "12" and cimi_quote(-1) == '"-1"' and cimi_quote(1.5) == '"1.5"'
    assert cimi_eq("skyplug:obs_id", 'x" or name="y') == 'skyplug:obs_id="x\\" or name=\\"y"'
    with pytest.raises(ValueError):
        cimi_eq('name="x" or tags', "y")


# --- S3 objects: registered in place, idempotent ---------------------------------------------


def test_s3_objects_are_registered_in_place_then_republished_identically(
    nuvla_env: Any, s3env: Any, s3_catalogue: str, product_files: dict[str, Path]
) -> None:
    server = nuvla_env
    client = s3env.client("edge")
    before = {p.name: client.head_object(Bucket=s3env.bucket, Key=p.name) for p in product_files.values()}
    recs = records(s3_catalogue)
    pub = NuvlaPublisher(server.endpoint)
    report = pub.publish(recs)
    pub.close()
    assert report["records"] == 3
    assert report["data_records"] == {"created": 3, "updated": 0, "unchanged": 0}
    assert report["data_objects"] == {"uploaded": 0, "registered": 3, "ready": 0}
    first = counts(server)
    assert first == {
        "data-object": 3,
        "data-record": 3,
        "data-set": 6,  # one per observation (obs_id = file name here) + one per product type
        "infrastructure-service": 1,
        "credential": 1,
        "data-record-key-prefix": 1,
    }
    infra = docs(server, "infrastructure-service")[0]
    assert infra["endpoint"] == s3env.services["edge"].endpoint and infra["subtype"] == "s3"
    cred = docs(server, "credential")[0]
    assert cred["parent"] == infra["id"] and cred["access-key"] == s3env.services["edge"].access_key
    for obj in docs(server, "data-object"):
        path = next(p for p in product_files.values() if p.name == obj["object"])
        assert obj["state"] == "READY" and obj["bucket"] == s3env.bucket and obj["credential"] == cred["id"]
        assert obj["md5sum"] == md5(path) and obj["bytes"] == path.stat().st_size
        head = client.head_object(Bucket=s3env.bucket, Key=path.name)
        assert head["ETag"] == before[path.name]["ETag"]
        assert head["LastModified"] == before[path.name]["LastModified"]  # not uploaded again
    by_did = {r["obs_publisher_did"]: r for r in recs}
    objects = {o["id"]: o for o in docs(server, "data-object")}
    for doc in docs(server, "data-record"):
        rec = by_did[doc["skyplug:obs_publisher_did"]]
        assert doc["infrastructure-service"] == infra["id"]
        assert objects[doc["data-object"]]["object"] == doc["name"]
        assert doc["skyplug:uri"] == rec["skyplug_uri"] and doc["skyplug:sites"] == "edge"
        assert (
            doc["skyplug:obs_id"] == rec["obs_id"] and doc["md5sum"] == objects[doc["data-object"]]["md5sum"]
        )
        assert isinstance(doc["skyplug:em_min"], float) and isinstance(doc["skyplug:em_xel"], int)
        assert doc["skyplug:freq_min_hz"] == round(299_792_458.0 / rec["em_max"])
        assert doc["timestamp"].endswith("Z") and "tags" in doc and "skyplug" in doc["tags"]
        assert all(k.split(":")[0] in ("skyplug",) for k in doc if ":" in k)
    # a second publisher (a new session) changes nothing and duplicates nothing
    again = NuvlaPublisher(server.endpoint)
    report2 = again.publish(records(s3_catalogue))
    again.close()
    assert counts(server) == first
    assert report2["data_records"] == {"created": 0, "updated": 0, "unchanged": 3}
    assert report2["data_objects"] == {"uploaded": 0, "registered": 0, "ready": 3}
    assert report2["data_sets"] == {"created": 0, "updated": 0, "unchanged": 6}


def test_data_set_filters_select_their_records(nuvla_env: Any, s3_catalogue: str) -> None:
    server = nuvla_env
    recs = records(s3_catalogue)
    NuvlaPublisher(server.endpoint).publish(recs)
    api = login(server)
    for ds in docs(server, "data-set"):
        got = api.search("data-record", filter=ds["data-record-filter"]).resources
        dids = sorted(r.data["skyplug:obs_publisher_did"] for r in got)
        if "observation" in ds["name"]:
            obs = ds["name"].removeprefix("observation ")
            want = sorted(r["obs_publisher_did"] for r in recs if r["obs_id"] == obs)
            objs = api.search("data-object", filter=ds["data-object-filter"]).resources
            assert [o.data["object"] for o in objs] == [obs]
        else:
            kind = ds["name"].removesuffix(" products")
            want = sorted(r["obs_publisher_did"] for r in recs if r["dataproduct_type"] == kind)
        assert dids == want and dids
    # integer copies make frequencies and positions filterable (CIMI takes no decimals)
    hz = api.search("data-record", filter="skyplug:freq_min_hz>=40000000 and skyplug:freq_max_hz<=60000000")
    assert hz.count == 3
    cyg = api.search("data-record", filter="skyplug:ra_mdeg>299000 and skyplug:npd_mdeg<50000")
    assert [r.data["skyplug:target_name"] for r in cyg.resources] == ["CygA"]


def test_changed_record_updates_its_data_record(nuvla_env: Any, s3_catalogue: str) -> None:
    server = nuvla_env
    recs = records(s3_catalogue)
    NuvlaPublisher(server.endpoint).publish(recs)
    n = counts(server)
    recs[0]["obs_title"] = "retitled"
    recs[0]["target_name"] = None  # a field that went away is removed, not kept
    report = NuvlaPublisher(server.endpoint).publish(recs)
    assert report["data_records"] == {"created": 0, "updated": 1, "unchanged": 2}
    assert counts(server) == n
    doc = next(
        d
        for d in docs(server, "data-record")
        if d["skyplug:obs_publisher_did"] == recs[0]["obs_publisher_did"]
    )
    assert doc["skyplug:obs_title"] == "retitled" and "skyplug:target_name" not in doc


def test_rotated_s3_keys_update_the_credential(
    nuvla_env: Any, s3_catalogue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = nuvla_env
    recs = records(s3_catalogue)
    NuvlaPublisher(server.endpoint).publish(recs)
    n = counts(server)
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_ACCESS_KEY_ID", "ROTATEDKEY0001")
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY", "rotated-secret-0001")
    report = NuvlaPublisher(server.endpoint).publish(recs)  # READY objects: no S3 request needed
    assert counts(server) == n and report["data_records"]["unchanged"] == 3
    [cred] = docs(server, "credential")
    assert cred["access-key"] == "ROTATEDKEY0001" and cred["secret-key"] == "rotated-secret-0001"
    assert "rotated-secret-0001" not in json.dumps(report)


# --- local files: uploaded by presigned URL ----------------------------------------------------


def test_local_files_are_uploaded_once(
    nuvla_env: Any, s3env: Any, product_files: dict[str, Path], tmp_path: Path
) -> None:
    server = nuvla_env
    db = catalogue(tmp_path, [str(product_files["fits"]), str(product_files["h5parm"])])
    pub = NuvlaPublisher(server.endpoint, site="edge", bucket=s3env.bucket)
    report = pub.publish(records(db))
    assert report["data_objects"] == {"uploaded": 2, "registered": 0, "ready": 0}
    client = s3env.client("edge")
    for obj in docs(server, "data-object"):
        path = next(p for p in product_files.values() if p.name == obj["name"])
        body = client.get_object(Bucket=obj["bucket"], Key=obj["object"])["Body"].read()
        assert body == path.read_bytes() and obj["state"] == "READY" and obj["md5sum"] == md5(path)
        assert obj["content-type"] in ("application/fits", "application/x-hdf5")
    n = counts(server)
    again = pub.publish(records(db))
    pub.close()
    assert again["data_objects"] == {"uploaded": 0, "registered": 0, "ready": 2}
    assert counts(server) == n


def test_interrupted_upload_resumes(
    nuvla_env: Any, s3env: Any, product_files: dict[str, Path], tmp_path: Path
) -> None:
    """A data-object left in UPLOADING (a publish killed mid-way) is finished, not duplicated."""
    server = nuvla_env
    db = catalogue(tmp_path, [str(product_files["fits"])])
    pub = NuvlaPublisher(server.endpoint, site="edge", bucket=s3env.bucket)
    real_put = pub._put
    pub._put = lambda uri, obj: (_ for _ in ()).throw(SiteError("killed"))  # type: ignore[method-assign]
    with pytest.raises(SiteError, match="killed"):
        pub.publish(records(db))
    assert [o["state"] for o in docs(server, "data-object")] == ["UPLOADING"]
    pub._put = real_put  # type: ignore[method-assign]
    report = pub.publish(records(db))
    assert report["data_objects"]["uploaded"] == 1
    assert [o["state"] for o in docs(server, "data-object")] == ["READY"]
    assert counts(server)["data-record"] == 1


# --- CLI and configuration ----------------------------------------------------------------------


def test_cli_publish_to_nuvla(nuvla_env: Any, s3_catalogue: str) -> None:
    server = nuvla_env
    args = ["catalog", "publish", "--to", "nuvla", "--endpoint", server.endpoint, "--db", s3_catalogue]
    res = CliRunner().invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["data_records"]["created"] == 3
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "3 data-records (0 created, 0 updated, 3 unchanged)" in res.output
    bad = CliRunner().invoke(cli, [*args, "--graph-prefix", "urn:x:"])
    assert bad.exit_code == 2 and "--graph-prefix is not an option of --to nuvla" in bad.output
    missing = CliRunner().invoke(cli, ["catalog", "publish", "--to", "nuvla", "--db", s3_catalogue])
    assert missing.exit_code == 2 and "needs --endpoint" in missing.output


def test_configured_publisher_publishes_after_catalog_add(
    nuvla_env: Any, s3env: Any, product_files: dict[str, Path], tmp_path: Path
) -> None:
    server = nuvla_env
    raw = dict(s3env.config.raw)
    raw["catalog"] = {"url": f"sqlite:///{tmp_path / 'auto.db'}"}
    raw["publishers"] = {"archive": {"type": "nuvla", "endpoint": server.endpoint, "bucket": s3env.bucket}}
    config.set_config(config.Config.from_dict(raw))
    res = CliRunner().invoke(cli, ["catalog", "add", str(product_files["ms"])])
    assert res.exit_code == 0, res.output
    [doc] = docs(server, "data-record")
    assert doc["skyplug:dataproduct_type"] == "visibility" and doc["content-type"] == "application/zip"
    assert [o["state"] for o in docs(server, "data-object")] == ["READY"]


def test_options_never_take_a_secret() -> None:
    with pytest.raises(ConfigError, match="SKYPLUG_NUVLA_API_KEY"):
        NuvlaPublisher.from_options({"endpoint": "http://x", "secret": "s"})
    with pytest.raises(ConfigError, match="unknown option"):
        NuvlaPublisher.from_options({"endpoint": "http://x", "bukket": "b"})


def test_credentials_file(nuvla_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKYPLUG_NUVLA_API_KEY")
    monkeypatch.delenv("SKYPLUG_NUVLA_API_SECRET")
    with pytest.raises(ConfigError, match="SKYPLUG_NUVLA_CREDENTIALS"):
        nuvla.connect(nuvla_env.endpoint)
    creds = tmp_path / "nuvla.toml"
    creds.write_text(f'key = "{ADMIN_KEY}"\nsecret = "{SECRETS[ADMIN_KEY]}"\n')
    monkeypatch.setenv("SKYPLUG_NUVLA_CREDENTIALS", str(creds))
    assert nuvla.connect(nuvla_env.endpoint).current_session().startswith("session/")
    pub = NuvlaPublisher(nuvla_env.endpoint)
    assert pub.api.current_session().startswith("session/")  # the publisher logs in through it
    pub.close()
    creds.write_text(json.dumps({"key": ADMIN_KEY, "secret": SECRETS[ADMIN_KEY]}))  # the stand-in's file
    assert nuvla.connect(nuvla_env.endpoint).is_authenticated()
    creds.write_text("key = 'credential/x'\n")
    with pytest.raises(ConfigError, match="needs string 'key' and 'secret'"):
        nuvla.connect(nuvla_env.endpoint)


# --- refusals: one line, naming the endpoint, never the secret -------------------------------------


def test_unregistered_prefix_and_a_key_that_may_not_register_it(
    nuvla_env: Any, s3_catalogue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = nuvla_env
    monkeypatch.setenv("SKYPLUG_NUVLA_API_KEY", USER_KEY)
    monkeypatch.setenv("SKYPLUG_NUVLA_API_SECRET", SECRETS[USER_KEY])
    with pytest.raises(SiteError) as err:
        NuvlaPublisher(server.endpoint).publish(records(s3_catalogue))
    msg = str(err.value)
    assert server.endpoint in msg and "'skyplug' is not registered" in msg and "admin" in msg
    assert "\n" not in msg and SECRETS[USER_KEY] not in msg
    assert counts(server)["data-record"] == 0
    # the contract's 406 on a record whose keys use an unregistered prefix, as the publisher says it
    api = login(server, USER_KEY)
    from nuvla.api import NuvlaError

    with pytest.raises(NuvlaError) as raw:
        api.add("data-record", {"infrastructure-service": "infrastructure-service/a1", "skyplug:x": 1})
    assert raw.value.response.status_code == 406
    # once an admin registered it, the plain user key publishes
    login(server).add("data-record-key-prefix", {"prefix": "skyplug", "uri": nuvla.PREFIX_URI})
    report = NuvlaPublisher(server.endpoint).publish(records(s3_catalogue))
    assert report["data_records"]["created"] == 3


def test_bad_key_is_one_line(nuvla_env: Any, s3_catalogue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPLUG_NUVLA_API_SECRET", "wrong-secret-4242")
    with pytest.raises(SiteError) as err:
        nuvla.connect(nuvla_env.endpoint)
    refused = f"invalid credentials for '{ADMIN_KEY}'"
    assert str(err.value) == f"{nuvla_env.endpoint}: login with API key {ADMIN_KEY!r} refused: {refused}"
    args = ["catalog", "publish", "--to", "nuvla", "--endpoint", nuvla_env.endpoint, "--db", s3_catalogue]
    res = CliRunner().invoke(cli, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1 and nuvla_env.endpoint in lines[0]
    assert "wrong-secret-4242" not in res.output and "Traceback" not in res.output


def test_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("SKYPLUG_NUVLA_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("SKYPLUG_NUVLA_API_SECRET", "never-shown-7777")
    with pytest.raises(SiteError) as err:
        nuvla.connect(endpoint, timeout=5)
    assert str(err.value) == f"{endpoint}: login: unreachable (ConnectionError)"


# --- hostile values ---------------------------------------------------------------------------------

HOSTILE = [
    'obs" or tags="skyplug',
    "a and b or (c)",
    "line\nbreak",
    "back\\slash\\",
    "it's",
]


def test_hostile_values_are_data_in_filters(
    nuvla_env: Any, s3_catalogue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = nuvla_env
    monkeypatch.setattr(nuvla, "LOOKUP_BATCH", 3)  # several "or"ed lookups, hostile values in each
    base = records(s3_catalogue)
    recs = []
    for i, value in enumerate(HOSTILE):
        for j in range(2 if i < 2 else 1):  # observations of two records, and of one
            rec = dict(base[(i + j) % len(base)])
            rec.update(
                obs_id=value,
                obs_title=value,
                obs_publisher_did=f'ivo://x?{value}"{j}',
                dataproduct_type=value,
            )
            recs.append(rec)
    pub = NuvlaPublisher(server.endpoint)
    pub.publish(recs)
    first = counts(server)
    assert first["data-record"] == len(recs)
    api = login(server)
    for value in HOSTILE:
        sets = [d for d in docs(server, "data-set") if d["name"] == f"observation {value}"]
        assert len(sets) == 1
        got = api.search("data-record", filter=sets[0]["data-record-filter"]).resources
        want = sorted(r["obs_publisher_did"] for r in recs if r["obs_id"] == value)
        assert sorted(r.data["skyplug:obs_publisher_did"] for r in got) == want and want
        # the data-object filter selects the same observation's objects only
        objs = api.search("data-object", filter=sets[0]["data-object-filter"]).resources
        assert len(objs) == len(want)
    report = pub.publish(recs)
    assert counts(server) == first  # every hostile key found again: no duplicate
    assert report["data_records"]["unchanged"] == len(recs)


def test_a_record_given_twice_and_a_stray_duplicate_leave_one_copy(nuvla_env: Any, s3_catalogue: str) -> None:
    server = nuvla_env
    recs = records(s3_catalogue)
    NuvlaPublisher(server.endpoint).publish([recs[0], recs[0]])
    assert counts(server)["data-record"] == 1 and counts(server)["data-object"] == 1
    [doc] = docs(server, "data-record")
    stray = {k: v for k, v in doc.items() if k not in ("id", "resource-type", "created", "updated", "acl")}
    login(server).add("data-record", stray)  # someone else's copy with the same DID
    assert counts(server)["data-record"] == 2
    report = NuvlaPublisher(server.endpoint).publish(recs)
    assert counts(server)["data-record"] == 3 and counts(server)["data-object"] == 3
    assert report["data_records"] == {"created": 2, "updated": 0, "unchanged": 1}


# --- secrets ------------------------------------------------------------------------------------


def test_secrets_never_in_records_logs_or_reports(
    nuvla_env: Any,
    s3env: Any,
    product_files: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = nuvla_env
    caplog.set_level(logging.DEBUG)
    db = catalogue(tmp_path, [str(product_files["fits"])])
    pub = NuvlaPublisher(server.endpoint, site="edge", bucket=s3env.bucket)
    report = pub.publish(records(db))
    pub.close()
    edge = s3env.services["edge"]
    secrets = [SECRETS[ADMIN_KEY], edge.secret_key]
    published = json.dumps(
        [docs(server, t) for t in ("data-object", "data-record", "data-set", "infrastructure-service")]
    )
    # skyplug's own log lines at any level, every library's from INFO up (urllib3's and botocore's
    # DEBUG lines show request lines and signed headers: never enable them in production)
    logged = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("skyplug") or r.levelno >= logging.INFO
    )
    for secret in secrets:
        assert secret not in published
        assert secret not in json.dumps(report)
        assert secret not in logged
    assert "X-Amz-Signature" not in logged  # no presigned URL logged
    assert edge.access_key not in json.dumps(docs(server, "data-record"))


def test_a_silent_endpoint_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts the connection and never answers: the timeout ends the wait."""
    monkeypatch.setenv("SKYPLUG_NUVLA_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("SKYPLUG_NUVLA_API_SECRET", "never-shown-7777")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # never accepted: the client connects, then waits for an answer
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(SiteError) as err:
            nuvla.connect(endpoint, timeout=1)
    assert str(err.value) == f"{endpoint}: login: unreachable (ReadTimeout)"


def test_multipart_object_gets_its_real_md5(
    nuvla_env: Any, s3env: Any, product_files: dict[str, Path], tmp_path: Path
) -> None:
    """An object uploaded in parts has an ETag that is no MD5: the md5sum is computed from its bytes."""
    path = product_files["h5parm"]
    client = s3env.client("edge")
    key = "parts/dp3.h5"
    up = client.create_multipart_upload(Bucket=s3env.bucket, Key=key)
    part = client.upload_part(
        Bucket=s3env.bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=path.read_bytes()
    )
    client.complete_multipart_upload(
        Bucket=s3env.bucket,
        Key=key,
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    assert "-" in client.head_object(Bucket=s3env.bucket, Key=key)["ETag"]
    db = catalogue(tmp_path, [f"s3://{s3env.bucket}/{key}"], site="edge")
    NuvlaPublisher(nuvla_env.endpoint).publish(records(db))
    [obj] = docs(nuvla_env, "data-object")
    assert obj["md5sum"] == md5(path) and obj["state"] == "READY" and obj["object"] == key
