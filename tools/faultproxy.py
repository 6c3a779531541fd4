"""Loopback TCP/HTTP proxy that injects faults in front of an S3 server (stdlib only).

Each client connection gets its own upstream connection (opened lazily). Bytes are
forwarded unchanged, so SigV4 signatures stay valid. Request heads on the
client->upstream stream are parsed (HTTP/1.1, no pipelining, as botocore sends), so
faults apply per request, also on pooled keep-alive connections.

Fault modes (``set_fault(mode, count=1, ...)``; ``count=None`` means until cleared):

- ``None``: pass through.
- ``"reset"``: read the request, then close the client connection with a TCP RST.
- ``"status"``: answer with a canned S3 ``503 SlowDown`` XML error, no upstream call.
- ``"cut"``: forward the request, close the connection after ``cut_after`` bytes
  of the response (head included).
- ``"stall"``: wait ``seconds`` before handling the request, then pass it through.

A shaped link (``FaultProxy(..., rate=, latency=)`` at start, ``set_link(rate, latency)`` at run
time): ``rate`` caps the response bytes (upstream -> client) of all connections together, in
bytes/s, with a token bucket shared by every connection; ``latency`` seconds are added before each
request is handled. Counters are unchanged by shaping.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MODES = (None, "reset", "status", "cut", "stall")
_BUF = 65536
_MAX_HEAD = 65536
LINK_BURST = 2 * _BUF  # bytes a shaped link lets through at once after it was idle
_SLOWDOWN = "Please reduce your request rate."


@dataclass
class _Fault:
    mode: str | None
    count: int | None
    cut_after: int
    seconds: float
    status: int
    code: str
    message: str


class _Link:
    """The link's shape: a token bucket of ``rate`` bytes/s on response bytes, ``latency`` per request.

    The bucket starts empty and holds at most ``burst`` bytes; a sender may take more than it holds
    and waits off the debt, which later senders wait off too, so over any interval the bytes sent by
    all connections together stay under ``burst + rate * seconds``.
    """

    def __init__(self, rate: float | None, latency: float, burst: int) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"link rate must be positive bytes/s or None, not {rate!r}")
        if latency < 0:
            raise ValueError(f"link latency must be >= 0 seconds, not {latency!r}")
        self.rate, self.latency, self.burst = rate, latency, burst
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def take(self, n: int, stopping: threading.Event) -> None:
        """Wait until ``n`` more response bytes may go out (at once when the rate is not capped)."""
        if self.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate) - n
            self._stamp = now
            wait = -self._tokens / self.rate
        if wait > 0:
            stopping.wait(wait)


class _Closed(Exception):
    """The client closed its side."""


class FaultProxy:
    """Threaded fault-injecting proxy to ``upstream_host:upstream_port`` on 127.0.0.1."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        host: str = "127.0.0.1",
        *,
        rate: float | None = None,
        latency: float = 0.0,
    ) -> None:
        """``rate`` (bytes/s, all connections together) and ``latency`` (s per request) shape the link."""
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._fault = _Fault(None, None, 0, 0.0, 503, "SlowDown", _SLOWDOWN)
        self._link = _Link(rate, latency, LINK_BURST)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._stopping = threading.Event()
        self.connections = 0
        self.requests = 0
        self.upstream_connections = 0
        self.forwarded_requests = 0
        self.faults_applied: dict[str, int] = {m: 0 for m in MODES if m}
        self.bytes_to_upstream = 0  # request heads and bodies forwarded
        self.bytes_from_upstream = 0  # response bytes (heads included) sent back to clients
        self.methods: dict[str, int] = {}  # forwarded requests by HTTP method

    # ------------------------------------------------------------------ control

    @property
    def endpoint(self) -> str:
        """``http://host:port`` of the proxy."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> int:
        """Listen on a free port; return it."""
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((self.host, 0))
        lsock.listen(128)
        self._listener = lsock
        self.port = lsock.getsockname()[1]
        self._spawn(self._accept_loop, "faultproxy-accept")
        return self.port

    def stop(self) -> None:
        """Close the listener and every open connection; join the threads."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            _close(s)
        for t in list(self._threads):
            if t is not threading.current_thread():
                t.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fault(
        self,
        mode: str | None,
        count: int | None = 1,
        *,
        cut_after: int = 0,
        seconds: float = 0.0,
        status: int = 503,
        code: str = "SlowDown",
        message: str = _SLOWDOWN,
    ) -> None:
        """Apply *mode* to the next *count* requests (None: all, until changed)."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; choose from {MODES}")
        with self._lock:
            self._fault = _Fault(mode, count, cut_after, seconds, status, code, message)

    def clear(self) -> None:
        """Back to pass-through."""
        self.set_fault(None)

    def set_link(self, rate: float | None = None, latency: float = 0.0, burst: int = LINK_BURST) -> None:
        """Shape the link from now on: ``rate`` bytes/s of responses, all connections together (None:
        uncapped), ``latency`` seconds added before each request. ``set_link()`` is loopback again."""
        link = _Link(rate, latency, burst)
        with self._lock:
            self._link = link

    @property
    def link(self) -> dict[str, float | None]:
        """The link's current shape: ``rate`` (bytes/s or None), ``latency`` (s), ``burst`` (bytes)."""
        link = self._link
        return {"rate": link.rate, "latency": link.latency, "burst": link.burst}

    def stats(self) -> dict[str, object]:
        """Counters of client connections, requests, upstream ones, faults applied."""
        with self._lock:
            return {
                "connections": self.connections,
                "requests": self.requests,
                "upstream_connections": self.upstream_connections,
                "forwarded_requests": self.forwarded_requests,
                "faults_applied": dict(self.faults_applied),
                "bytes_to_upstream": self.bytes_to_upstream,
                "bytes_from_upstream": self.bytes_from_upstream,
                "methods": dict(self.methods),
            }

    def counts(self) -> tuple[int, int]:
        """Cumulative (requests, response bytes) seen: what a benchmark charges to a route."""
        with self._lock:
            return self.requests, self.bytes_from_upstream

    # ------------------------------------------------------------------ internals

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.add(s)

    def _take_fault(self) -> _Fault | None:
        """Count a request and consume one unit of the current fault, if any."""
        with self._lock:
            self.requests += 1
            f = self._fault
            if f.mode is None or f.count == 0:
                return None
            if f.count is not None:
                f.count -= 1
            self.faults_applied[f.mode] += 1
            return _Fault(**vars(f))

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            self._track(client)
            self._spawn(self._serve, "faultproxy-conn", client)

    def _serve(self, client: socket.socket) -> None:
        conn = _Conn(self, client)
        try:
            conn.run()
        except (OSError, _Closed):
            pass
        finally:
            conn.close()


