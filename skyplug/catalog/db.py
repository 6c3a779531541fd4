"""The catalogue's API: :class:`Catalog` (``add``, ``query``, ``count``, ``close``), its result and
errors, and :func:`open_catalog` choosing the backend by URL.

SQLite (default, ``sqlite:///catalog.db``: :mod:`skyplug.catalog.sqlite`) or PostgreSQL + pgSphere
(``postgresql://...``: :mod:`skyplug.catalog.postgres`). Both talk SQL through
:mod:`skyplug.sqlbackend`, the project's one SQLite/PostgreSQL design: the writes here (upsert,
parent lookup) are written once with ``?`` placeholders; a backend supplies only what really
differs, its geometry (pgSphere ``spoly`` against an R*Tree of unit vectors), its DDL and the way a
read-only query is bounded by the statement timeout and cancelled. Records are built in
:mod:`skyplug.catalog.records`.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from skyplug.catalog import adql
from skyplug.catalog.model import TAP_SCHEMA_TABLES, Column
from skyplug.catalog.records import make_record, publisher_did, record_values, report
from skyplug.core.errors import SkyplugError
from skyplug.core.logs import redact_url
from skyplug.sqlbackend import SQLBackend, dialect_of, one_line, sqlite_path

if TYPE_CHECKING:
    from skyplug.catalog.postgres import PgCatalog
    from skyplug.catalog.sqlite import SQLiteCatalog

DEFAULT_URL = "sqlite:///catalog.db"
DEFAULT_MAXREC = 10_000
HARD_MAXREC = 1_000_000
DEFAULT_TIMEOUT = 30.0


class CatalogError(SkyplugError):
    """The catalogue cannot be opened, written or queried."""


class QueryTimeout(CatalogError):
    """The query ran longer than the statement timeout."""


class QueryCancelled(CatalogError):
    """The query was stopped on request (a UWS job aborted or deleted)."""


class CatalogUnreachable(CatalogError):
    """The catalogue's database server cannot be reached (wrong host, port, password, down)."""


@dataclass(frozen=True)
class ResultColumn:
    """A result column as a VOTable FIELD."""

    name: str
    datatype: str
    arraysize: str | None = None
    unit: str = ""
    ucd: str = ""
    utype: str = ""
    description: str = ""
    xtype: str | None = None

    @classmethod
    def of(cls, name: str, col: Column) -> ResultColumn:
        return cls(
            name, col.datatype, col.arraysize, col.unit, col.ucd, col.utype, col.description, col.xtype
        )


