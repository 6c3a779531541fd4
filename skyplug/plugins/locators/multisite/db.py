"""The location DB: logical objects and their replicas, with versioned schema migrations.

SQLite (WAL, one connection per thread) by default; PostgreSQL by URL through psycopg. SQL is
written once with ``?`` placeholders and portable types (:mod:`skyplug.sqlbackend` translates it).
Every state change is one conditional statement or one transaction, so concurrent clients (threads
or processes) stay consistent.
"""

from __future__ import annotations

import atexit
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyplug.core.errors import ConfigError, NotFound, PluginError, SiteError, SkyplugError
from skyplug.core.logs import redact_url
from skyplug.sqlbackend import SQLBackend

PENDING, READY, BAD, EVICTING = "pending", "ready", "bad", "evicting"

# Each migration is a list of statements; {id} becomes the dialect's auto-increment primary key.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE objects (
            id {id}, bucket TEXT NOT NULL, key TEXT NOT NULL, version TEXT NOT NULL,
            size BIGINT NOT NULL, sha256 TEXT NOT NULL, md5 TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL, base_site TEXT NOT NULL, pkey TEXT NOT NULL,
            UNIQUE (bucket, key, version))""",
        """CREATE TABLE replicas (
            id {id}, object_id BIGINT NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
            site TEXT NOT NULL, pbucket TEXT NOT NULL, pkey TEXT NOT NULL, state TEXT NOT NULL,
            etag TEXT, checksum TEXT, created DOUBLE PRECISION NOT NULL,
            last_access DOUBLE PRECISION NOT NULL, ttl DOUBLE PRECISION,
            pinned INTEGER NOT NULL DEFAULT 0, is_base INTEGER NOT NULL DEFAULT 0,
            owner TEXT, lease_expires DOUBLE PRECISION, source_site TEXT, note TEXT,
            UNIQUE (object_id, site))""",
        "CREATE INDEX objects_key ON objects (bucket, key)",
    ],
    [
        """CREATE TABLE sites (
            name TEXT PRIMARY KEY, latency_ms DOUBLE PRECISION, failures INTEGER NOT NULL DEFAULT 0,
            last_failure DOUBLE PRECISION, updated DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX replicas_site_state ON replicas (site, state)",
    ],
    # the identity (type + endpoint + bucket/path) of the site a replica was seen on: a replica
    # recorded before (NULL) or on a site since redeployed elsewhere is re-checked before use
    ["ALTER TABLE replicas ADD COLUMN site_identity TEXT"],
]


@dataclass(frozen=True)
class Obj:
    """One version of a logical object; ``version`` is ``sha256:<hex>`` of its bytes."""

    id: int
    bucket: str
    key: str
    version: str
    size: int
    sha256: str
    md5: str
    created: float
    base_site: str
    pkey: str

    @property
    def uri(self) -> str:
        return f"sky://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Replica:
    """One physical copy of an object version at a site."""

    id: int
    object_id: int
    site: str
    pbucket: str
    pkey: str
    state: str
    etag: str | None
    checksum: str | None
    created: float
    last_access: float
    ttl: float | None
    pinned: bool
    is_base: bool
    owner: str | None
    lease_expires: float | None
    source_site: str | None
    note: str | None
    site_identity: str | None

    def public(self) -> dict[str, Any]:
        """What ``skyplug replicas --json`` prints."""
        return {k: v for k, v in self.__dict__.items() if k not in ("object_id", "owner")}


def _obj(row: Any) -> Obj:
    return Obj(**{k: row[k] for k in Obj.__dataclass_fields__})


def _rep(row: Any) -> Replica:
    d = {k: row[k] for k in Replica.__dataclass_fields__}
    d["pinned"], d["is_base"] = bool(d["pinned"]), bool(d["is_base"])
    return Replica(**d)


class NoNamespace(NotFound):
    """A read-only command found no location DB: nothing was ever written to the namespace."""