class _Conn:
    """One client connection and its (lazy) upstream connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.buf = b""
        self.cut_left: int | None = None  # bytes of response still allowed
        self.cut_lock = threading.Lock()

    def close(self) -> None:
        _close(self.client)
        if self.upstream is not None:
            _close(self.upstream)
        with self.proxy._lock:
            self.proxy._socks.discard(self.client)
            if self.upstream is not None:
                self.proxy._socks.discard(self.upstream)

    # -- reading the client stream

    def _recv(self) -> bytes:
        data = self.client.recv(_BUF)
        if not data:
            raise _Closed
        return data

    def _read_head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > _MAX_HEAD:
                raise _Closed
            try:
                data = self.client.recv(_BUF)
            except OSError:
                return None
            if not data:
                return None
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def _skip_body(self, headers: dict[str, str]) -> None:
        """Read and drop the current request's body."""
        for _ in self._iter_body(headers):
            pass

    def _iter_body(self, headers: dict[str, str]) -> Iterator[bytes]:
        """Raw body bytes of the current request, in pieces, as they arrive."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in self.buf:
                    self.buf += self._recv()
                line, _, rest = self.buf.partition(b"\r\n")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                self.buf = rest
                yield line + b"\r\n"
                if size == 0:  # trailers until an empty line
                    while True:
                        while b"\r\n" not in self.buf:
                            self.buf += self._recv()
                        tline, _, self.buf = self.buf.partition(b"\r\n")
                        yield tline + b"\r\n"
                        if not tline:
                            return
                left = size + 2
                while left:
                    if not self.buf:
                        self.buf = self._recv()
                    piece, self.buf = self.buf[:left], self.buf[left:]
                    left -= len(piece)
                    yield piece
        else:
            left = int(headers.get("content-length", "0") or 0)
            while left:
                if not self.buf:
                    self.buf = self._recv()
                piece, self.buf = self.buf[:left], self.buf[left:]
                left -= len(piece)
                yield piece

    # -- upstream

    def _ensure_upstream(self) -> socket.socket:
        if self.upstream is None:
            up = socket.create_connection(self.proxy.upstream, timeout=30)
            up.settimeout(None)
            self.upstream = up
            self.proxy._track(up)
            with self.proxy._lock:
                self.proxy.upstream_connections += 1
            self.proxy._spawn(self._pump_responses, "faultproxy-resp", up)
        return self.upstream

    def _pump_responses(self, up: socket.socket) -> None:
        """Copy upstream -> client, honouring a pending cut."""
        try:
            while True:
                data = up.recv(_BUF)
                if not data:
                    break
                self.proxy._link.take(len(data), self.proxy._stopping)
                with self.cut_lock:
                    if self.cut_left is not None:
                        if len(data) >= self.cut_left:
                            self.client.sendall(data[: self.cut_left])
                            self.cut_left = 0
                            raise _Closed
                        self.cut_left -= len(data)
                self.client.sendall(data)
                with self.proxy._lock:
                    self.proxy.bytes_from_upstream += len(data)
        except (OSError, _Closed):
            pass
        finally:
            self.close()

    # -- main loop

    def run(self) -> None:
        while True:
            head = self._read_head()
            if head is None:
                return
            headers = _parse_headers(head)
            method = head.split(b" ", 1)[0].upper()
            expect = headers.get("expect", "").lower() == "100-continue"
            fault = self.proxy._take_fault()
            mode = fault.mode if fault else None
            latency = self.proxy._link.latency
            if latency:
                self.proxy._stopping.wait(latency)
            if fault and mode == "stall":
                self.proxy._stopping.wait(fault.seconds)
            if fault and mode == "reset":
                if not expect:
                    self._skip_body(headers)
                _rst(self.client)
                return
            if fault and mode == "status":
                self.client.sendall(_error_response(fault, method == b"HEAD", close=expect))
                if expect:  # client will not send the body: drop the connection
                    return
                self._skip_body(headers)
                continue
            if fault and mode == "cut":
                with self.cut_lock:
                    self.cut_left = fault.cut_after
            up = self._ensure_upstream()
            with self.proxy._lock:
                self.proxy.forwarded_requests += 1
                name = method.decode("latin-1")
                self.proxy.methods[name] = self.proxy.methods.get(name, 0) + 1
                self.proxy.bytes_to_upstream += len(head)
            up.sendall(head)
            for piece in self._iter_body(headers):
                up.sendall(piece)
                with self.proxy._lock:
                    self.proxy.bytes_to_upstream += len(piece)


def _parse_headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _error_response(f: _Fault, head_only: bool, close: bool) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{f.code}</Code><Message>{f.message}</Message>"
        "<RequestId>faultproxy</RequestId><HostId>faultproxy</HostId></Error>"
    ).encode()
    reason = "Slow Down" if f.code == "SlowDown" else f.code
    lines = [
        f"HTTP/1.1 {f.status} {reason}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        "x-amz-request-id: faultproxy",
        "Connection: " + ("close" if close else "keep-alive"),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body)


def _rst(s: socket.socket) -> None:
    """Close *s* with a TCP RST (SO_LINGER 0)."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