@dataclass
class Result:
    """Rows of a query; ``overflow`` when MAXREC cut them."""

    columns: list[ResultColumn]
    rows: list[tuple[Any, ...]]
    overflow: bool
    seconds: float = 0.0

    def as_dicts(self) -> list[dict[str, Any]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


# --- the catalogue -------------------------------------------------------------------------


class Catalog(abc.ABC):
    """Base of both backends: the portable writes and the query path; ``db`` talks to the database."""

    dialect = ""  # the ADQL translation's target (sqlglot's name)
    url = ""
    db: SQLBackend
    where = ""  # how errors name the catalogue
    obscore, obscore_radio = "ivoa_obscore", "ivoa_obscore_radio"  # the tables' physical names
    region_mark = "?"  # the placeholder of an s_region value (PostgreSQL casts it to spoly)

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, hard_maxrec: int = HARD_MAXREC) -> None:
        self.timeout = timeout
        self.hard_maxrec = hard_maxrec
        self._lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()  # of writers

    # writing
    def init(self) -> None:
        """Create the tables and indexes and (re)write TAP_SCHEMA; idempotent."""
        try:
            self._init()
        except self.db.error as exc:
            raise CatalogError(f"{self.where}: cannot create the catalogue: {one_line(exc)}") from exc

    def add(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
        """Insert or update records keyed on (skyplug_uri, skyplug_version); report each outcome.

        A derived product's record without ``obs_creator_did`` points at its nearest catalogued
        parent (the objects plugins say it was made from: ``skyplug_parents_of``); observers see
        the records once stored (``skyplug_catalog_added``).
        """
        from skyplug.core import plugins
        from skyplug.core.config import get_config

        hook, config = plugins.get_plugin_manager().hook, get_config()
        recs = [dict(r) for r in records]
        parents = [
            []
            if rec.get("obs_creator_did")
            else [
                ref
                for found in hook.skyplug_parents_of(
                    config=config,
                    uri=str(rec.get("skyplug_uri")),
                    version=str(rec.get("skyplug_version") or ""),
                    checksum=rec.get("skyplug_checksum"),
                )
                for ref in found
            ]
            for rec in recs
        ]
        did_sql = self.db.sql(f"SELECT obs_publisher_did FROM {self.obscore} WHERE {_KEY}")
        out = []
        with self._writer() as cur:
            for rec, refs in zip(recs, parents, strict=True):
                for ref in refs:  # nearest first: the first catalogued one is the parent
                    cur.execute(did_sql, (ref["uri"], ref["version"]))
                    row = cur.fetchone()
                    if row is not None:
                        rec["obs_creator_did"] = row[0]
                        break
                out.append(self._upsert(cur, rec))
        hook.skyplug_catalog_added(config=config, records=recs, url=redact_url(self.url))
        return out

    def _upsert(self, cur: Any, rec: Mapping[str, Any]) -> dict[str, str]:
        """Insert or update one record; report whether it was added, updated or unchanged."""
        main, radio = record_values(rec)
        main["s_region"] = self._region(main["s_region"])
        names, values = list(main), list(main.values())
        key = (main["skyplug_uri"], main["skyplug_version"])
        marks = [self.region_mark if n == "s_region" else "?" for n in names]
        sql = self.db.sql
        cur.execute(sql(f"SELECT 1 FROM {self.obscore} WHERE {_KEY}"), key)
        status = "added"
        if cur.fetchone() is not None:
            same = " AND ".join(f'"{n}" IS NOT DISTINCT FROM {m}' for n, m in zip(names, marks, strict=True))
            cur.execute(sql(f"SELECT 1 FROM {self.obscore} WHERE {_KEY} AND {same}"), [*key, *values])
            status = "unchanged" if cur.fetchone() else "updated"
            if status == "updated":
                sets = ", ".join(f'"{n}" = {m}' for n, m in zip(names, marks, strict=True))
                cur.execute(sql(f"UPDATE {self.obscore} SET {sets} WHERE {_KEY}"), [*values, *key])
        else:
            cur.execute(
                sql(f"INSERT INTO {self.obscore} ({', '.join(names)}) VALUES ({', '.join(marks)})"), values
            )
        if status != "unchanged":
            self._index_position(cur, main)
        if radio is not None:  # replaced whole (as SQLite's INSERT OR REPLACE did: the row goes last)
            cols, did = ", ".join(radio), (radio["obs_publisher_did"],)
            cur.execute(sql(f"DELETE FROM {self.obscore_radio} WHERE obs_publisher_did = ?"), did)
            insert = f"INSERT INTO {self.obscore_radio} ({cols}) VALUES ({', '.join('?' * len(radio))})"
            cur.execute(sql(insert), list(radio.values()))
        return report(main, status)

    def drop_other_versions(self, uri: str, keep: str) -> int:
        """Remove the records of ``uri`` whose version is not ``keep`` (an object that changed is
        catalogued once, under its new version); the number removed."""
        sql, other = self.db.sql, "skyplug_uri = ? AND skyplug_version <> ?"
        with self._writer() as cur:
            cur.execute(sql(f"SELECT obs_publisher_did FROM {self.obscore} WHERE {other}"), (uri, keep))
            dids = [row[0] for row in cur.fetchall()]
            if not dids:
                return 0
            self._unindex_positions(cur, uri, keep)
            for did in dids:
                cur.execute(sql(f"DELETE FROM {self.obscore_radio} WHERE obs_publisher_did = ?"), (did,))
            cur.execute(sql(f"DELETE FROM {self.obscore} WHERE {other}"), (uri, keep))
        return len(dids)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[Any]:
        """A cursor in one write transaction (committed on success); ``_lock`` held around it. The
        tables and TAP_SCHEMA are made once per catalogue object (rewriting them costs ~25 ms)."""
        if not self.__dict__.get("_initialised"):
            self.init()
            self._initialised = True
        conn = self._connect(readonly=False)
        try:
            with self._lock, self.db.transaction(conn):
                yield conn.cursor()
        finally:
            conn.close()

    # reading
    def query(
        self,
        text: str,
        maxrec: int | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        slot: contextlib.AbstractContextManager[Any] | None = None,
    ) -> Result:
        """Run an ADQL query; at most ``maxrec`` rows (default and hard limit apply).

        ``timeout`` never exceeds the catalogue's statement timeout; setting ``cancel`` stops the
        running statement (QueryCancelled); ``slot`` is entered around the database work only, after
        the (bounded, cheap) translation, so refused queries never hold one.
        """
        timeout = self.timeout if timeout is None else min(timeout, self.timeout)
        maxrec = DEFAULT_MAXREC if maxrec is None else maxrec
        if maxrec < 0:
            raise adql.ADQLError("MAXREC must not be negative")
        maxrec = min(maxrec, self.hard_maxrec)
        tr = adql.translate(text, self.dialect, max(maxrec, 1))
        t0 = time.perf_counter()
        with slot or contextlib.nullcontext():
            names, rows = self._run(tr, maxrec + 1, timeout, cancel)
        overflow = len(rows) > maxrec or (maxrec == 0 and bool(rows))
        rows = rows[:maxrec]
        columns = self._columns(tr, names, rows)
        regions = [i for i, c in enumerate(tr.columns or []) if c.region]
        if regions:
            rows = [self._fix_regions(r, regions) for r in rows]
        if self.dialect == "postgres":  # Decimal from ROUND/TRUNCATE, bool from comparisons
            rows = [tuple(_out_value(v) for v in r) for r in rows]
        return Result(columns, rows, overflow, time.perf_counter() - t0)

    def count(self) -> int:
        """Number of records in ivoa.obscore."""
        return int(self.query("SELECT COUNT(*) AS n FROM ivoa.obscore").rows[0][0])

    def close(self) -> None:  # noqa: B027 - SQLite keeps no connection open; PostgreSQL overrides
        """Release connections."""

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # backend hooks
    @abc.abstractmethod
    def _connect(self, readonly: bool) -> Any:
        """A new connection (read-only ones bounded by the statement timeout)."""

    @abc.abstractmethod
    def _init(self) -> None:
        """Create the tables and indexes and (re)write TAP_SCHEMA (the database's own errors escape)."""

    @abc.abstractmethod
    def _run(
        self, tr: adql.Translation, nmax: int, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and at most ``nmax`` rows of a translated query, on a read-only connection."""

    def _region(self, stcs: str | None) -> Any:
        """The stored value of an STC-S s_region."""
        return stcs

    def _index_position(self, cur: Any, main: Mapping[str, Any]) -> None:  # noqa: B027 - optional
        """Index a just written record's position where the database does not do it itself."""

    def _unindex_positions(self, cur: Any, uri: str, keep: str) -> None:  # noqa: B027 - optional
        """Drop the position index entries of ``uri``'s other versions (see drop_other_versions)."""

    def _fix_regions(self, row: tuple[Any, ...], idx: list[int]) -> tuple[Any, ...]:
        return row

    @staticmethod
    def _columns(tr: adql.Translation, names: list[str], rows: list[tuple[Any, ...]]) -> list[ResultColumn]:
        out = []
        metas = tr.columns if tr.columns is not None and len(tr.columns) == len(names) else None
        for i, name in enumerate(names):
            meta = metas[i] if metas else None
            if meta is not None and meta.column is not None:
                out.append(ResultColumn.of(meta.name, meta.column))
                continue
            dtype = _infer([r[i] for r in rows]) or (meta.datatype if meta else None) or "char"
            out.append(ResultColumn(meta.name if meta else name, dtype, "*" if dtype == "char" else None))
        seen: dict[str, int] = {}
        for i, c in enumerate(out):
            k = c.name.lower()
            if k in seen:
                seen[k] += 1
                out[i] = ResultColumn(
                    f"{c.name}_{seen[k]}",
                    c.datatype,
                    c.arraysize,
                    c.unit,
                    c.ucd,
                    c.utype,
                    c.description,
                    c.xtype,
                )
            else:
                seen[k] = 0
        return out


_KEY = "skyplug_uri = ? AND skyplug_version = ?"


def _infer(values: list[Any]) -> str | None:
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool | int):
            return "long"
        if isinstance(v, float | Decimal):
            return "double"
        return "char"
    return None


def _out_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bool):
        return int(v)
    return v


