"""The location DB on SQLite and PostgreSQL: migrations, leases, concurrent clients."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from skyplug.plugins.locators.multisite.db import MIGRATIONS, LocationDB


@pytest.fixture
def open_db(db_url: str):
    """``open_db()`` -> a LocationDB client on the test's DB; every client is closed afterwards."""
    made: list[LocationDB] = []

    def make(**options: Any) -> LocationDB:
        made.append(LocationDB(db_url, **options))
        return made[-1]

    yield make
    for db in made:
        db.close()


def _obj(db: LocationDB, key: str = "k", version: str = "sha256:aa"):
    obj, created = db.add_object("b", key, version, 10, version[7:], "md5", "edge", f".sky/{key}~1")
    return obj, created


def test_migrations_are_versioned_and_upgrade_old_schemas(open_db) -> None:
    db = open_db()
    assert db.schema_version == len(MIGRATIONS) == 3
    assert db.migrate() == 3  # idempotent
    db.execute("DROP TABLE sites")
    db.execute("DROP INDEX replicas_site_state")
    db.execute("ALTER TABLE replicas DROP COLUMN site_identity")
    db.execute("DELETE FROM schema_version WHERE version >= 2")  # a version-1 database
    again = open_db()
    assert again.schema_version == 3
    again.record_site("edge", 12.0, failed=False)
    again.record_site("edge", 2.0, failed=False)
    assert again.site_stats()["edge"]["latency_ms"] == pytest.approx(10.0)  # EWMA 0.8 * 12 + 0.2 * 2


def test_objects_versions_and_idempotent_writes(open_db) -> None:
    db = open_db()
    obj, created = _obj(db)
    assert created and _obj(db)[1] is False
    assert db.latest("b", "k") == obj
    assert db.add_replica(obj, "edge", "b", obj.pkey, '"e1"', is_base=True)
    assert not db.add_replica(obj, "edge", "b", obj.pkey, '"e2"', is_base=True)
    new, _ = _obj(db, version="sha256:bb")
    db.add_replica(new, "edge", "b", new.pkey, '"e3"', is_base=True)
    assert db.latest("b", "k") == new and db.version("b", "k", "sha256:aa") == obj
    assert [o.key for o in db.listing("b", "")] == [] and db.listing("b", "k") == []
    _obj(db, key="dir/x")
    _obj(db, key="dir/y/z", version="sha256:cc")
    _obj(db, key="dir_not/x")
    assert [o.key for o in db.listing("b", "dir")] == ["dir/x", "dir/y/z"]


def test_lease_single_winner_expiry_and_rollback(open_db, clock) -> None:
    db = open_db(clock=clock)
    obj, _ = _obj(db)
    winners: list[str] = []
    barrier = threading.Barrier(16)

    def contender(i: int) -> None:
        barrier.wait()
        mine, _ = db.acquire(obj, "lake", "b", obj.pkey, f"o{i}", lease=0.5)
        if mine is not None:
            winners.append(mine.owner or "")

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert db.renew(db._row(obj.id, "lake").id, winners[0], 0.5)
    assert not db.renew(db._row(obj.id, "lake").id, "someone-else", 0.5)
    clock.advance(0.6)  # the winner "died": its lease expires
    assert [r.site for r in db.stale_pending()] == ["lake"]
    mine, previous = db.acquire(obj, "lake", "b", obj.pkey, "late", lease=30)
    assert mine is not None and previous is not None and previous.owner == winners[0]
    assert not db.complete(mine.id, winners[0], '"x"', obj.version, None, "edge")  # the old owner lost it
    assert db.complete(mine.id, "late", '"x"', obj.version, None, "edge")
    assert db.replica(mine.id).state == "ready"
    assert db.mark_bad(mine.id, "tampered") and db.replica(mine.id).state == "bad"
    again, _ = db.acquire(obj, "lake", "b", obj.pkey, "refill", lease=30)
    assert again is not None and again.state == "pending"  # bad replicas are taken over for a refill


def test_sixteen_clients_keep_the_db_consistent(open_db) -> None:
    """16 clients (threads, each its own connection) write versions, fill, fail and read; invariants hold."""
    db = open_db()
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            conn_db = open_db()
            for n in range(15):
                key = f"k{n % 4}"
                obj, _ = conn_db.add_object("b", key, f"sha256:{n % 6:02d}", 10, "x", "m", "edge", f"p{n}")
                conn_db.add_replica(obj, "edge", "b", obj.pkey, '"e"', is_base=True)
                for site in ("lake-a", "lake-b"):
                    mine, _ = conn_db.acquire(obj, site, "b", obj.pkey, f"c{i}", lease=30)
                    if mine is None:
                        continue
                    if (i + n) % 3:
                        conn_db.complete(mine.id, f"c{i}", '"f"', obj.version, 60.0, "edge")
                    else:
                        conn_db.release(mine.id, f"c{i}")
                latest = conn_db.latest("b", key)
                assert latest is not None and latest.key == key
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = db.query("SELECT object_id, site, COUNT(*) AS n FROM replicas GROUP BY object_id, site")
    assert all(r["n"] == 1 for r in rows)
    versions = {o.id: o.version for o in db.objects()}
    assert len(versions) == len({(o.key, o.version) for o in db.objects()})
    for rep in db.site_replicas(None, "ready"):
        assert rep.checksum == versions[rep.object_id]
    assert db.site_replicas(None, "pending") == []
