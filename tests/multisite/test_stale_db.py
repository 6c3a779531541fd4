"""The location DB remembers more than the sites hold: no object is lost, messages say why.

Issue 12 item 1: the same site names on new servers, a wiped bucket or local folder, a site moved
elsewhere under its name; the DB's default home (data, not cache, folder) and read-only looks.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

from click.testing import CliRunner

from skyplug.cli import cli
from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite.locator import open_sky


def run(sky, *args: str):
    return CliRunner().invoke(cli, ["--config", str(sky.write_toml()), *args])


def _wipe_bucket(sky, site: str) -> None:
    """What a redeployed S3 server on the same endpoint holds: nothing."""
    client = sky.client(site)
    for item in client.list_objects_v2(Bucket=sky.bucket).get("Contents", []):
        client.delete_object(Bucket=sky.bucket, Key=item["Key"])


def _cat(sky, key: str, at: str) -> bytes:
    result = run(sky, "cat", sky.uri(key), "--at", at)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def test_cp_of_the_same_bytes_after_the_bucket_was_wiped_keeps_the_new_copy(sky, tmp_path) -> None:
    sky.apply(policies={"*": "write-local"})
    src = tmp_path / "in.bin"
    src.write_bytes(b"telescope" * 5000)
    assert run(sky, "cp", str(src), sky.uri("w/a.bin"), "--at", "edge").exit_code == 0
    _wipe_bucket(sky, "edge")  # the server was redeployed: same name, same endpoint, empty
    result = run(sky, "cp", str(src), sky.uri("w/a.bin"), "--at", "edge", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replicas"] == ["edge"]
    assert _cat(sky, "w/a.bin", "edge") == src.read_bytes()
    assert _cat(sky, "w/a.bin", "lake-b") == src.read_bytes()
    (rep,) = [r for r in sky.ctx.db.replicas(sky.ctx.db.latest(sky.bucket, "w/a.bin").id)]
    assert rep.state == "ready" and rep.is_base


def test_cp_of_the_same_bytes_after_the_local_folder_was_wiped(sky, tmp_path) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["lake-a"]}})
    src = tmp_path / "in.bin"
    src.write_bytes(b"dish" * 20_000)
    assert run(sky, "cp", str(src), sky.uri("w/b.bin"), "--at", "disk").exit_code == 0
    _wipe_bucket(sky, "lake-a")
    shutil.rmtree(sky.tmp / "disk")  # both copies gone; the DB remembers them
    result = run(sky, "cp", str(src), sky.uri("w/b.bin"), "--at", "disk", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.stdout)["replicas"]) == ["disk", "lake-a"]
    sky.apply(policies={"*": "write-local"})
    for at in ("disk", "lake-a"):  # each replica holds the bytes again (local reads, no fill)
        assert _cat(sky, "w/b.bin", at) == src.read_bytes()
    obj = sky.ctx.db.latest(sky.bucket, "w/b.bin")
    assert sky.states(obj) == {"disk": "ready", "lake-a": "ready"}


def test_evict_never_removes_the_only_copy_left(sky) -> None:
    sky.apply(
        policies={"*": {"policy": "push", "targets": ["lake-a"]}},
        eviction={"lake-a": {"policy": "ttl", "ttl": 60}},
    )
    data = b"x" * 30_000
    obj = sky.put(data, "e/a.bin", at="edge")
    sky.ctx.db.execute("UPDATE replicas SET last_access = last_access - 120 WHERE site = 'lake-a'")
    _wipe_bucket(sky, "edge")  # the base copy is gone; lake-a's expired one is all that is left
    result = run(sky, "evict", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["evicted"] == []
    assert "no other replica was found intact" in result.stderr
    assert sky.states(obj) == {"edge": "bad", "lake-a": "ready"}
    assert _cat(sky, "e/a.bin", "lake-b") == data


def test_a_site_moved_elsewhere_under_its_name_is_rechecked(sky) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["lake-a"]}})
    data = b"moved" * 10_000
    obj = sky.put(data, "m/a.bin", at="edge")
    old = sky.sites["lake-a"]["endpoint"]
    other = sky.services["lake-b"]  # "lake-a" now names another, empty server
    sky.sites["lake-a"].update(endpoint=other.proxy.endpoint, region=other.region)
    sky.monkeypatch.setenv("SKYPLUG_SITE_LAKE_A_ACCESS_KEY_ID", other.access_key)
    sky.monkeypatch.setenv("SKYPLUG_SITE_LAKE_A_SECRET_ACCESS_KEY", other.secret_key)
    sky.apply(policies={"*": "write-local"})
    result = run(sky, "locate", sky.uri("m/a.bin"), "--at", "lake-a", "--json")
    cands = {c["site"]: c for c in json.loads(result.stdout)["candidates"]}
    assert cands["lake-a"]["verified"] is False and cands["edge"]["verified"] is True
    assert sky.states(obj)["lake-a"] == "ready"  # locate only looks
    assert _cat(sky, "m/a.bin", "lake-a") == data  # served by edge after the re-check
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}["lake-a"]
    assert rep.state == "bad" and "was s3:" + old in (rep.note or "") and "not found" in (rep.note or "")
    sky.apply(policies={"*": "copy-on-read"})
    assert _cat(sky, "m/a.bin", "lake-a") == data  # refilled on the new server
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}["lake-a"]
    assert rep.state == "ready" and rep.site_identity == sky.config.site("lake-a").identity


def test_a_site_moved_with_its_bytes_is_trusted_after_one_check(sky) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["disk"]}})
    data = b"kept" * 10_000
    obj = sky.put(data, "m/b.bin", at="edge")
    shutil.copytree(sky.tmp / "disk", sky.tmp / "disk2")  # the folder moved, bytes and all
    sky.sites["disk"]["path"] = str(sky.tmp / "disk2")
    sky.apply(policies={"*": "write-local"})
    assert _cat(sky, "m/b.bin", "disk") == data
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}["disk"]
    assert rep.state == "ready" and rep.site_identity == sky.config.site("disk").identity
    result = run(sky, "locate", sky.uri("m/b.bin"), "--at", "disk", "--json")
    assert (
        json.loads(result.stdout)["candidates"][0] | {"site": "disk", "verified": True}
        == (json.loads(result.stdout)["candidates"][0])
    )


def test_fetch_after_the_local_site_was_wiped(sky, tmp_path) -> None:
    from skyplug.synthetic.fits import make_all

    path = make_all(tmp_path / "fits")["cube4"]
    sky.apply(policies={"*": {"policy": "push", "targets": ["disk"]}})
    sky.put(path.read_bytes(), "f/cube4.fits", at="edge")
    shutil.rmtree(sky.tmp / "disk")
    sky.raw["client_site"] = "disk"
    out = tmp_path / "out"
    result = run(sky, "fetch", sky.uri("f/cube4.fits"), "--by", "channel", "-n", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(list(out.rglob("*"))) >= 2


def test_read_only_commands_create_no_db(sky, tmp_path) -> None:
    target = tmp_path / "var" / "lib" / "skyplug" / "locations.db"
    sky.multisite["db"] = f"sqlite:///{target}"  # only in the skyplug.toml the commands read
    for args in (["locate", sky.uri("k"), "--at", "edge"], ["replicas", sky.uri("k")]):
        result = run(sky, *args)
        assert result.exit_code == 1 and "no namespace yet" in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "var").exists()


def test_read_only_look_leaves_the_db_file_alone(sky) -> None:
    obj = sky.put(b"abc" * 1000, "ro.bin", at="edge")
    db_file = sky.tmp / "loc.db"
    sky.ctx.db.close()
    before = db_file.stat().st_mtime_ns
    result = run(sky, "locate", sky.uri("ro.bin"), "--at", "lake-a", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["version"] == obj.version
    assert db_file.stat().st_mtime_ns == before


def test_default_db_lives_in_the_data_folder_and_an_old_one_is_moved(sky, monkeypatch) -> None:
    cache = sky.tmp / "cache"
    monkeypatch.setenv("SKYPLUG_CACHE_DIR", str(cache))
    old = cache / "multisite" / "locations.db"
    sky.apply(db=f"sqlite:///{old}")  # what an older skyplug used by default
    data = b"old home" * 1000
    sky.put(data, "h.bin", at="edge")
    sky.ctx.db.close()
    del sky.multisite["db"]
    result = run(sky, "locate", sky.uri("h.bin"), "--at", "edge")  # looking moves nothing
    assert result.exit_code == 1 and str(old) in result.stderr and "cp" in result.stderr
    assert _cat(sky, "h.bin", "lake-a") == data  # a write command moves it
    new = sky.tmp / "data" / "multisite" / "locations.db"
    assert new.is_file() and not old.exists() and old.with_name("locations.db.moved").is_file()
    with sqlite3.connect(new) as conn:
        assert conn.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 1
    assert not (cache / "multisite" / "locations.db").exists()


def test_replicas_recorded_before_identities_cost_one_head_to_trust(sky) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["lake-a"]}})
    data = b"upgrade" * 20_000
    obj = sky.put(data, "u.bin", at="edge")
    sky.ctx.db.execute("UPDATE replicas SET site_identity = NULL")  # a DB from before migration 3
    sky.apply(policies={"*": "write-local"})
    proxies = {s: sky.services[s].proxy for s in ("edge", "lake-a")}
    before = {s: p.stats()["requests"] for s, p in proxies.items()}
    src = open_sky(parse_uri(sky.uri("u.bin")), "lake-b")
    assert src.read(100, 200) == data[100:200]
    spent = {s: p.stats()["requests"] - before[s] for s, p in proxies.items()}
    assert spent == {"edge": 1, "lake-a": 2}  # one HEAD each; the range from lake-a (cheapest)
    assert {r.site: r.site_identity for r in sky.ctx.db.replicas(obj.id)} == {
        s: sky.config.site(s).identity for s in ("edge", "lake-a")
    }