class LocationDB:
    """The location DB at ``url`` (``sqlite:///path`` or ``postgresql://...``), migrated on open.

    ``readonly`` (for commands that only look): a missing SQLite file is not created (NoNamespace),
    its folder neither, and an up-to-date file is opened read-only.
    """

    def __init__(self, url: str, readonly: bool = False, clock: Callable[[], float] = time.time) -> None:
        """``clock``: the wall clock that leases, TTLs and access times are read from (tests pass a
        fake one to let a lease expire without waiting)."""
        self.url, self.readonly, self.clock = url, readonly, clock
        if url.startswith("sqlite:///"):
            self.path = Path(url[len("sqlite:///") :])
            if readonly and not self.path.is_file():
                raise NoNamespace(
                    f"no namespace yet: location DB {self.path} does not exist (nothing copied)"
                )
        elif not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"[multisite] db {url.split('@')[-1]!r}: use sqlite:///PATH or postgresql://..."
            )
        self.db = SQLBackend(
            url,
            timeout=60,
            pragmas=("synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=60000"),
            dict_rows=True,
            missing_driver=PluginError(
                "a PostgreSQL location DB needs psycopg (pip install 'psycopg[binary]')"
            ),
            unreachable=lambda cause: SiteError(
                f"[multisite] db {redact_url(self.url)}: cannot connect: {cause}"
            ),
        )
        self.dialect = self.db.dialect
        self.migrate()

    # --- statements (one connection per thread, SQL written once: skyplug.sqlbackend) -------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return self.db.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one query (mapping-like)."""
        return self.db.query(sql, params)

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction (SQLite: BEGIN IMMEDIATE, so concurrent writers queue, never deadlock)."""
        return self.db.transaction()

    def close(self) -> None:
        """Close every connection (of every thread)."""
        self.db.close()

    # --- schema ---------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        rows = self.query("SELECT MAX(version) AS v FROM schema_version")
        return int(rows[0]["v"] or 0)

    def _current_schema(self) -> int:
        """The schema version, 0 when the DB has no schema table yet (without creating one)."""
        try:
            return self.schema_version
        except SkyplugError:  # cannot connect: say so
            raise
        except Exception:  # no schema_version table (sqlite3 or psycopg error): a new or foreign DB
            return 0

    def migrate(self) -> int:
        """Apply the missing migrations in one transaction; the resulting schema version."""
        pk = "INTEGER PRIMARY KEY AUTOINCREMENT" if self.dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
        if self.readonly and self._current_schema() >= len(MIGRATIONS):
            if self.dialect == "sqlite":  # reopen read-only: looking never writes
                self.close()
                self.db.readonly = True
            return self.schema_version
        self.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied DOUBLE PRECISION)"
        )
        if self.schema_version >= len(MIGRATIONS):
            return self.schema_version
        with self.transaction():
            if self.dialect == "postgresql":
                self.execute("SELECT pg_advisory_xact_lock(5150505)")
            current = self.schema_version
            for number, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                for stmt in statements:
                    self.execute(stmt.replace("{id}", pk))
                self.execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)", (number, self.clock())
                )
        return self.schema_version

    # --- objects --------------------------------------------------------------------------
    def latest(self, bucket: str, key: str) -> Obj | None:
        """The newest written version of ``bucket/key`` (never an older one because the newest
        has no ready replica left: that is an error for the reader, not a stale read)."""
        rows = self.query(
            "SELECT * FROM objects WHERE bucket = ? AND key = ? ORDER BY id DESC LIMIT 1",
            (bucket, key),
        )
        return _obj(rows[0]) if rows else None

    def version(self, bucket: str, key: str, version: str) -> Obj | None:
        """One version of ``bucket/key``."""
        rows = self.query(
            "SELECT * FROM objects WHERE bucket = ? AND key = ? AND version = ?", (bucket, key, version)
        )
        return _obj(rows[0]) if rows else None

    def listing(self, bucket: str, prefix: str) -> list[Obj]:
        """The newest written version of every object under ``prefix/``."""
        like = prefix.rstrip("/").replace("!", "!!").replace("%", "!%").replace("_", "!_") + "/%"
        rows = self.query(
            "SELECT * FROM objects WHERE bucket = ? AND key LIKE ? ESCAPE '!' ORDER BY key, id",
            (bucket, like),
        )
        newest: dict[str, Obj] = {}
        for row in rows:
            newest[row["key"]] = _obj(row)
        return list(newest.values())

    def objects(self) -> list[Obj]:
        """Every object version."""
        return [_obj(r) for r in self.query("SELECT * FROM objects ORDER BY id")]

    def add_object(
        self, bucket: str, key: str, version: str, size: int, sha256: str, md5: str, site: str, pkey: str
    ) -> tuple[Obj, bool]:
        """Record an object version (idempotent); True when this call created it."""
        created = self.execute(
            "INSERT INTO objects (bucket, key, version, size, sha256, md5, created, base_site, pkey) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bucket, key, version) DO NOTHING",
            (bucket, key, version, size, sha256, md5, self.clock(), site, pkey),
        )
        obj = self.version(bucket, key, version)
        assert obj is not None
        return obj, created == 1

    def add_replica(
        self,
        obj: Obj,
        site: str,
        pbucket: str,
        pkey: str,
        etag: str,
        *,
        is_base: bool,
        pinned: bool = False,
        identity: str | None = None,
    ) -> bool:
        """Record a verified replica written by this client (a write's copy); replaces a bad one.

        False when a usable replica (ready, or being filled) is already recorded at that site.
        """
        now = self.clock()
        return (
            self.execute(
                "INSERT INTO replicas (object_id, site, pbucket, pkey, state, etag, checksum, created, "
                "last_access, pinned, is_base, site_identity) "
                "VALUES (?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (object_id, site) DO UPDATE SET pbucket = excluded.pbucket, "
                "pkey = excluded.pkey, state = 'ready', etag = excluded.etag, checksum = excluded.checksum, "
                "created = excluded.created, last_access = excluded.last_access, "
                "site_identity = excluded.site_identity, note = NULL WHERE replicas.state = 'bad'",
                (
                    obj.id,
                    site,
                    pbucket,
                    pkey,
                    etag,
                    obj.version,
                    now,
                    now,
                    int(pinned),
                    int(is_base),
                    identity,
                ),
            )
            == 1
        )

    def site_row(self, object_id: int, site: str) -> Replica | None:
        """The replica of an object version at a site, any state."""
        return self._row(object_id, site)

    def set_identity(self, replica_id: int, identity: str) -> bool:
        """A ready replica was just seen whole and right on the site with this identity."""
        sql = "UPDATE replicas SET site_identity = ? WHERE id = ? AND state = 'ready'"
        return self.execute(sql, (identity, replica_id)) == 1

    # --- replicas -------------------------------------------------------------------------
    def replicas(self, object_id: int) -> list[Replica]:
        """Every replica of an object version, any state."""
        return [
            _rep(r)
            for r in self.query("SELECT * FROM replicas WHERE object_id = ? ORDER BY id", (object_id,))
        ]

    def replica(self, replica_id: int) -> Replica | None:
        rows = self.query("SELECT * FROM replicas WHERE id = ?", (replica_id,))
        return _rep(rows[0]) if rows else None

    def site_replicas(self, site: str | None = None, state: str = READY) -> list[Replica]:
        """Replicas in a state, at one site or everywhere."""
        if site is None:
            rows = self.query("SELECT * FROM replicas WHERE state = ? ORDER BY id", (state,))
        else:
            rows = self.query(
                "SELECT * FROM replicas WHERE site = ? AND state = ? ORDER BY id", (site, state)
            )
        return [_rep(r) for r in rows]

    def acquire(
        self, obj: Obj, site: str, pbucket: str, pkey: str, owner: str, lease: float
    ) -> tuple[Replica | None, Replica | None]:
        """Take the fill lease of ``obj`` at ``site``: (ours, previous) or (None, the current row).

        A new row, a ``bad`` one or a ``pending`` one whose lease expired can be taken; ``previous``
        is the row we took over (its partial bytes must be rolled back), None for a new row.
        """
        now = self.clock()
        if self.execute(
            "INSERT INTO replicas (object_id, site, pbucket, pkey, state, created, last_access, owner, "
            "lease_expires) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?) "
            "ON CONFLICT (object_id, site) DO NOTHING",
            (obj.id, site, pbucket, pkey, now, now, owner, now + lease),
        ):
            return self._row(obj.id, site), None
        current = self._row(obj.id, site)
        if current is None:  # evicted between the two statements: try again from the top
            return self.acquire(obj, site, pbucket, pkey, owner, lease)
        takeable = current.state == BAD or (current.state == PENDING and (current.lease_expires or 0) < now)
        if takeable and self.execute(
            "UPDATE replicas SET state = 'pending', owner = ?, lease_expires = ?, created = ?, etag = NULL, "
            "checksum = NULL, ttl = NULL WHERE id = ? AND state = ? AND COALESCE(owner, '') = ?",
            (owner, now + lease, now, current.id, current.state, current.owner or ""),
        ):
            return self.replica(current.id), current
        return None, current

    def _row(self, object_id: int, site: str) -> Replica | None:
        rows = self.query("SELECT * FROM replicas WHERE object_id = ? AND site = ?", (object_id, site))
        return _rep(rows[0]) if rows else None

    def renew(self, replica_id: int, owner: str, lease: float) -> bool:
        """Extend our lease; False when it was lost (rolled back or taken over)."""
        return (
            self.execute(
                "UPDATE replicas SET lease_expires = ? WHERE id = ? AND owner = ? AND state = 'pending'",
                (self.clock() + lease, replica_id, owner),
            )
            == 1
        )

    def complete(
        self,
        replica_id: int,
        owner: str,
        etag: str,
        checksum: str,
        ttl: float | None,
        source: str | None,
        identity: str | None = None,
    ) -> bool:
        """pending -> ready, only while we still hold the lease."""
        now = self.clock()
        return (
            self.execute(
                "UPDATE replicas SET state = 'ready', etag = ?, checksum = ?, ttl = ?, source_site = ?, "
                "created = ?, last_access = ?, owner = NULL, lease_expires = NULL, note = NULL, "
                "site_identity = ? WHERE id = ? AND owner = ? AND state = 'pending'",
                (etag, checksum, ttl, source, now, now, identity, replica_id, owner),
            )
            == 1
        )

    def release(self, replica_id: int, owner: str, bad_note: str | None = None) -> bool:
        """Give up our pending row after a failed fill: drop it, or put it back as ``bad`` (with
        its note) when it was a bad replica we had taken over to refill."""
        if bad_note is not None:
            sql = "UPDATE replicas SET state = 'bad', owner = NULL, lease_expires = NULL, note = ? "
            sql += "WHERE id = ? AND owner = ? AND state = 'pending'"
            return self.execute(sql, (bad_note, replica_id, owner)) == 1
        sql = "DELETE FROM replicas WHERE id = ? AND owner = ? AND state = 'pending'"
        return self.execute(sql, (replica_id, owner)) == 1

    def mark_bad(self, replica_id: int, note: str) -> bool:
        """A ready replica whose bytes are wrong or gone: never read again until re-filled."""
        return (
            self.execute(
                "UPDATE replicas SET state = 'bad', note = ? WHERE id = ? AND state = 'ready'",
                (note[:500], replica_id),
            )
            == 1
        )

    def touch(self, replica_id: int) -> None:
        """Record an access (refreshes the TTL and the LRU order)."""
        self.execute("UPDATE replicas SET last_access = ? WHERE id = ?", (self.clock(), replica_id))

    def set_pinned(self, replica_id: int, pinned: bool) -> None:
        self.execute("UPDATE replicas SET pinned = ? WHERE id = ?", (int(pinned), replica_id))

    def stale_pending(self, now: float | None = None) -> list[Replica]:
        """Pending replicas whose lease expired (their filler died or stalled)."""
        now = self.clock() if now is None else now
        rows = self.query("SELECT * FROM replicas WHERE state = 'pending' AND lease_expires < ?", (now,))
        return [_rep(r) for r in rows]

    def claim_for_removal(self, rep: Replica) -> bool:
        """Take a replica out of service (ready -> evicting, or an expired pending); False if it moved on."""
        if rep.state == EVICTING:
            return True
        if rep.state == PENDING:
            return (
                self.execute(
                    "UPDATE replicas SET state = 'evicting' "
                    "WHERE id = ? AND state = 'pending' AND lease_expires < ?",
                    (rep.id, self.clock()),
                )
                == 1
            )
        return (
            self.execute(
                "UPDATE replicas SET state = 'evicting' "
                "WHERE id = ? AND state = ? AND is_base = 0 AND pinned = 0",
                (rep.id, rep.state),
            )
            == 1
        )

    def delete_replica(self, replica_id: int) -> None:
        self.execute("DELETE FROM replicas WHERE id = ? AND state = 'evicting'", (replica_id,))

    # --- measured site health ----------------------------------------------------------
    def site_stats(self) -> dict[str, dict[str, Any]]:
        """Measured latency (EWMA, ms) and failures per site."""
        return {r["name"]: dict(r) for r in self.query("SELECT * FROM sites")}

    def record_site(self, name: str, latency_ms: float | None, failed: bool) -> None:
        """Fold one measurement into a site's latency EWMA, or count a failure."""
        now = self.clock()
        self.execute(
            "INSERT INTO sites (name, latency_ms, failures, last_failure, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET "
            "latency_ms = CASE WHEN excluded.latency_ms IS NULL THEN sites.latency_ms "
            "WHEN sites.latency_ms IS NULL THEN excluded.latency_ms "
            "ELSE 0.8 * sites.latency_ms + 0.2 * excluded.latency_ms END, "
            "failures = sites.failures + excluded.failures, "
            "last_failure = COALESCE(excluded.last_failure, sites.last_failure), updated = excluded.updated",
            (name, latency_ms, int(failed), now if failed else None, now),
        )


def move_sqlite(old: Path, new: Path) -> None:
    """Move a SQLite location DB (with its WAL) to ``new`` by SQLite's online backup, then rename
    the old file to ``<name>.moved`` so that no client keeps writing to it unnoticed."""
    new.parent.mkdir(parents=True, exist_ok=True)
    tmp = new.with_name(f"{new.name}.part")
    src = sqlite3.connect(old, timeout=60)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    tmp.replace(new)
    old.replace(old.with_name(f"{old.name}.moved"))
    for suffix in ("-wal", "-shm"):
        Path(f"{old}{suffix}").unlink(missing_ok=True)


_dbs: dict[str, LocationDB] = {}
_dbs_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    for db in _dbs.values():
        db.close()


def open_db(url: str, readonly: bool = False) -> LocationDB:
    """The process-wide LocationDB for a URL (migrated once); see LocationDB for ``readonly``."""
    with _dbs_lock:
        if url in _dbs and (readonly or not _dbs[url].readonly):
            return _dbs[url]
        db = LocationDB(url, readonly)
        if not readonly and url in _dbs:  # a read-only one was opened first: writers replace it
            _dbs[url].close()
        _dbs[url] = db
        return db
