"""Sync queries on worker processes: ADQL translation, the query and the VOTable off the server's GIL.

One server process holds every connection, the per-client limits and the async jobs; the CPU-bound
part of a sync query (sqlglot translation, reading rows, encoding the result) runs in one of N
processes (``spawn``, each with its own catalogue connection), so N queries use N cores. Errors
come back as (kind, message) and are raised again in the server as the same exception types.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Any

from skyplug.catalog import adql
from skyplug.catalog.db import Catalog, CatalogError, QueryTimeout

_catalog: Catalog | None = None
_ERRORS: dict[str, type[Exception]] = {
    "timeout": QueryTimeout,
    "adql": adql.ADQLError,
    "catalog": CatalogError,
}
WAIT = 600.0  # seconds at most for one answer (the statement timeout ends a query long before)


def _init(url: str, timeout: float, hard_maxrec: int) -> None:
    global _catalog
    from skyplug.catalog.db import open_catalog

    _catalog = open_catalog(url, timeout=timeout, hard_maxrec=hard_maxrec)


def _ready() -> bool:
    return _catalog is not None


def _run(query: str, maxrec: int, mime: str) -> tuple[str, bytes | str]:
    """In a worker: ("ok", body) or (error kind, message)."""
    from skyplug.catalog import votable

    assert _catalog is not None
    try:
        result = _catalog.query(query, maxrec=maxrec)
        return "ok", votable.render(result, mime, query)
    except QueryTimeout as exc:
        return "timeout", str(exc)
    except adql.ADQLError as exc:
        return "adql", str(exc)
    except CatalogError as exc:
        return "catalog", str(exc)


class QueryPool:
    """``n`` worker processes over the catalogue at ``catalog.url``, started (and warm) at once."""

    def __init__(self, catalog: Catalog, n: int) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(
            n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(catalog.url, catalog.timeout, catalog.hard_maxrec),
        )
        for f in [self.pool.submit(_ready) for _ in range(n)]:
            f.result(timeout=120)

    def run(self, query: str, maxrec: int, mime: str) -> bytes:
        """The rendered result of one query, or its error raised as in the server process."""
        kind, value = self.pool.submit(_run, query, maxrec, mime).result(timeout=WAIT)
        if kind == "ok":
            assert isinstance(value, bytes)
            return value
        raise _ERRORS[kind](str(value))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __getstate__(self) -> Any:  # never sent to a worker
        raise TypeError("QueryPool is not picklable")