def open_catalog(url: str | None = None, **kw: Any) -> Catalog:
    """Open a catalogue by URL: ``sqlite:///path`` (relative), ``sqlite:////abs``, ``postgresql://...``."""
    url = url or DEFAULT_URL
    dialect = dialect_of(url)
    if dialect == "sqlite":
        path = sqlite_path(url)
        if not path:
            raise CatalogError(f"{url}: no file name")
        from skyplug.catalog.sqlite import SQLiteCatalog

        return SQLiteCatalog(path, **kw)
    if dialect == "postgresql":
        from skyplug.catalog.postgres import PgCatalog

        return PgCatalog(url, **kw)
    raise CatalogError(f"{url}: unsupported catalogue URL (use sqlite:///FILE or postgresql://...)")


def __getattr__(name: str) -> Any:
    """The backends by their old names here (``from skyplug.catalog.db import SQLiteCatalog``)."""
    if name == "SQLiteCatalog":
        from skyplug.catalog.sqlite import SQLiteCatalog

        return SQLiteCatalog
    if name == "PgCatalog":
        from skyplug.catalog.postgres import PgCatalog

        return PgCatalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TAP_SCHEMA_TABLES",
    "Catalog",
    "CatalogError",
    "PgCatalog",
    "QueryCancelled",
    "QueryTimeout",
    "Result",
    "ResultColumn",
    "SQLiteCatalog",
    "make_record",
    "open_catalog",
    "publisher_did",
]
