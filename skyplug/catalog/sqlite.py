"""The catalogue in one SQLite file: the ADQL functions SQLite lacks, and cones through an R*Tree.

SQLite knows no spherical geometry: geometry values travel as STC-S text between Python functions
registered on every connection (:mod:`skyplug.catalog.sphere`), and positions are kept as unit
vectors in an R*Tree (``ivoa_obscore_pt``) that the ADQL translation uses to prefilter cones. A
query is bounded by a progress handler that stops it at the statement timeout or on cancel.
Everything else (connections, upserts, transactions) is the shared :mod:`skyplug.sqlbackend` way.
"""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from skyplug.catalog import adql, sphere
from skyplug.catalog.db import Catalog, CatalogError, QueryCancelled, QueryTimeout
from skyplug.catalog.model import OBSCORE, OBSCORE_RADIO, TABLES, physical_name, tap_schema_rows
from skyplug.sqlbackend import SQLBackend

_TYPES = {"char": "TEXT", "int": "INTEGER", "long": "INTEGER", "double": "REAL"}
_POINT_ROW = "INSERT INTO ivoa_obscore_pt VALUES (?, ?, ?, ?, ?, ?, ?)"


def register_functions(conn: sqlite3.Connection) -> None:
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
        self.where = str(self.path)
        self.db = SQLBackend(self.url, timeout=30, setup=lambda conn, _: register_functions(conn))
        self._lock = threading.Lock()

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly and not self.path.exists():
            raise CatalogError(f"{self.path}: no catalogue here (run 'skyplug catalog add' first)")
        return self.db.connect(readonly, timeout=5.0 if readonly else None)  # type: ignore[no-any-return]

    def _init(self) -> None:
        conn = self._connect(readonly=False)
        try:
            with self.db.transaction(conn):
                for table in TABLES:
                    cols = ", ".join(f'"{c.name}" {_TYPES[c.datatype]}' for c in table.columns)
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

    def _index_position(self, cur: sqlite3.Cursor, main: Mapping[str, Any]) -> None:
        """The record's unit vector as a point box in the R*Tree (none without s_ra/s_dec)."""
        cur.execute(
            "SELECT _rowid FROM ivoa_obscore WHERE skyplug_uri = ? AND skyplug_version = ?",
            (main["skyplug_uri"], main["skyplug_version"]),
        )
        rowid = cur.fetchone()[0]
        cur.execute("DELETE FROM ivoa_obscore_pt WHERE id = ?", (rowid,))
        if isinstance(main["s_ra"], float) and isinstance(main["s_dec"], int | float):
            v = sphere.vec(main["s_ra"], main["s_dec"])
            cur.execute(_POINT_ROW, (rowid, v[0], v[0], v[1], v[1], v[2], v[2]))

    def _unindex_positions(self, cur: sqlite3.Cursor, uri: str, keep: str) -> None:
        cur.execute(
            "DELETE FROM ivoa_obscore_pt WHERE id IN "
            "(SELECT _rowid FROM ivoa_obscore WHERE skyplug_uri = ? AND skyplug_version <> ?)",
            (uri, keep),
        )

    def bulk_load(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Fast insert of many ready records (benchmarks); no upsert check."""
        self.init()
        conn = self._connect(readonly=False)
        names = [c.name for c in OBSCORE.columns]
        n = 0
        try:
            with self.db.transaction(conn):
                cur = conn.cursor()
                for rec in rows:
                    cur.execute(
                        f"INSERT INTO ivoa_obscore ({', '.join(names)}) VALUES "
                        f"({', '.join('?' * len(names))})",
                        [rec.get(k) for k in names],
                    )
                    v = sphere.vec(rec["s_ra"], rec["s_dec"])
                    cur.execute(_POINT_ROW, (cur.lastrowid, v[0], v[0], v[1], v[1], v[2], v[2]))
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
