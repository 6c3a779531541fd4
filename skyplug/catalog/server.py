"""The TAP service over HTTP: a Starlette app served by uvicorn, with the bounds a public endpoint needs.

The standard library's ``http.server`` is documented as not for production; uvicorn (httptools
parser, asyncio) holds many idle or slow connections cheaply, and this module adds what it lacks:
a deadline and a size cap on each request head (slowloris), a body cap (413 before the body is
read), a cap on connections, and a bounded thread pool for the blocking catalogue calls.
``TapServer`` runs it in a thread (tests) or in the foreground (``skyplug catalog serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from skyplug.catalog import uws, vosi
from skyplug.catalog.db import Catalog
from skyplug.catalog.tap import Reply, TapError, TapService, error_reply, parse_params

# HTTP bounds (docs/security.md); the protocol's are in tap.py, the jobs' in uws.py.
MAX_BODY_BYTES = 65_536  # of a request body; more is refused unread (413)
MAX_DRAIN_BYTES = (
    16 * 2**20
)  # a refused body up to this size is read and discarded, else the connection closes
MAX_HEAD_BYTES = 65_536  # request line and headers; more closes the connection
HEAD_TIMEOUT = 10.0  # seconds to send a request line and headers (slowloris), else the connection closes
BODY_TIMEOUT = 10.0  # seconds to send a request body, else 408
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection is kept
MAX_CONNECTIONS = 128  # open at once; a request past it is answered 503 at once
QUERY_THREADS = 16  # threads for the blocking calls (catalogue queries, job files)
WAIT_THREADS = 64  # threads for UWS blocking requests (WAIT), apart so they never starve queries
GRACE = 5  # seconds a graceful shutdown waits for the requests in flight
SERVER = "skyplug-tap/0.1"
PAGES = ("sync", "async", "capabilities", "tables", "availability", "examples")


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline and a size cap on each request head.

    uvicorn has an idle keep-alive timeout but none for a head that trickles in byte by byte. The
    deadline runs from the connection (or the previous response) to the end of the headers.
    """

    _deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_bytes = 0
        self._deadline = self.loop.call_later(HEAD_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a request begun on an idle connection
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        _quickack(self.transport)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm()  # the next head, if any, within HEAD_TIMEOUT


def _quickack(transport: asyncio.Transport) -> None:
    """Send a pending delayed ACK at once (Linux TCP_QUICKACK; not sticky, so set per request).

    On a keep-alive connection Linux delays the ACK of the request headers (~40 ms) while the
    client's Nagle holds back the body (urllib3 sends it apart) until that ACK arrives.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    sock = transport.get_extra_info("socket")
    if quickack is not None and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


class TapApp:
    """The routes of ``/tap`` (and ``/provsap``) over one TapService and its JobStore."""

    def __init__(self, service: TapService, jobs: uws.JobStore) -> None:
        self.service = service
        self.jobs = jobs
        self.queries: anyio.CapacityLimiter | None = None
        self.waits: anyio.CapacityLimiter | None = None
        self.app = Starlette(
            routes=[Route("/{path:path}", self.endpoint, methods=["GET", "HEAD", "POST", "DELETE"])],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.queries = anyio.CapacityLimiter(QUERY_THREADS)  # made in the server's event loop
        self.waits = anyio.CapacityLimiter(WAIT_THREADS)
        yield

    async def endpoint(self, request: Request) -> Response:
        """Read the parameters within the bounds, then answer on a worker thread."""
        try:
            params = await self._params(request)
        except Exception as exc:  # a VOTable error too
            return _response(error_reply(exc, request.url.path), isinstance(exc, _BodyRefused) and exc.close)
        limiter = self.waits if "WAIT" in params else self.queries
        client = request.client.host if request.client else ""
        reply = await anyio.to_thread.run_sync(
            self.dispatch,
            request.method,
            request.scope,
            params,
            client,
            limiter=limiter,
            abandon_on_cancel=True,
        )
        return _response(reply)

    async def _params(self, request: Request) -> dict[str, str]:
        """The TAP parameters of the query string and, for POST, of a body within the bounds."""
        query = request.scope["query_string"].decode("latin-1")
        body = b""
        if request.method == "POST":
            length = request.headers.get("content-length")
            n = int(length) if length and length.isdigit() else 0
            if n > MAX_BODY_BYTES:  # uvicorn discards a refused body; past MAX_DRAIN_BYTES it closes
                message = f"request body of {n} bytes; at most {MAX_BODY_BYTES} are accepted"
                raise _BodyRefused(message, 413, close=n > MAX_DRAIN_BYTES)
            body = await _read_body(request)
        return parse_params(query, body, request.headers.get("content-type", ""))

    def dispatch(self, method: str, scope: Mapping[str, Any], params: dict[str, str], client: str) -> Reply:
        """The reply to one request (on a worker thread: it may query the catalogue or wait on a job)."""
        path = scope["raw_path"].decode("latin-1").rstrip("/")
        svc = self.service
        try:
            parts = path.split("/")[1:]
            if parts == ["provsap"]:  # IVOA ProvSAP, answered by the provenance plugin
                from skyplug.plugins.provenance.provsap import respond

                return Reply(*respond(scope["query_string"].decode("latin-1"), svc.catalog.url))
            if not parts or parts[0] != "tap":
                raise TapError(f"not found: {path} (the service is at /tap)", 404)
            rest = parts[1:]
            base = _base(scope)
            if not rest:
                links = "".join(f'<li><a href="tap/{p}">{p}</a></li>' for p in PAGES)
                return Reply(
                    200, f"<html><body><h1>skyplug TAP</h1><ul>{links}</ul></body></html>", "text/html"
                )
            if rest == ["sync"]:
                return svc.sync(method, params, client)
            if rest[0] == "async":
                return uws.respond(self.jobs, method, rest[1:], params, base, client)
            if rest == ["capabilities"]:
                return Reply(200, vosi.capabilities(svc, base), "text/xml")
            if rest == ["tables"]:
                return Reply(200, vosi.tables(params.get("DETAIL", "").lower() != "min"), "text/xml")
            if rest[0] == "tables" and len(rest) == 2:
                return Reply(200, vosi.table(rest[1]), "text/xml")
            if rest == ["availability"]:
                return Reply(200, vosi.availability(svc), "text/xml")
            if rest == ["examples"]:
                return Reply(200, vosi.examples(), "application/xhtml+xml")
            raise TapError(f"not found: {path}", 404)
        except Exception as exc:  # answer with a VOTable, never drop the connection
            return error_reply(exc, path)


async def _read_body(request: Request) -> bytes:
    """The body, at most MAX_BODY_BYTES (also when chunked), within BODY_TIMEOUT (else 413, 408)."""
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(BODY_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _BodyRefused(f"request body over {MAX_BODY_BYTES} bytes; no more are accepted", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise _BodyRefused(f"request body not received within {BODY_TIMEOUT:g} s", 408) from None
    except ClientDisconnect:
        raise _BodyRefused("the client closed the connection during the body", 400) from None
    return b"".join(chunks)


class _BodyRefused(TapError):
    """A body refused before it was read to its end; ``close``: the connection is closed after the reply."""

    def __init__(self, message: str, status: int, close: bool = True) -> None:
        super().__init__(message, status)
        self.close = close


def _base(scope: Mapping[str, Any]) -> str:
    """The service's URL as the client named it (Host), for the links in documents and redirects."""
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    if not host and scope.get("server"):
        host = f"{scope['server'][0]}:{scope['server'][1]}"
    return f"http://{host}/tap"


def _response(reply: Reply, close: bool = False) -> Response:
    """The Reply as one HTTP response; text and XML are declared UTF-8."""
    data = reply.body.encode() if isinstance(reply.body, str) else reply.body
    mime = reply.mime
    if "charset" not in mime and mime.startswith(("text/", "application/xml")):
        mime = f"{mime}; charset=utf-8"
    headers = {"content-type": mime, "server": SERVER, **reply.headers}
    if close:
        headers["connection"] = "close"
    return Response(data, reply.status, headers)


class TapServer:
    """The TAP service on ``host:port`` (0: a free port, bound at once so ``url`` is known).

    ``start()`` serves it in a thread and ``stop()`` shuts it down gracefully (also as a context
    manager); ``serve_forever()`` serves in the foreground until SIGINT or SIGTERM.
    """

    def __init__(
        self,
        catalog: Catalog,
        host: str = "127.0.0.1",
        port: int = 0,
        jobs_dir: Path | None = None,
        maxrec: int = 10_000,
        workers: int = 1,
    ) -> None:
        self._own_jobs = jobs_dir is None  # a temporary folder, removed by stop()
        self.service = TapService(catalog, maxrec, workers)
        root = jobs_dir or Path(tempfile.mkdtemp(prefix="skyplug-tap-jobs-"))
        self.jobs = uws.JobStore(root, self.service.execute, self.service.execution_duration)
        self.socket = socket.create_server((host, port), backlog=MAX_CONNECTIONS)
        config = uvicorn.Config(
            TapApp(self.service, self.jobs).app,
            http=_Protocol,
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,  # the per-client limits use the peer address, never a header
            limit_concurrency=MAX_CONNECTIONS,
            backlog=MAX_CONNECTIONS,
            timeout_keep_alive=int(KEEP_ALIVE),
            timeout_graceful_shutdown=GRACE,
        )
        self.uvicorn = _Uvicorn(config, self.jobs.close)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}/tap"

    def start(self) -> TapServer:
        """Serve in a daemon thread; requests are accepted at once (the socket already listens)."""
        self.thread = threading.Thread(target=self.serve_forever, daemon=True, name="tap-server")
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until ``stop()`` or, in the main thread, SIGINT / SIGTERM (graceful)."""
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self._close()

    def stop(self) -> None:
        """Stop accepting, finish the requests in flight (at most GRACE seconds), stop the jobs."""
        self.uvicorn.should_exit = True
        if self.thread:
            self.thread.join(timeout=GRACE + 5)
        self._close()

    def _close(self) -> None:
        self.jobs.close()
        self.service.close()
        self.socket.close()
        if self._own_jobs:
            shutil.rmtree(self.jobs.root, ignore_errors=True)

    def __enter__(self) -> TapServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, which first ends the job store's waits and jobs when it shuts down."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)
