"""Reads over sky://: ranked candidates, fallback, copy-on-read fills, single flight, ranged misses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from skyplug.core.dataset import open_target
from skyplug.core.errors import SiteError
from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite import physical
from skyplug.plugins.locators.multisite.locator import SkySource, open_sky

ROOT = Path(__file__).resolve().parents[2]


def _open(sky, key: str, at: str | None) -> SkySource:
    src = open_sky(parse_uri(sky.uri(key)), at)
    assert isinstance(src, SkySource)
    return src


def _replica_bytes(sky, obj, site: str) -> bytes:
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}[site]
    src = physical.open_source(sky.config.site(site), rep.pbucket, rep.pkey, rep.etag, obj.size)
    return src.read(0, obj.size)


def test_write_local_then_copy_on_read(sky) -> None:
    data = os.urandom(300_000)
    obj = sky.put(data, "obs/a.bin", at="edge")
    assert obj.version.startswith("sha256:") and obj.size == len(data)
    assert sky.states(obj) == {"edge": "ready"}
    assert _open(sky, "obs/a.bin", "lake-a").read(1000, 2000) == data[1000:2000]
    # copy-on-read (the default policy): the small object was filled at lake-a first, verified
    assert sky.states(obj) == {"edge": "ready", "lake-a": "ready"}
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}["lake-a"]
    assert rep.checksum == obj.version and rep.source_site == "edge" and not rep.is_base
    assert _replica_bytes(sky, obj, "lake-a") == data
    # every format plugin goes through open_target: the core's sky:// path
    assert open_target(sky.uri("obs/a.bin")).read(0, len(data)) == data


def test_candidates_local_then_cheapest_egress(sky) -> None:
    sky.apply(policies={"*": "replicate-all"})
    obj = sky.put(b"x" * 1000, "k", at="edge")
    assert set(sky.states(obj)) == {"edge", "lake-a", "lake-b", "disk"}
    order = [c.replica.site for c in _open(sky, "k", "lake-b").candidates()]
    assert order == ["lake-b", "lake-a", "edge", "disk"]  # local first, then by egress price
    order = [c.replica.site for c in _open(sky, "k", None).candidates()]
    assert order == ["lake-a", "lake-b", "edge", "disk"]  # 0.02 < 0.05 < 0.09 < 0.12 $/GB


def test_site_down_falls_back_and_ranks_it_last(sky) -> None:
    sky.apply(policies={"*": {"policy": "push", "targets": ["lake-a", "lake-b"]}})
    data = os.urandom(50_000)
    sky.put(data, "k", at="edge")
    sky.apply(policies={"*": "write-local"})  # reads must not fill: remote only
    sky.services["lake-a"].proxy.set_fault("reset", count=None)
    try:
        src = _open(sky, "k", "disk")
        assert src.candidates()[0].replica.site == "lake-a"
        assert src.read(0, len(data)) == data
        assert src.served_by == "lake-b"
        assert [c.replica.site for c in _open(sky, "k", "disk").candidates()][-1] == "lake-a"
    finally:
        sky.services["lake-a"].proxy.clear()


def test_every_site_down_names_object_and_sites(sky) -> None:
    sky.apply(policies={"*": "write-local"})
    sky.put(b"abc" * 100, "k", at="lake-a")
    sky.services["lake-a"].proxy.set_fault("reset", count=None)
    try:
        with pytest.raises(SiteError) as err:
            _open(sky, "k", "edge").read(0, 10)
    finally:
        sky.services["lake-a"].proxy.clear()
    assert sky.uri("k") in str(err.value) and "lake-a" in str(err.value)
    assert "testing" not in str(err.value)  # no credential in messages


def test_concurrent_cold_readers_fetch_once(sky, db_url: str) -> None:
    sky.apply(db=db_url)  # SQLite, then PostgreSQL
    data = os.urandom(3 * 1024 * 1024)
    obj = sky.put(data, "hot.bin", at="lake-b")
    proxy = sky.services["lake-b"].proxy
    before = proxy.stats()["requests"]
    results: list[bytes] = []
    barrier = threading.Barrier(16)

    def reader() -> None:
        src = _open(sky, "hot.bin", "edge")
        barrier.wait()
        results.append(src.read(0, src.size))

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and all(r == data for r in results)
    assert proxy.stats()["requests"] - before == 1  # exactly one remote GET, the fill
    assert sky.states(obj) == {"lake-b": "ready", "edge": "ready"}


def test_concurrent_cold_readers_in_processes_fetch_once(sky, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024)
    sky.put(data, "hot2.bin", at="lake-b")
    toml = sky.write_toml()
    proxy = sky.services["lake-b"].proxy
    before = proxy.stats()["requests"]
    cmd = [
        sys.executable,
        "-m",
        "skyplug.cli",
        "--config",
        str(toml),
        "cat",
        sky.uri("hot2.bin"),
        "--at",
        "edge",
    ]
    outs = [tmp_path / f"out{i}" for i in range(6)]  # files: a reader blocked on a pipe would stall the fill
    procs = []
    for out in outs:
        with out.open("wb") as fh:
            procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.PIPE, cwd=ROOT))
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e.decode()[-500:] for e in errs]
    assert all(out.read_bytes() == data for out in outs)
    assert proxy.stats()["requests"] - before == 1


def test_ranged_miss_fills_the_whole_object(sky) -> None:
    data = os.urandom(20 * 1024 * 1024 + 123)  # multipart at the destination (5 MiB parts)
    obj = sky.put(data, "big.bin", at="lake-a")
    src = _open(sky, "big.bin", "edge")
    assert src.read(10_000_000, 10_000_100) == data[10_000_000:10_000_100]
    assert src.served_by == "lake-a" and src.fill_thread is not None
    src.fill_thread.join(60)
    assert sky.states(obj)["edge"] == "ready"
    assert _replica_bytes(sky, obj, "edge") == data
    assert _open(sky, "big.bin", "edge").candidates()[0].replica.site == "edge"


def test_failed_fill_never_caches_a_truncated_object(sky) -> None:
    data = os.urandom(3 * 1024 * 1024)
    obj = sky.put(data, "cut.bin", at="lake-a")
    proxy = sky.services["lake-a"].proxy
    proxy.set_fault("cut", count=None, cut_after=200_000)
    try:
        with pytest.raises(SiteError):
            _open(sky, "cut.bin", "edge").read(0, len(data))
    finally:
        proxy.clear()
    assert sky.states(obj) == {"lake-a": "ready"}  # the pending fill was released
    rows = sky.client("edge").list_objects_v2(Bucket=sky.bucket).get("Contents", [])
    assert rows == []  # and no bytes were left behind
    assert _open(sky, "cut.bin", "edge").read(0, len(data)) == data
    assert sky.states(obj)["edge"] == "ready" and _replica_bytes(sky, obj, "edge") == data


def test_format_plugins_read_sky_objects_and_prefixes(sky, tmp_path: Path) -> None:
    import numpy as np

    from skyplug.core.dataset import Dataset
    from skyplug.core.source import Tree

    arr = np.arange(5000, dtype="<f8").reshape(100, 50)
    np.save(tmp_path / "a.npy", arr)
    src = open_target(str(tmp_path / "a.npy"))
    from skyplug.plugins.locators.multisite.write import put_object

    for key in ("run/a.npy", "run/sub/b.npy"):
        put_object(sky.ctx, src, sky.bucket, key, "lake-a")
    index = Dataset(sky.uri("run/a.npy")).index()
    assert index["version"].startswith("sha256:") and index["format"] == "npy"
    tree = open_target(sky.uri("run"))
    assert isinstance(tree, Tree) and tree.members() == {"a.npy": src.size, "sub/b.npy": src.size}
    assert tree.read_member("sub/b.npy") == src.read(0, src.size)


def test_sixteen_readers_and_writers_end_to_end(sky, db_url: str) -> None:
    """16 threads write new versions and read at random sites; every read is one whole version and
    every ready replica verifies afterwards (SQLite, then PostgreSQL)."""
    import hashlib
    import random

    from skyplug.plugins.locators.multisite.fill import verify_replica

    sky.apply(db=db_url, policies={"*": "copy-on-read"})
    for k in range(3):
        sky.put(os.urandom(20_000), f"c{k}", at="edge")
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        rng = random.Random(i)
        try:
            for n in range(6):
                key, site = f"c{rng.randrange(3)}", rng.choice(["edge", "lake-a", "lake-b", "disk"])
                if i % 2 and n % 2:
                    sky.put(os.urandom(rng.randrange(1, 30_000)), key, at=site)
                else:
                    src = _open(sky, key, site)
                    data = src.read(0, src.size)
                    assert "sha256:" + hashlib.sha256(data).hexdigest() == src.version
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = sky.ctx.db
    objs = {o.id: o for o in db.objects()}
    assert db.site_replicas(None, "pending") == [] and db.site_replicas(None, "bad") == []
    for rep in db.site_replicas(None, "ready"):
        assert rep.checksum == objs[rep.object_id].version
        assert verify_replica(sky.ctx, objs[rep.object_id], rep) is None
