"""One way to talk to SQLite or PostgreSQL, shared by the location DB, the provenance store and the
catalogue.

Issue 13 found two designs side by side: the catalogue wrote each statement twice in per-database
subclasses, the location DB wrote its SQL once and translated it. This module generalises the
second, and every SQL user takes it: statements are written once with ``?`` placeholders (and the
standard ``IS NOT DISTINCT FROM``) and translated for the driver; connections come up configured the
same way each time (SQLite with its pragmas, read-only ones with ``mode=ro`` and ``query_only``;
psycopg in autocommit, imported only when a PostgreSQL URL is used); a write transaction is
``BEGIN IMMEDIATE`` on SQLite (concurrent writers queue on the busy timeout instead of deadlocking on
a lock upgrade) and psycopg's ``transaction()`` on PostgreSQL. Callers keep only what really differs
between the two databases: the catalogue's geometry (pgSphere against an R*Tree of unit vectors),
its statement timeouts and cancellation, and the location DB's auto-increment key.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skyplug.core.logs import redact_url

SQLITE, POSTGRESQL = "sqlite", "postgresql"


def dialect_of(url: str) -> str | None:
    """``sqlite`` for ``sqlite:...``, ``postgresql`` for ``postgresql://`` or ``postgres://``."""
    if url.startswith("sqlite:"):
        return SQLITE
    if url.startswith(("postgresql://", "postgres://")):
        return POSTGRESQL
    return None


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:///relative``, ``sqlite:////absolute`` (or ``sqlite:FILE``); may be empty."""
    from urllib.parse import unquote

    path = unquote(url[len("sqlite:") :])
    return path[3:] if path.startswith("///") else path.lstrip("/") if path.startswith("//") else path


def db_url(value: str) -> str:
    """A database URL as users give it: a plain path (``cat.db``) is that SQLite file."""
    import os
    from urllib.parse import quote

    if "://" not in value and dialect_of(value) is None:
        return "sqlite:///" + quote(os.path.abspath(os.path.expanduser(value)))
    return value


def one_line(exc: BaseException) -> str:
    """A driver's message on one line, any password in it redacted."""
    return redact_url(" ".join(str(exc).split())) or type(exc).__name__


class SQLBackend:
    """The database at ``url`` (``sqlite:///FILE`` or ``postgresql://...``): connections, SQL, transactions.

    ``timeout`` is SQLite's busy timeout in seconds; ``pragmas`` run on every SQLite connection
    (``journal_mode = WAL`` only on writable ones); ``setup(conn, readonly)`` runs after them on both
    databases. ``missing_driver`` is raised when psycopg is not installed, ``unreachable(cause)`` when
    the server refuses the connection (else the driver's own errors surface).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        wal: bool = True,
        pragmas: Sequence[str] = (),
        dict_rows: bool = False,
        setup: Callable[[Any, bool], None] | None = None,
        missing_driver: Exception | None = None,
        unreachable: Callable[[str], Exception] | None = None,
    ) -> None:
        dialect = dialect_of(url)
        if dialect is None:
            raise ValueError(f"{redact_url(url)}: use sqlite:///FILE or postgresql://...")
        self.url, self.dialect = url, dialect
        self.path = Path(sqlite_path(url)) if dialect == SQLITE else None
        self.timeout, self.wal, self.pragmas, self.dict_rows = timeout, wal, tuple(pragmas), dict_rows
        self.setup, self.missing_driver, self.unreachable = setup, missing_driver, unreachable
        self.readonly = False  # connections made from now on are read-only (SQLite)
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, Any]] = []  # closed once their thread ended
        self._conns_lock = threading.Lock()
        if dialect == POSTGRESQL and missing_driver is not None:
            self.driver()

    # --- the driver and its errors --------------------------------------------------------
    def driver(self) -> Any:
        """The DB-API module: sqlite3, or psycopg (``missing_driver`` raised when absent)."""
        if self.dialect == SQLITE:
            return sqlite3
        try:
            import psycopg
        except ImportError as exc:
            if self.missing_driver is None:
                raise
            raise self.missing_driver from exc
        return psycopg

    @property
    def error(self) -> type[Exception]:
        """The driver's base error class (DB-API ``Error``)."""
        return self.driver().Error  # type: ignore[no-any-return]

    # --- SQL --------------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        """Portable SQL (``?`` placeholders, ``IS NOT DISTINCT FROM``) in the driver's spelling."""
        if self.dialect == POSTGRESQL:
            return text.replace("?", "%s")
        return text.replace(" IS NOT DISTINCT FROM ", " IS ")

    # --- connections ------------------------------------------------------------------------
    def connect(self, readonly: bool | None = None, timeout: float | None = None) -> Any:
        """A new autocommit connection; read-only when ``readonly`` (default: this backend's mode)."""
        readonly = self.readonly if readonly is None else readonly
        if self.dialect == SQLITE:
            conn = self._sqlite(readonly, self.timeout if timeout is None else timeout)
        else:
            conn = self._postgresql()
        if self.setup is not None:
            self.setup(conn, readonly)
        return conn

    def _sqlite(self, readonly: bool, timeout: float) -> sqlite3.Connection:
        assert self.path is not None
        kw: dict[str, Any] = {"timeout": timeout, "isolation_level": None, "check_same_thread": False}
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, **kw)
            conn.execute("PRAGMA query_only = ON")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, **kw)
            if self.wal:
                conn.execute("PRAGMA journal_mode = WAL")
        for pragma in self.pragmas:
            conn.execute(f"PRAGMA {pragma}")
        if self.dict_rows:
            conn.row_factory = sqlite3.Row
        return conn

    def _postgresql(self) -> Any:
        psycopg = self.driver()
        kw: dict[str, Any] = {"autocommit": True}
        if self.dict_rows:
            from psycopg.rows import dict_row

            kw["row_factory"] = dict_row
        try:
            return psycopg.connect(self.url, **kw)
        except psycopg.Error as exc:
            if self.unreachable is None:
                raise
            raise self.unreachable(one_line(exc)) from None

    def conn(self) -> Any:
        """This thread's connection (made on first use; those of ended threads are closed)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
            with self._conns_lock:
                for thread, old in [c for c in self._conns if not c[0].is_alive()]:
                    old.close()
                    self._conns.remove((thread, old))
                self._conns.append((threading.current_thread(), conn))
        return conn

    def close(self) -> None:
        """Close every connection :meth:`conn` made (of every thread)."""
        with self._conns_lock:
            for _, conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    # --- statements and transactions ------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement on this thread's connection; the number of rows it changed."""
        return int(self.conn().execute(self.sql(sql), tuple(params)).rowcount)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one query on this thread's connection."""
        return list(self.conn().execute(self.sql(sql), tuple(params)).fetchall())

    @contextmanager
    def transaction(self, conn: Any = None, immediate: bool = True) -> Iterator[Any]:
        """A write transaction on ``conn`` (default: this thread's); nested ones join the outer one.

        ``immediate=False`` takes SQLite's write lock only at the first write, so statements that
        turn out to write nothing (``CREATE TABLE IF NOT EXISTS``) also run on a read-only file.
        """
        conn = self.conn() if conn is None else conn
        if self.dialect == POSTGRESQL:
            with conn.transaction():
                yield conn
            return
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
