"""Integrity: replicas altered behind our back are detected, marked bad and refilled from a good one."""

from __future__ import annotations

import os

import pytest

from skyplug.core.errors import SkyplugError
from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite import physical
from skyplug.plugins.locators.multisite.fill import ensure_replica, verify_replica
from skyplug.plugins.locators.multisite.locator import open_sky


def _rep(sky, obj, site):
    return {r.site: r for r in sky.ctx.db.replicas(obj.id)}[site]


def test_tampered_s3_replica_is_skipped_marked_bad_and_refilled(sky) -> None:
    data = os.urandom(100_000)
    sky.apply(policies={"*": {"policy": "push", "targets": ["lake-a"]}})
    obj = sky.put(data, "t.bin", at="edge")
    rep = _rep(sky, obj, "lake-a")
    evil = bytearray(data)
    evil[5] ^= 0xFF
    sky.client("lake-a").put_object(Bucket=rep.pbucket, Key=rep.pkey, Body=bytes(evil))  # same size
    src = open_sky(parse_uri(sky.uri("t.bin")), "lake-a")
    assert src.read(0, len(data)) == data  # If-Match with lake-a's own ETag caught it; edge served
    assert src.served_by == "edge"
    assert sky.states(obj)["lake-a"] == "bad"
    assert "behind our back" in (_rep(sky, obj, "lake-a").note or "")
    fixed, filled = ensure_replica(sky.ctx, obj, "lake-a")
    assert filled and fixed is not None and fixed.state == "ready" and fixed.checksum == obj.version
    src = physical.open_source(sky.config.site("lake-a"), fixed.pbucket, fixed.pkey, fixed.etag)
    assert src.read(0, len(data)) == data


def test_tampered_local_replica_with_same_mtime_is_found_by_verify(sky) -> None:
    data = os.urandom(64_000)
    sky.apply(policies={"*": {"policy": "push", "targets": ["disk"]}})
    obj = sky.put(data, "l.bin", at="edge")
    rep = _rep(sky, obj, "disk")
    path = sky.tmp / "disk" / rep.pbucket / rep.pkey
    st = path.stat()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # a sneaky change: size and mtime kept
    reason = verify_replica(sky.ctx, obj, rep)
    assert reason is not None and "checksum mismatch" in reason
    assert sky.states(obj)["disk"] == "bad"
    assert verify_replica(sky.ctx, obj, _rep(sky, obj, "edge")) is None
    ensure_replica(sky.ctx, obj, "disk")
    assert sky.states(obj)["disk"] == "ready" and path.read_bytes() == data


def test_fill_from_a_corrupt_source_never_becomes_ready(sky) -> None:
    data = os.urandom(32_000)
    obj = sky.put(data, "c.bin", at="disk")  # the only copy, on the local folder site
    rep = _rep(sky, obj, "disk")
    path = sky.tmp / "disk" / rep.pbucket / rep.pkey
    st = path.stat()
    path.write_bytes(bytes(len(data)))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # LocalSource cannot see the change
    with pytest.raises(SkyplugError) as err:
        open_sky(parse_uri(sky.uri("c.bin")), "lake-b").read(0, 10)
    assert sky.uri("c.bin") in str(err.value)
    assert sky.states(obj) == {"disk": "bad"}  # caught by the checksum; no replica at lake-b
    assert sky.client("lake-b").list_objects_v2(Bucket=sky.bucket).get("Contents", []) == []


def test_a_newer_version_with_no_good_replica_is_an_error_not_a_stale_read(sky) -> None:
    sky.put(b"old" * 100, "n.bin", at="edge")
    new = sky.put(b"new" * 100, "n.bin", at="edge")
    sky.ctx.db.execute("UPDATE replicas SET state = 'bad' WHERE object_id = ?", (new.id,))
    for _ in range(2):  # the failed refill keeps the row bad: the next read fails the same way
        with pytest.raises(SkyplugError, match="no ready replica"):
            open_sky(parse_uri(sky.uri("n.bin")), "edge").read(0, 3)
    assert sky.states(new) == {"edge": "bad"}
