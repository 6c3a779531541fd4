"""The TAP 1.1 protocol, apart from HTTP: parameters, sync queries, results and errors as VOTable.

The job store (uws.py), the VOSI documents (vosi.py) and the HTTP server (server.py) build on this
module; it knows nothing of sockets, so the same rules answer every server and every test.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from skyplug.catalog import adql, votable
from skyplug.catalog.db import Catalog, CatalogError, QueryTimeout
from skyplug.core.errors import SkyplugError

if TYPE_CHECKING:
    from skyplug.catalog.workers import QueryPool

# Abuse bounds (docs/security.md); the HTTP ones are in server.py, the job ones in uws.py.
MAX_PARAM_BYTES = adql.MAX_QUERY_BYTES  # of any one parameter value (QUERY, UPLOAD, ...)
MAX_QUERIES_PER_CLIENT = 4  # running at once, sync and async together
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
log = logging.getLogger("skyplug.catalog.tap")


class TapError(SkyplugError):
    """A request the service refuses; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reply:
    """What the service answers: an HTTP status, a body, its MIME type and extra headers."""

    status: int
    body: bytes | str
    mime: str
    headers: dict[str, str] = field(default_factory=dict)


def redirect(url: str) -> Reply:
    """A 303 to ``url`` (UWS: after every job change)."""
    return Reply(303, "", "text/plain", {"Location": url})


def error_reply(exc: BaseException, where: str = "") -> Reply:
    """Any failure as a VOTable error: a TapError keeps its status, everything else is a 500."""
    if isinstance(exc, TapError):
        return Reply(exc.status, votable.error_votable(str(exc)), votable.VOTABLE_MIME)
    if isinstance(exc, ValueError | OSError | SkyplugError):
        return Reply(500, votable.error_votable(f"internal error: {exc}"), votable.VOTABLE_MIME)
    log.error("TAP request %s failed: %s: %s", where, type(exc).__name__, exc)
    return Reply(500, votable.error_votable(f"internal error ({type(exc).__name__})"), votable.VOTABLE_MIME)


def parse_params(query: str, body: bytes = b"", content_type: str = "") -> dict[str, str]:
    """TAP parameters from the URL query and a form body; names upper-cased (they are case-insensitive).

    A value longer than MAX_PARAM_BYTES is a 413, before anything is stored or parsed as ADQL.
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    if body:
        if content_type.startswith("multipart/form-data"):
            pairs += _multipart(body, content_type)
        else:
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    params: dict[str, str] = {}
    for k, v in pairs:
        if len(v) > MAX_PARAM_BYTES:
            raise TapError(
                f"parameter {k[:40]} is {len(v)} bytes; at most {MAX_PARAM_BYTES} are accepted", 413
            )
        params[k.upper()] = v
    return params


def _multipart(raw: bytes, ctype: str) -> list[tuple[str, str]]:
    """Form fields of a multipart/form-data body (what pyvo sends with uploads)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
    out = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            out.append((str(name), payload.decode("utf-8", "replace")))
    return out


class TapService:
    """Query execution over one catalogue, with the per-client limit on queries running at once."""

    def __init__(self, catalog: Catalog, maxrec: int = 10_000, workers: int = 1) -> None:
        self.catalog = catalog
        self.pool: QueryPool | None = None
        if workers > 1:  # sync queries on worker processes (workers.py); async jobs stay here
            from skyplug.catalog.workers import QueryPool

            self.pool = QueryPool(catalog, workers)
        self.maxrec = min(maxrec, catalog.hard_maxrec)
        self.execution_duration = max(1, int(catalog.timeout))  # async jobs: the statement timeout
        self._running: dict[str, int] = {}
        self._running_lock = threading.Lock()

    @contextlib.contextmanager
    def _slot(self, client: str) -> Iterator[None]:
        """One of the client's MAX_QUERIES_PER_CLIENT concurrent query slots, or a 429 error."""
        with self._running_lock:
            n = self._running.get(client, 0)
            if n >= MAX_QUERIES_PER_CLIENT:
                raise TapError(
                    f"this client already runs {n} queries (at most {MAX_QUERIES_PER_CLIENT} at once)", 429
                )
            self._running[client] = n + 1
        try:
            yield
        finally:
            with self._running_lock:
                self._running[client] -= 1
                if not self._running[client]:
                    del self._running[client]

    def execute(
        self,
        params: dict[str, str],
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        client: str = "",
    ) -> tuple[bytes, str]:
        """Run a doQuery request; return the body and its MIME type (errors raise)."""
        request = params.get("REQUEST", "doQuery")
        if request.lower() != "doquery":
            raise TapError(f"unsupported REQUEST {request!r} (only doQuery)")
        lang = params.get("LANG")
        if lang is None:
            raise TapError("LANG is missing (use LANG=ADQL)")
        if lang.upper() not in ("ADQL", "ADQL-2.0"):
            raise TapError(f"unsupported LANG {lang!r} (use ADQL)")
        if params.get("UPLOAD"):
            raise TapError("table upload is not supported by this service")
        query = params.get("QUERY")
        if not query or not query.strip():
            raise TapError("QUERY is missing")
        fmt = params.get("RESPONSEFORMAT") or params.get("FORMAT")
        mime = votable.mime_for(fmt)
        if mime is None:
            raise TapError(f"unsupported RESPONSEFORMAT {fmt!r} (votable, csv, json)")
        maxrec = self.maxrec
        if params.get("MAXREC", "").strip():
            try:
                maxrec = int(params["MAXREC"])
            except ValueError:
                raise TapError(f"MAXREC must be an integer, not {params['MAXREC']!r}") from None
            if maxrec < 0:
                raise TapError("MAXREC must not be negative")
            maxrec = min(maxrec, self.catalog.hard_maxrec)
        slot = self._slot(client)
        if self.pool is not None and timeout is None and cancel is None:
            with slot:
                return self.pool.run(query, maxrec, mime), mime
        result = self.catalog.query(query, maxrec=maxrec, timeout=timeout, cancel=cancel, slot=slot)
        return votable.render(result, mime, query), mime

    def sync(self, method: str, params: dict[str, str], client: str) -> Reply:
        """``/sync``: the result, or a VOTable error (400 bad request or ADQL, 500 timeout, 429 busy)."""
        if method not in ("GET", "POST"):
            raise TapError("sync accepts GET and POST", 405)
        try:
            body, mime = self.execute(params, client=client)
        except QueryTimeout as exc:
            return Reply(500, votable.error_votable(str(exc)), votable.VOTABLE_MIME)
        except TapError as exc:
            return error_reply(exc)
        except (adql.ADQLError, CatalogError) as exc:
            return Reply(400, votable.error_votable(str(exc)), votable.VOTABLE_MIME)
        return Reply(200, body, mime)

    def close(self) -> None:
        """Stop the worker processes, if any."""
        if self.pool is not None:
            self.pool.close()
