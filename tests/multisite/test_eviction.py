"""Eviction: fixed TTL, T-even, size cap with LRU; base and pinned copies stay; stuck fills roll back."""

from __future__ import annotations

import os
import time

import pytest

from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite import eviction, physical
from skyplug.plugins.locators.multisite.fill import ensure_replica
from skyplug.plugins.locators.multisite.locator import open_sky
from skyplug.plugins.locators.multisite.settings import MONTH_SECONDS


def _rep(sky, obj, site):
    return {r.site: r for r in sky.ctx.db.replicas(obj.id)}[site]


def _age(sky, obj, site: str, seconds: float) -> None:
    sky.ctx.db.execute(
        "UPDATE replicas SET last_access = ? WHERE object_id = ? AND site = ?",
        (time.time() - seconds, obj.id, site),
    )


def test_fixed_ttl_counts_from_the_last_access(sky) -> None:
    sky.apply(eviction={"lake-a": {"policy": "ttl", "ttl": 3600}, "edge": {"policy": "ttl", "ttl": 1}})
    data = os.urandom(5000)
    obj = sky.put(data, "t.bin", at="edge")
    open_sky(parse_uri(sky.uri("t.bin")), "lake-a").read(0, 10)
    assert _rep(sky, obj, "lake-a").ttl == 3600
    _age(sky, obj, "lake-a", 3000)
    _age(sky, obj, "edge", 10_000)  # the base copy: never evicted
    assert eviction.plan(sky.ctx) == []
    _age(sky, obj, "lake-a", 4000)
    planned = eviction.run(sky.ctx, dry_run=True)
    assert [(e.replica.site, e.reason) for e in planned] == [("lake-a", "ttl 3600 s expired")]
    assert sky.states(obj)["lake-a"] == "ready"  # dry run
    done = eviction.run(sky.ctx)
    assert [e.replica.site for e in done] == ["lake-a"] and sky.states(obj) == {"edge": "ready"}
    rep_gone = sky.client("lake-a").list_objects_v2(Bucket=sky.bucket).get("Contents", [])
    assert rep_gone == []
    assert open_sky(parse_uri(sky.uri("t.bin")), "lake-a").read(0, len(data)) == data  # refilled on demand


def test_t_even_ttl_is_egress_over_storage_price(sky) -> None:
    sky.apply(eviction={"edge": {"policy": "t-even"}})
    a = sky.put(b"a" * 1000, "a.bin", at="lake-a")
    b = sky.put(b"b" * 1000, "b.bin", at="lake-b")
    for key in ("a.bin", "b.bin"):
        open_sky(parse_uri(sky.uri(key)), "edge").read(0, 10)
    assert _rep(sky, a, "edge").ttl == pytest.approx(0.02 / 0.023 * MONTH_SECONDS)  # ~26 days
    assert _rep(sky, b, "edge").ttl == pytest.approx(0.05 / 0.023 * MONTH_SECONDS)
    _age(sky, a, "edge", 0.02 / 0.023 * MONTH_SECONDS + 60)
    assert [(e.replica.object_id, e.replica.site) for e in eviction.plan(sky.ctx)] == [(a.id, "edge")]


def test_size_cap_evicts_least_recently_used_but_never_base_or_pinned(sky) -> None:
    sky.apply(eviction={"disk": {"max_bytes": 25_000}})
    objs = [sky.put(os.urandom(10_000), f"o{i}", at="edge") for i in range(3)]
    base = sky.put(os.urandom(10_000), "local-base", at="disk")
    for i, obj in enumerate(objs):
        ensure_replica(sky.ctx, obj, "disk")
        _age(sky, obj, "disk", 100 - i)  # o0 least recently used
    _age(sky, base, "disk", 1000)
    planned = eviction.plan(sky.ctx, "disk")
    assert [e.replica.object_id for e in planned] == [objs[0].id, objs[1].id]  # 40 kB -> 20 kB
    assert all("size cap" in e.reason for e in planned)
    sky.ctx.db.set_pinned(_rep(sky, objs[0], "disk").id, True)
    done = eviction.run(sky.ctx, "disk")
    assert [e.replica.object_id for e in done] == [objs[1].id, objs[2].id]
    assert sky.states(objs[0])["disk"] == "ready" and sky.states(base) == {"disk": "ready"}
    assert (sky.tmp / "disk" / sky.bucket / _rep(sky, objs[0], "disk").pkey).exists()
    assert not (sky.tmp / "disk" / sky.bucket / objs[1].pkey).exists()


def test_stuck_pending_fill_is_rolled_back(sky, clock) -> None:
    obj = sky.put(b"z" * 100, "p.bin", at="edge")
    sky.monkeypatch.setattr(sky.ctx.db, "clock", clock)
    mine, _ = sky.ctx.db.acquire(obj, "lake-b", sky.bucket, obj.pkey, "dead-filler", lease=0.01)
    assert mine is not None
    physical.ensure_bucket(sky.config.site("lake-b"), sky.bucket)
    sky.client("lake-b").put_object(Bucket=sky.bucket, Key=obj.pkey, Body=b"partial")
    clock.advance(0.05)  # the filler died: its lease expires
    done = eviction.run(sky.ctx, "lake-b")
    assert [e.reason for e in done] == ["fill lease expired (rolled back)"]
    assert sky.states(obj) == {"edge": "ready"}
    assert sky.client("lake-b").list_objects_v2(Bucket=sky.bucket).get("Contents", []) == []
