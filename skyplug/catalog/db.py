"""Catalogue storage: SQLite (default, ``sqlite:///catalog.db``) or PostgreSQL + pgSphere
(``postgresql://...``) behind one API: :func:`open_catalog`, ``add``, ``query``, ``close``.

Queries run on read-only connections with a statement timeout; cone searches use an R*Tree of unit
vectors on SQLite and a pgSphere GiST index on ``spoint(radians(s_ra), radians(s_dec))`` on PostgreSQL.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import math
import queue
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from skyplug.catalog import adql, sphere
from skyplug.catalog.model import (
    OBSCORE,
    OBSCORE_RADIO,
    RADIO_FIELDS,
    TABLES,
    TAP_SCHEMA_TABLES,
    Column,
    physical_name,
    tap_schema_rows,
)
from skyplug.core.errors import SkyplugError
from skyplug.core.logs import redact_url

DEFAULT_URL = "sqlite:///catalog.db"
DEFAULT_MAXREC = 10_000
HARD_MAXREC = 1_000_000
DEFAULT_TIMEOUT = 30.0
PUBLISHER = "ivo://skyplug.local/catalog"

_SQLITE_TYPES = {"char": "TEXT", "int": "INTEGER", "long": "INTEGER", "double": "REAL"}
_PG_TYPES = {"char": "TEXT", "int": "INTEGER", "long": "BIGINT", "double": "DOUBLE PRECISION"}


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


# --- records -------------------------------------------------------------------------------


def publisher_did(uri: str, version: str) -> str:
    """A stable publisher DID for one version of an object."""
    digest = hashlib.sha256(f"{uri}\x00{version}".encode()).hexdigest()[:20]
    return f"{PUBLISHER}?{digest}"


def _plain(value: Any) -> Any:
    """numpy scalars, Decimals and NaN to plain Python values (NaN -> None)."""
    if value is None or isinstance(value, str | bool):
        return int(value) if isinstance(value, bool) else value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def region_stcs(value: Any, fields: Mapping[str, Any]) -> str | None:
    """s_region as an STC-S polygon: from STC-S text, a flat coordinate list, or s_ra/s_dec/s_fov."""
    if isinstance(value, str) and value.strip():
        kind, nums = sphere.parse(value)
        if kind == "POLYGON":
            return sphere.polygon(*nums)
        if kind == "CIRCLE":
            return _circle_polygon(*nums)
        raise CatalogError(f"s_region must be a polygon or a circle, not {value!r}")
    if isinstance(value, list | tuple) and value:
        return sphere.polygon(*[float(v) for v in value])
    ra, dec, fov = fields.get("s_ra"), fields.get("s_dec"), fields.get("s_fov")
    if all(isinstance(v, int | float) for v in (ra, dec, fov)) and fov > 0:  # type: ignore[operator]
        return _circle_polygon(float(ra), float(dec), float(fov) / 2)  # type: ignore[arg-type]
    return None


def _circle_polygon(ra: float, dec: float, r: float, n: int = 16) -> str:
    """An n-gon enclosing a circle (vertices slightly outside so the circle is covered)."""
    c = sphere.vec(ra, dec)
    north = (0.0, 0.0, 1.0) if abs(dec) < 89.9 else (1.0, 0.0, 0.0)
    e = _unit(_cross(north, c))
    nvec = _cross(c, e)
    rr = math.radians(r) / math.cos(math.pi / n)
    coords: list[float] = []
    for k in range(n):
        t = 2 * math.pi * k / n
        d = tuple(math.cos(t) * e[i] + math.sin(t) * nvec[i] for i in range(3))
        p = tuple(math.cos(rr) * c[i] + math.sin(rr) * d[i] for i in range(3))
        coords += [
            math.degrees(math.atan2(p[1], p[0])) % 360.0,
            math.degrees(math.asin(max(-1, min(1, p[2])))),
        ]
    return sphere.polygon(*coords)


def _cross(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _unit(a: tuple[float, float, float]) -> tuple[float, float, float]:
    n = math.sqrt(sum(x * x for x in a))
    return (a[0] / n, a[1] / n, a[2] / n)


def make_record(
    fields: Mapping[str, Any],
    uri: str,
    version: str = "",
    fmt: str = "",
    checksum: str | None = None,
    sites: Iterable[str] = (),
) -> dict[str, Any]:
    """One catalogue record (obscore + radio fields) from describe() output and skyplug's facts."""
    rec = {k: _plain(v) for k, v in fields.items()}
    rec.update(
        skyplug_uri=uri,
        skyplug_version=version or "",
        skyplug_format=fmt or rec.get("skyplug_format"),
        skyplug_checksum=checksum or rec.get("skyplug_checksum"),
        skyplug_sites=",".join(sites) or rec.get("skyplug_sites"),
    )
    rec.setdefault("obs_publisher_did", publisher_did(uri, version or ""))
    rec.setdefault("obs_id", Path(urlsplit(uri).path).name or uri)
    rec.setdefault("obs_collection", "skyplug")
    rec.setdefault("access_url", uri)
    rec.setdefault("calib_level", 0)
    rec.setdefault("dataproduct_type", None)
    rec["s_region"] = region_stcs(rec.get("s_region"), rec)
    if isinstance(rec.get("s_ra"), int | float):
        rec["s_ra"] = float(rec["s_ra"]) % 360.0
    return rec


