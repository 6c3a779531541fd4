"""The catalogue in PostgreSQL with pgSphere (schemas ``ivoa`` and ``tap_schema``).

What differs from SQLite, and only that, lives here: ``s_region`` is a pgSphere ``spoly`` (GiST
indexes on it and on ``spoint(radians(s_ra), radians(s_dec))`` serve cones and footprints, so no
side table is kept), read-only queries run on pooled connections bounded by the server's
``statement_timeout`` and are cancelled with ``pg_cancel_backend``, and bulk loads use COPY.
Connections, upserts and transactions are the shared :mod:`skyplug.sqlbackend` way.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from skyplug.catalog import adql, sphere
from skyplug.catalog.db import Catalog, CatalogError, CatalogUnreachable, QueryCancelled, QueryTimeout
from skyplug.catalog.model import OBSCORE, OBSCORE_RADIO, TABLES, tap_schema_rows
from skyplug.core.logs import redact_url
from skyplug.sqlbackend import SQLBackend

_TYPES = {"char": "TEXT", "int": "INTEGER", "long": "BIGINT", "double": "DOUBLE PRECISION"}
_PG_POLY = re.compile(r"\(\s*([-+0-9.eE]+)d\s*,\s*([-+0-9.eE]+)d\s*\)")


class PgCatalog(Catalog):
    """The catalogue in PostgreSQL with pgSphere (schemas ivoa and tap_schema)."""

    dialect = "postgres"
    obscore, obscore_radio = "ivoa.obscore", "ivoa.obscore_radio"
    region_mark = "?::spoly"

    def __init__(self, url: str, pool_size: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        self.url, self.where = url, redact_url(url)
        self.db = SQLBackend(
            url,
            setup=self._setup,
            missing_driver=CatalogError("PostgreSQL catalogues need psycopg (pip install 'psycopg[binary]')"),
            unreachable=lambda cause: CatalogUnreachable(f"{redact_url(url)}: cannot connect: {cause}"),
        )
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=pool_size)

    def _setup(self, conn: Any, readonly: bool) -> None:
        """Degrees out of pgSphere; read-only sessions with the statement timeout."""
        with conn.cursor() as cur:
            cur.execute("SELECT set_sphere_output('DEG')")
            if readonly:
                cur.execute("SET default_transaction_read_only = on")
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, false)", (str(int(self.timeout * 1000)),)
                )
        if readonly:
            conn.read_only = True

    def _connect(self, readonly: bool) -> Any:
        return self.db.connect(readonly)

    def _init(self) -> None:
        conn = self._connect(readonly=False)
        try:
            with self.db.transaction(conn), conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
                cur.execute("CREATE SCHEMA IF NOT EXISTS ivoa")
                cur.execute("CREATE SCHEMA IF NOT EXISTS tap_schema")
                for table in TABLES:
                    defs = []
                    for c in table.columns:
                        typ = "spoly" if table is OBSCORE and c.name == "s_region" else _TYPES[c.datatype]
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
        finally:
            conn.close()

    def _region(self, stcs: str | None) -> str | None:
        """STC-S polygon -> pgSphere spoly text."""
        return None if stcs is None else adql.spoly_text(sphere.parse(stcs)[1])

    def bulk_load(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Fast COPY of many ready records (benchmarks); no upsert check."""
        self.init()
        conn = self._connect(readonly=False)
        names = [c.name for c in OBSCORE.columns]
        n = 0
        try:
            with (
                self.db.transaction(conn),
                conn.cursor() as cur,
                cur.copy(f"COPY ivoa.obscore ({', '.join(names)}) FROM STDIN") as cp,
            ):
                for rec in rows:
                    vals = [rec.get(k) for k in names]
                    vals[names.index("s_region")] = self._region(rec.get("s_region"))
                    cp.write_row(vals)
                    n += 1
            # rows near on the sky near on disk (as DaCHS does): a 5-degree COUNT reads ~3000 heap
            # blocks unclustered, ~100 ms from a cold cache
            conn.execute("CLUSTER ivoa.obscore USING obscore_spoint")
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
        done = threading.Event()
        if cancel is not None:
            threading.Thread(target=_cancel_on, args=(conn, cancel, done), daemon=True).start()
        try:  # in a transaction rolled back at the end: the timeout below holds for it only
            with conn.transaction(force_rollback=True), conn.cursor() as cur:
                if timeout != self.timeout:
                    cur.execute(
                        "SELECT set_config('statement_timeout', %s, true)", (str(int(timeout * 1000)),)
                    )
                cur.execute(tr.sql, tr.params)
                rows = cur.fetchmany(nmax)
                names = [d.name for d in cur.description or ()]
        except psycopg.errors.QueryCanceled:
            if cancel is not None and cancel.is_set():
                raise QueryCancelled("query aborted") from None
            raise QueryTimeout(f"query exceeded the {timeout:g} s statement timeout") from None
        except psycopg.Error as exc:
            raise adql.ADQLError(f"query failed: {str(exc).splitlines()[0]}") from exc
        finally:
            done.set()
            self._give_back(conn)
        return names, rows

    def _give_back(self, conn: Any) -> None:
        """Back to the pool when it is idle and sound (else closed)."""
        import psycopg

        if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        try:
            self._pool.put_nowait(conn)
        except queue.Full:
            conn.close()

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
