"""The provenance store: tables ``prov_*`` in the catalogue database (SQLite file or PostgreSQL).

One row per node and relation of each run, so archivists can join them with ObsCore records.
Where: ``SKYPLUG_PROV_DB``, else ``[provenance] url``, else ``[catalog] url``, else
``provenance.db`` in the user data folder (never the current folder).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from skyplug.core import provenance as pv
from skyplug.core.config import data_dir, get_config
from skyplug.core.errors import ConfigError, NotFound, SkyplugWarning
from skyplug.core.logs import redact_url
from skyplug.core.publisher import Rows
from skyplug.sqlbackend import SQLITE, SQLBackend, db_url

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS prov_runs (run TEXT PRIMARY KEY, name TEXT, started TEXT)",
    "CREATE TABLE IF NOT EXISTS prov_nodes (run TEXT, id TEXT, kind TEXT, attrs TEXT, PRIMARY KEY (run, id))",
    "CREATE TABLE IF NOT EXISTS prov_relations (run TEXT, kind TEXT, subject TEXT, object TEXT, attrs TEXT)",
    "CREATE INDEX IF NOT EXISTS prov_rel_subject ON prov_relations (subject)",
    "CREATE INDEX IF NOT EXISTS prov_rel_object ON prov_relations (object)",
    "CREATE TABLE IF NOT EXISTS prov_steps (run TEXT, seq BIGINT, activity TEXT, step TEXT, record TEXT)",
)


def store_url() -> str:
    """``SKYPLUG_PROV_DB``, else ``[provenance] url``, else the catalogue's ``[catalog] url`` (the
    provenance goes with the records it explains), else ``provenance.db`` in the user data folder."""
    catalog = get_config().raw.get("catalog", {}) or {}
    url = os.environ.get(pv.DB_ENV) or pv.settings().get("url") or catalog.get("url")
    return db_url(url) if url else f"sqlite:///{data_dir() / 'provenance.db'}"


class Store:
    """Provenance rows of runs; ``url`` is ``sqlite:///FILE`` or ``postgresql://...``."""

    def __init__(self, url: str) -> None:
        self.url = url
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(f"provenance store {redact_url(url)!r}: use sqlite:///FILE or postgresql://...")
        # Engine workers (Dask, Lithops processes) write the same file: WAL lets readers go on
        # while one writes, and the 30 s busy timeout makes writers queue, not fail.
        self.db = SQLBackend(url, timeout=30, pragmas=("synchronous = OFF",))  # no fsync per record
        self.conn: Any = self.db.connect()  # one per process, shared by its threads under ``lock``
        self.lock = threading.RLock()
        if not self._has_schema():  # a store made before opens read-only too: nothing to write
            with self._tx():  # immediate: processes making the store at once queue, none fails
                for stmt in SCHEMA:
                    self.conn.execute(stmt)

    def _has_schema(self) -> bool:
        """Whether every table and index of ``SCHEMA`` exists (one read, no write lock)."""
        names = [stmt.split(" IF NOT EXISTS ")[1].split()[0] for stmt in SCHEMA]
        if self.db.dialect == SQLITE:
            sql = f"SELECT COUNT(*) FROM sqlite_master WHERE name IN ({', '.join('?' * len(names))})"
        else:
            sql = f"SELECT COUNT(to_regclass(n)) FROM (VALUES {', '.join(['(?)'] * len(names))}) AS t(n)"
        return int(self.conn.execute(self._sql(sql), names).fetchone()[0]) == len(names)

    def _tx(self) -> Any:
        """A write transaction on the store's connection."""
        return self.db.transaction(self.conn)

    def _sql(self, text: str) -> str:
        return self.db.sql(text)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()  # the connection stays open for the process's next records

    def write(self, act: Any) -> None:
        """Store an activity's rows (its run is created on first write)."""
        with act.lock:  # a snapshot: engine threads may still add to an activity they share
            nodes, relations = dict(act.nodes), list(act.relations)
        with self._tx():
            cur = self.conn.cursor()
            cur.execute(self._sql("SELECT 1 FROM prov_runs WHERE run = ?"), (act.run,))
            if cur.fetchone() is None:
                cur.execute(
                    self._sql("INSERT INTO prov_runs VALUES (?, ?, ?)"), (act.run, act.name, act.start)
                )
            for nid, (kind, attrs) in nodes.items():
                cur.execute(self._sql("DELETE FROM prov_nodes WHERE run = ? AND id = ?"), (act.run, nid))
                cur.execute(
                    self._sql("INSERT INTO prov_nodes VALUES (?, ?, ?, ?)"),
                    (act.run, nid, kind, json.dumps(attrs, default=str)),
                )
            cur.executemany(
                self._sql("INSERT INTO prov_relations VALUES (?, ?, ?, ?, ?)"),
                [(act.run, k, s, o, json.dumps(a, default=str)) for k, s, o, a in relations],
            )
            if act.step is not None:
                cur.execute(
                    self._sql("INSERT INTO prov_steps VALUES (?, ?, ?, ?, ?)"),
                    (act.run, act.step["seq"], act.id, act.step["step"], json.dumps(act.step, default=str)),
                )

    def runs(self) -> list[dict[str, Any]]:
        """Every run: id, name, start and counts of activities and entities."""
        cur = self.conn.cursor()
        cur.execute(
            "SELECT r.run, r.name, r.started, "
            "SUM(CASE WHEN n.kind = 'activity' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN n.kind = 'entity' THEN 1 ELSE 0 END) "
            "FROM prov_runs r LEFT JOIN prov_nodes n ON n.run = r.run "
            "GROUP BY r.run, r.name, r.started ORDER BY r.started"
        )
        keys = ("run", "name", "started", "activities", "entities")
        return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]

    def run_rows(self, run: str) -> Rows:
        """Nodes and relations of one run."""
        cur = self.conn.cursor()
        cur.execute(self._sql("SELECT id, kind, attrs FROM prov_nodes WHERE run = ?"), (run,))
        nodes = {i: (k, json.loads(a)) for i, k, a in cur.fetchall()}
        if not nodes:
            raise NotFound(f"provenance run {run!r} is not in {redact_url(self.url)}")
        cur.execute(
            self._sql("SELECT kind, subject, object, attrs FROM prov_relations WHERE run = ?"), (run,)
        )
        return nodes, [(k, s, o, json.loads(a)) for k, s, o, a in cur.fetchall()]

    def node(self, nid: str) -> tuple[str, dict[str, Any]] | None:
        cur = self.conn.cursor()
        cur.execute(self._sql("SELECT kind, attrs FROM prov_nodes WHERE id = ? LIMIT 1"), (nid,))
        row = cur.fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def neighbours(self, nid: str, direction: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Relations leading from ``nid`` to its causes (back) or its consequences (forth)."""
        col = "subject" if direction == "back" else "object"
        cur = self.conn.cursor()
        cur.execute(
            self._sql(f"SELECT DISTINCT kind, subject, object, attrs FROM prov_relations WHERE {col} = ?"),
            (nid,),
        )
        return [(k, s, o, json.loads(a)) for k, s, o, a in cur.fetchall()]

    def steps(self, run: str) -> list[dict[str, Any]]:
        """The recorded steps of a run, in the order they ran."""
        cur = self.conn.cursor()
        cur.execute(self._sql("SELECT activity, record FROM prov_steps WHERE run = ? ORDER BY seq"), (run,))
        return [{"activity": a, **json.loads(r)} for a, r in cur.fetchall()]

    def root_activities(self, run: str) -> list[str]:
        """Activities of a run that inform no other activity of it (its outermost ones)."""
        nodes, rels = self.run_rows(run)
        children = {s for k, s, o, _ in rels if k == "wasInformedBy" and o in nodes}
        return sorted(i for i, (k, _) in nodes.items() if k == "activity" and i not in children)

    def parents_of(self, location: str, checksum: str | None = None) -> list[dict[str, str]]:
        """Objects (URI + version) the entities at ``location`` (or with sha256 ``checksum``) were
        derived from, nearest first, through wasDerivedFrom and specializationOf."""
        cur = self.conn.cursor()
        wanted = [json.dumps(location)] + ([json.dumps(checksum)] if checksum else [])
        starts: list[str] = []
        for value in wanted:  # a LIKE prefilter on the JSON text, checked exactly below
            cur.execute(
                self._sql("SELECT DISTINCT id, attrs FROM prov_nodes WHERE kind = 'entity' AND attrs LIKE ?"),
                (f"%{value}%",),
            )
            for nid, attrs in cur.fetchall():
                a = json.loads(attrs)
                if nid not in starts and (
                    a.get("location") == location or (checksum and a.get("checksum") == checksum)
                ):
                    starts.append(nid)
        out: list[dict[str, str]] = []
        seen, frontier = set(starts), list(starts)
        while frontier:
            nxt = []
            for nid in frontier:
                for kind, _, parent, _ in self.neighbours(nid, "back"):
                    if kind not in ("wasDerivedFrom", "specializationOf") or parent in seen:
                        continue
                    seen.add(parent)
                    nxt.append(parent)
                    _, a = self.node(parent) or ("entity", {})
                    ref = {"uri": a.get("location"), "version": a.get("version")}
                    if ref["uri"] and ref["version"] and ref["uri"] != location and ref not in out:
                        out.append(ref)
            frontier = nxt
        return out

    def subgraph(self, ids: list[str], depth: int | None, direction: str) -> Rows:
        """Nodes and relations reached from ``ids`` in ``depth`` hops (None: all) back or forth."""
        nodes: dict[str, tuple[str, dict[str, Any]]] = {}
        rels: dict[tuple[str, str, str], dict[str, Any]] = {}
        frontier, seen, hops = list(ids), set(ids), 0
        for nid in ids:
            found = self.node(nid)
            if found is None:
                raise NotFound(f"provenance id {nid!r} is not in {redact_url(self.url)}")
            nodes[nid] = found
        while frontier and (depth is None or hops < depth):
            nxt = []
            for nid in frontier:
                for k, s, o, a in self.neighbours(nid, direction):
                    rels.setdefault((k, s, o), a)
                    other = o if direction == "back" else s
                    if other not in seen:
                        seen.add(other)
                        nxt.append(other)
                        nodes[other] = self.node(other) or ("entity", {})
            frontier, hops = nxt, hops + 1
        return nodes, [(k, s, o, a) for (k, s, o), a in rels.items()]


_OPEN: dict[tuple[str, int], Store] = {}
_OPEN_LOCK = threading.Lock()


def open_store(url: str) -> Store:
    """The store at ``url``, one connection per process; a broken URL or database is one clear error.

    Use it as ``with open_store(url) as store:`` (one thread at a time).
    """
    key = (url, os.getpid())
    with _OPEN_LOCK:
        if key not in _OPEN:
            try:
                _OPEN[key] = Store(url)
            except (sqlite3.Error, OSError) as exc:
                raise ConfigError(f"provenance store {redact_url(url)}: {exc}") from exc
        return _OPEN[key]


def close_all() -> None:
    """Close every store this process opened (the next ``open_store`` connects again)."""
    with _OPEN_LOCK:
        for store in _OPEN.values():
            with store.lock:
                store.close()
        _OPEN.clear()


FAILED: set[str] = set()  # stores this process could not write (warned once each)


def record(act: Any, url: str | None = None) -> bool:
    """Store an activity's rows; a store that cannot be opened or written (read-only, gone, full)
    never fails the work that was recorded: one warning line, then nothing more is sent there by
    this process. True when stored."""
    url = url or store_url()
    if url in FAILED:
        return False
    try:
        with open_store(url) as store:
            store.write(act)
    except Exception as exc:  # any driver's error (sqlite3, psycopg, OSError): recording is best effort
        FAILED.add(url)
        root = exc.__cause__ or exc  # open_store's ConfigError already names the store
        cause = redact_url(" ".join(str(root).split())) or type(root).__name__
        warnings.warn(
            f"provenance store {redact_url(url)}: not recorded ({cause}); set [provenance] url, "
            "or turn recording off with SKYPLUG_PROV=off",
            SkyplugWarning,
            stacklevel=2,
        )
        return False
    return True


def iter_ids(values: tuple[str, ...]) -> Iterator[str]:
    """IDs given as ``sky:ID`` or ``ID``."""
    for v in values:
        yield v.removeprefix("sky:")