# --- the catalogue -------------------------------------------------------------------------


def _report(main: Mapping[str, Any], status: str) -> dict[str, str]:
    """What ``add`` says of one record: its URI, version, publisher DID and what happened."""
    return {
        "uri": main["skyplug_uri"],
        "version": main["skyplug_version"] or "",
        "obs_publisher_did": main["obs_publisher_did"],
        "status": status,
    }


class Catalog(abc.ABC):
    """Base of both backends."""

    dialect = ""
    url = ""
    _DID_SQL = "SELECT obs_publisher_did FROM ivoa_obscore WHERE skyplug_uri = ? AND skyplug_version = ?"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, hard_maxrec: int = HARD_MAXREC) -> None:
        self.timeout = timeout
        self.hard_maxrec = hard_maxrec

    # writing
    @abc.abstractmethod
    def init(self) -> None:
        """Create the tables and indexes and (re)write TAP_SCHEMA; idempotent."""

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
        out = []
        with self._writer() as cur:
            for rec, refs in zip(recs, parents, strict=True):
                for ref in refs:  # nearest first: the first catalogued one is the parent
                    cur.execute(self._DID_SQL, (ref["uri"], ref["version"]))
                    row = cur.fetchone()
                    if row is not None:
                        rec["obs_creator_did"] = row[0]
                        break
                out.append(self._upsert(cur, rec))
        hook.skyplug_catalog_added(config=config, records=recs, url=redact_url(self.url))
        return out

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
    def _writer(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor in one write transaction (committed on success)."""

    @abc.abstractmethod
    def _run(
        self, tr: adql.Translation, nmax: int, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and at most ``nmax`` rows of a translated query, on a read-only connection."""

    @abc.abstractmethod
    def _upsert(self, cur: Any, rec: Mapping[str, Any]) -> dict[str, str]:
        """Insert or update one record; report its status."""

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

    def _record_values(self, rec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        main = {c.name: rec.get(c.name) for c in OBSCORE.columns}
        radio = None
        if any(rec.get(k) is not None for k in RADIO_FIELDS):
            radio = {c.name: rec.get(c.name) for c in OBSCORE_RADIO.columns}
        return main, radio


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


# --- SQLite --------------------------------------------------------------------------------


def _register_functions(conn: sqlite3.Connection) -> None:
    """ADQL geometry and math functions SQLite lacks."""
    det = {"deterministic": True}

    def guard(fn: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            if any(a is None for a in args):
                return None
            try:
                return fn(*args)
            except (ValueError, ZeroDivisionError, OverflowError):
                return None

        return wrapped

    funcs: dict[str, tuple[int, Any]] = {
        "sky_point": (2, sphere.point),
        "sky_circle": (3, sphere.circle),
        "sky_box": (4, sphere.box),
        "sky_polygon": (-1, sphere.polygon),
        "sky_contains": (2, sphere.contains),
        "sky_intersects": (2, sphere.intersects),
        "sky_area": (1, sphere.area),
        "sky_distance": (2, lambda a, b: sphere.distance(*sphere.coords(a), *sphere.coords(b))),
        "sky_distance4": (4, sphere.distance),
        "sky_circle_p": (2, lambda p, r: sphere.circle(*sphere.coords(p), r)),
        "sky_coord1": (1, lambda p: sphere.coords(p)[0]),
        "sky_coord2": (1, lambda p: sphere.coords(p)[1]),
        "adql_log10": (1, math.log10),
        "adql_mod": (2, math.fmod),
        "adql_truncate": (-1, lambda x, n=0: math.trunc(x * 10**n) / 10**n),
    }
    for name, (n, fn) in funcs.items():
        conn.create_function(name, n, guard(fn), **det)
    conn.create_function("adql_rand", 0, random.random)
    have = {r[0] for r in conn.execute("SELECT name FROM pragma_function_list")}
    for name in (
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "exp",
        "ln",
        "sqrt",
        "floor",
        "ceil",
        "degrees",
        "radians",
    ):
        if name not in have:
            conn.create_function(name, 1, guard(getattr(math, {"ln": "log"}.get(name, name))), **det)
    if "cot" not in have:
        conn.create_function("cot", 1, guard(lambda x: 1 / math.tan(x)), **det)
    for name, n, fn in (
        ("atan2", 2, math.atan2),
        ("power", 2, math.pow),
        ("pi", 0, lambda: math.pi),
        ("log", 2, lambda b, x: math.log(x, b)),
    ):
        if name not in have:
            conn.create_function(name, n, guard(fn) if n else fn, **det)


class SQLiteCatalog(Catalog):
    """The catalogue in one SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.Lock()

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly:
            if not self.path.exists():
                raise CatalogError(f"{self.path}: no catalogue here (run 'skyplug catalog add' first)")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
        _register_functions(conn)
        return conn

    def init(self) -> None:
        try:
            self._init()
        except sqlite3.Error as exc:
            raise CatalogError(f"{self.path}: cannot create the catalogue: {exc}") from exc

    def _init(self) -> None:
        conn = self._connect(readonly=False)
        try:
            with conn:
                for table in TABLES:
                    cols = ", ".join(f'"{c.name}" {_SQLITE_TYPES[c.datatype]}' for c in table.columns)
                    extra = ""
                    if table is OBSCORE:
                        cols = "_rowid INTEGER PRIMARY KEY, " + cols
                        extra = ", UNIQUE (obs_publisher_did), UNIQUE (skyplug_uri, skyplug_version)"
                    elif table is OBSCORE_RADIO:
                        extra = ", PRIMARY KEY (obs_publisher_did)"
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {physical_name(table)} ({cols}{extra})")
                conn.execute(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS ivoa_obscore_pt USING rtree(id, x0, x1, y0, y1, "
                    "z0, z1)"
                )
                for col in ("t_min", "t_max", "em_min", "em_max", "obs_id", "s_ra", "s_dec"):
                    conn.execute(f"CREATE INDEX IF NOT EXISTS ivoa_obscore_{col} ON ivoa_obscore ({col})")
                for table, rows in tap_schema_rows().items():
                    name = physical_name(table)
                    conn.execute(f"DELETE FROM {name}")
                    marks = ", ".join("?" * len(rows[0])) if rows else ""
                    if rows:
                        conn.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
        finally:
            conn.close()

    @contextlib.contextmanager
    def _writer(self) -> Iterator[sqlite3.Cursor]:
        self.init()
        conn = self._connect(readonly=False)
        try:
            with self._lock, conn:
                yield conn.cursor()
        finally:
            conn.close()

    def _upsert(self, cur: sqlite3.Cursor, rec: Mapping[str, Any]) -> dict[str, str]:
        main, radio = self._record_values(rec)
        row = cur.execute(
            "SELECT * FROM ivoa_obscore WHERE skyplug_uri = ? AND skyplug_version = ?",
            (main["skyplug_uri"], main["skyplug_version"]),
        ).fetchone()
        names = list(main)
        status = "added"
        if row is not None:
            old = dict(zip([d[0] for d in cur.description], row, strict=True))
            rowid = old.pop("_rowid")
            if old == main:
                status = "unchanged"
            else:
                status = "updated"
                cur.execute(
                    f"UPDATE ivoa_obscore SET {', '.join(f'{n} = ?' for n in names)} WHERE _rowid = ?",
                    [*main.values(), rowid],
                )
        else:
            cur.execute(
                f"INSERT INTO ivoa_obscore ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                list(main.values()),
            )
            rowid = cur.lastrowid
        if status != "unchanged":
            cur.execute("DELETE FROM ivoa_obscore_pt WHERE id = ?", (rowid,))
            if isinstance(main["s_ra"], float) and isinstance(main["s_dec"], int | float):
                v = sphere.vec(main["s_ra"], main["s_dec"])
                cur.execute(
                    "INSERT INTO ivoa_obscore_pt VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rowid, v[0], v[0], v[1], v[1], v[2], v[2]),
                )
        if radio is not None:
            cols = list(radio)
            cur.execute(
                f"INSERT OR REPLACE INTO ivoa_obscore_radio ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})",
                list(radio.values()),
            )
        return _report(main, status)

    def bulk_load(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Fast insert of many ready records (benchmarks); no upsert check."""
        self.init()
        conn = self._connect(readonly=False)
        names = [c.name for c in OBSCORE.columns]
        n = 0
        try:
            with conn:
                cur = conn.cursor()
                for rec in rows:
                    cur.execute(
                        f"INSERT INTO ivoa_obscore ({', '.join(names)}) VALUES "
                        f"({', '.join('?' * len(names))})",
                        [rec.get(k) for k in names],
                    )
                    v = sphere.vec(rec["s_ra"], rec["s_dec"])
                    cur.execute(
                        "INSERT INTO ivoa_obscore_pt VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (cur.lastrowid, v[0], v[0], v[1], v[1], v[2], v[2]),
                    )
                    n += 1
            conn.execute("ANALYZE")
        finally:
            conn.close()
        return n

    def _run(
        self, tr: adql.Translation, nmax: int, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        conn = self._connect(readonly=True)
        deadline = time.monotonic() + timeout
        stop = cancel or threading.Event()
        conn.set_progress_handler(lambda: int(stop.is_set() or time.monotonic() > deadline), 20_000)
        try:
            cur = conn.execute(tr.sql, tr.params)
            rows = cur.fetchmany(nmax)
            names = [d[0] for d in cur.description or ()]
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                if stop.is_set():
                    raise QueryCancelled("query aborted") from None
                raise QueryTimeout(f"query exceeded the {timeout:g} s statement timeout") from None
            raise adql.ADQLError(f"query failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise adql.ADQLError(f"query failed: {exc}") from exc
        finally:
            conn.close()
        return names, rows


# --- PostgreSQL ----------------------------------------------------------------------------

_PG_POLY = re.compile(r"\(\s*([-+0-9.eE]+)d\s*,\s*([-+0-9.eE]+)d\s*\)")


def _pg_spoly(stcs: str | None) -> str | None:
    if stcs is None:
        return None
    _, nums = sphere.parse(stcs)
    return "{" + ",".join(f"({nums[i]!r}d,{nums[i + 1]!r}d)" for i in range(0, len(nums), 2)) + "}"


class PgCatalog(Catalog):
    """The catalogue in PostgreSQL with pgSphere (schemas ivoa and tap_schema)."""

    dialect = "postgres"
    _DID_SQL = "SELECT obs_publisher_did FROM ivoa.obscore WHERE skyplug_uri = %s AND skyplug_version = %s"

    def __init__(self, url: str, pool_size: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise CatalogError("PostgreSQL catalogues need psycopg (pip install 'psycopg[binary]')") from exc
        self.url = url
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=pool_size)

    def _connect(self, readonly: bool) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(self.url, autocommit=False)
        except psycopg.Error as exc:
            raise CatalogUnreachable(f"{redact_url(self.url)}: cannot connect: {_one_line(exc)}") from None
        with conn.cursor() as cur:
            cur.execute("SELECT set_sphere_output('DEG')")
            if readonly:
                cur.execute("SET default_transaction_read_only = on")
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, false)", (str(int(self.timeout * 1000)),)
                )
        conn.commit()
        if readonly:
            conn.read_only = True
        return conn

    def init(self) -> None:
        import psycopg

        try:
            self._init()
        except psycopg.Error as exc:
            raise CatalogError(
                f"{redact_url(self.url)}: cannot create the catalogue: {_one_line(exc)}"
            ) from exc

    def _init(self) -> None:
        conn = self._connect(readonly=False)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
                cur.execute("CREATE SCHEMA IF NOT EXISTS ivoa")
                cur.execute("CREATE SCHEMA IF NOT EXISTS tap_schema")
                for table in TABLES:
                    defs = []
                    for c in table.columns:
                        typ = "spoly" if table is OBSCORE and c.name == "s_region" else _PG_TYPES[c.datatype]
                        defs.append(f'"{c.name}" {typ}')
                    if table is OBSCORE:
                        defs.append("UNIQUE (obs_publisher_did)")
                        defs.append("UNIQUE (skyplug_uri, skyplug_version)")
                    elif table is OBSCORE_RADIO:
                        defs.append("PRIMARY KEY (obs_publisher_did)")
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {table.name.lower()} ({', '.join(defs)})")
                cur.execute(
                    "CREATE INDEX IF NOT EXISTS obscore_spoint ON ivoa.obscore USING gist "
                    "(spoint(radians(s_ra), radians(s_dec)))"
                )
                cur.execute("CREATE INDEX IF NOT EXISTS obscore_region ON ivoa.obscore USING gist (s_region)")
                for col in ("t_min", "t_max", "em_min", "em_max", "obs_id"):
                    cur.execute(f"CREATE INDEX IF NOT EXISTS obscore_{col} ON ivoa.obscore ({col})")
                for table, rows in tap_schema_rows().items():
                    cur.execute(f"DELETE FROM {table.lower()}")
                    if rows:
                        marks = ", ".join(["%s"] * len(rows[0]))
                        cur.executemany(f"INSERT INTO {table.lower()} VALUES ({marks})", rows)
            conn.commit()
        finally:
            conn.close()

    @contextlib.contextmanager
    def _writer(self) -> Iterator[Any]:
        self.init()
        conn = self._connect(readonly=False)
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _upsert(self, cur: Any, rec: Mapping[str, Any]) -> dict[str, str]:
        main, radio = self._record_values(rec)
        main["s_region"] = _pg_spoly(main["s_region"])
        names = list(main)
        cur.execute(
            "SELECT obs_publisher_did FROM ivoa.obscore WHERE skyplug_uri = %s AND skyplug_version = %s",
            (main["skyplug_uri"], main["skyplug_version"]),
        )
        found = cur.fetchone()
        status = "added"
        if found:
            compare = " AND ".join(
                f'"{n}" IS NOT DISTINCT FROM %s' + ("::spoly" if n == "s_region" else "") for n in names
            )
            cur.execute(f"SELECT 1 FROM ivoa.obscore WHERE {compare}", list(main.values()))
            status = "unchanged" if cur.fetchone() else "updated"
            if status == "updated":
                sets = ", ".join(f'"{n}" = %s' for n in names)
                cur.execute(
                    f"UPDATE ivoa.obscore SET {sets} WHERE skyplug_uri = %s AND skyplug_version = %s",
                    [*main.values(), main["skyplug_uri"], main["skyplug_version"]],
                )
        else:
            cur.execute(
                f"INSERT INTO ivoa.obscore ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                list(main.values()),
            )
        if radio is not None:
            cols = list(radio)
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "obs_publisher_did")
            cur.execute(
                f"INSERT INTO ivoa.obscore_radio ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
                f" ON CONFLICT (obs_publisher_did) DO UPDATE SET {updates}",
                list(radio.values()),
            )
        return _report(main, status)

    def bulk_load(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Fast COPY of many ready records (benchmarks); no upsert check."""
        self.init()
        conn = self._connect(readonly=False)
        names = [c.name for c in OBSCORE.columns]
        n = 0
        try:
            with conn.cursor() as cur, cur.copy(f"COPY ivoa.obscore ({', '.join(names)}) FROM STDIN") as cp:
                for rec in rows:
                    vals = [rec.get(k) for k in names]
                    vals[names.index("s_region")] = _pg_spoly(rec.get("s_region"))
                    cp.write_row(vals)
                    n += 1
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE ivoa.obscore")
        finally:
            conn.close()
        return n

    def _run(
        self, tr: adql.Translation, nmax: int, timeout: float, cancel: threading.Event | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        import psycopg

        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._connect(readonly=True)
        ok = False
        done = threading.Event()
        if cancel is not None:
            threading.Thread(target=_cancel_on, args=(conn, cancel, done), daemon=True).start()
        try:
            with conn.cursor() as cur:
                if timeout != self.timeout:
                    cur.execute(
                        "SELECT set_config('statement_timeout', %s, true)", (str(int(timeout * 1000)),)
                    )
                cur.execute(tr.sql, tr.params)
                rows = cur.fetchmany(nmax)
                names = [d.name for d in cur.description or ()]
            conn.rollback()
            ok = True
        except psycopg.errors.QueryCanceled:
            conn.rollback()
            ok = True
            if cancel is not None and cancel.is_set():
                raise QueryCancelled("query aborted") from None
            raise QueryTimeout(f"query exceeded the {timeout:g} s statement timeout") from None
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
                ok = True
            raise adql.ADQLError(f"query failed: {str(exc).splitlines()[0]}") from exc
        finally:
            done.set()
            if ok:
                try:
                    self._pool.put_nowait(conn)
                except queue.Full:
                    conn.close()
            else:
                conn.close()
        return names, rows

    def _fix_regions(self, row: tuple[Any, ...], idx: list[int]) -> tuple[Any, ...]:
        out = list(row)
        for i in idx:
            if isinstance(out[i], str):
                nums = [float(x) for pair in _PG_POLY.findall(out[i]) for x in pair]
                out[i] = sphere.polygon(*nums) if len(nums) >= 6 else None
        return tuple(out)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return


def _cancel_on(conn: Any, cancel: threading.Event, done: threading.Event) -> None:
    """Cancel ``conn``'s running statement (the server's pg_cancel_backend) once ``cancel`` is set."""
    while not done.is_set():
        if cancel.wait(0.05):
            if not done.is_set():
                with contextlib.suppress(Exception):
                    getattr(conn, "cancel_safe", conn.cancel)()
            return


def _one_line(exc: BaseException) -> str:
    """A driver's message on one line, any password in it redacted."""
    return redact_url(" ".join(str(exc).split())) or type(exc).__name__


def open_catalog(url: str | None = None, **kw: Any) -> Catalog:
    """Open a catalogue by URL: ``sqlite:///path`` (relative), ``sqlite:////abs``, ``postgresql://...``."""
    url = url or DEFAULT_URL
    if url.startswith("sqlite:"):
        path = unquote(url[len("sqlite:") :])
        path = path[3:] if path.startswith("///") else path.lstrip("/") if path.startswith("//") else path
        if not path:
            raise CatalogError(f"{url}: no file name")
        return SQLiteCatalog(path, **kw)
    if url.startswith(("postgresql://", "postgres://")):
        return PgCatalog(url, **kw)
    raise CatalogError(f"{url}: unsupported catalogue URL (use sqlite:///FILE or postgresql://...)")


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
]
