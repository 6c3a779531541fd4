"""The HTTP bounds of the TAP server (server.py): body size, slow request heads, connections, shutdown.

Each test starts its own TapServer in a thread over the SQLite catalogue, with the head deadline
shortened to HEAD_TIMEOUT so a slow client is dropped within the test.
"""

from __future__ import annotations

import http.client
import io
import math
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from astropy.io.votable import parse

from skyplug.catalog import server as tap_server
from skyplug.catalog.db import open_catalog
from skyplug.catalog.server import TapServer

HEAD_TIMEOUT = 1.0
CONE = (
    "SELECT TOP 20 obs_id, s_ra, s_dec FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 10.0, 10.0, 10.0))"
)
FORM = urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": CONE})


@pytest.fixture
def served(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TapServer]:
    monkeypatch.setattr(tap_server, "HEAD_TIMEOUT", HEAD_TIMEOUT)
    with open_catalog(sqlite_url) as cat, TapServer(cat, maxrec=1000) as server:
        yield server


def _address(server: TapServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "", parts.port or 0


def _status(body: bytes) -> str:
    info = [i for r in parse(io.BytesIO(body)).resources for i in r.infos if i.name == "QUERY_STATUS"]
    return str(info[0].value)


def _cone(server: TapServer, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """One sync cone query on a new connection from ``source`` (any 127.0.0.0/8 address)."""
    conn = http.client.HTTPConnection(*_address(server), timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", "/tap/sync", FORM, {"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_oversized_body_is_refused_before_it_is_sent(served: TapServer) -> None:
    n = tap_server.MAX_BODY_BYTES + 1
    with socket.create_connection(_address(served), timeout=5) as sock:
        t0 = time.monotonic()
        sock.sendall(
            b"POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % n
        )  # the body never comes
        head = sock.recv(65_536)
        assert head.startswith(b"HTTP/1.1 413 ") and time.monotonic() - t0 < 1.0


def test_oversized_body_gets_a_votable_413_and_the_connection_stays_usable(served: TapServer) -> None:
    with requests.Session() as s:
        big = s.post(f"{served.url}/sync", data={"LANG": "ADQL", "QUERY": "x" * 200_000}, timeout=30)
        assert big.status_code == 413 and _status(big.content) == "ERROR"
        assert b"at most 65536" in big.content
        chunked = s.post(f"{served.url}/sync", data=iter([b"QUERY="] + [b"x" * 8192] * 20), timeout=30)
        assert chunked.status_code == 413  # no Content-Length: counted while read
        assert s.post(f"{served.url}/sync", data=FORM, timeout=30, headers={
            "Content-Type": "application/x-www-form-urlencoded"}).status_code == 200  # fmt: skip


def test_slow_heads_are_dropped_and_block_no_one(served: TapServer) -> None:
    """Clients that trickle their request head one byte at a time are closed after HEAD_TIMEOUT."""
    slow = [socket.create_connection(_address(served), timeout=10) for _ in range(20)]
    stop = threading.Event()

    def trickle(sock: socket.socket) -> float:
        """Seconds until the server closed the connection."""
        t0 = time.monotonic()
        poller = select.poll()  # not select.select: a long test run may hold fds above FD_SETSIZE
        poller.register(sock, select.POLLIN)
        try:
            sock.sendall(b"GET /tap/availability HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                sock.sendall(b"X")  # a header name that never ends
                if poller.poll(100) and not sock.recv(65_536):
                    break
        except OSError:
            pass  # reset by the server
        return time.monotonic() - t0 if not stop.is_set() else math.inf

    try:
        with ThreadPoolExecutor(len(slow)) as pool:
            dropped = [pool.submit(trickle, sock) for sock in slow]
            time.sleep(0.3)
            for _ in range(5):  # others are answered meanwhile, at once
                t0 = time.monotonic()
                assert _cone(served)[0] == 200 and time.monotonic() - t0 < 2.0
            seconds = [f.result(timeout=HEAD_TIMEOUT + 5) for f in dropped]
            assert all(HEAD_TIMEOUT - 0.2 < t < HEAD_TIMEOUT + 1.5 for t in seconds), seconds
    finally:
        stop.set()
        for sock in slow:
            sock.close()


def test_many_concurrent_queries_are_all_answered(served: TapServer) -> None:
    """100 clients (distinct addresses, so no per-client limit applies) query at once: all get rows."""
    sources = [f"127.0.0.{10 + i}" for i in range(100)]
    with ThreadPoolExecutor(len(sources)) as pool:
        replies = list(pool.map(lambda src: _cone(served, src), sources))
    assert [status for status, _ in replies] == [200] * len(sources)
    assert all(len(parse(io.BytesIO(body)).get_first_table().array) > 0 for _, body in replies)


def test_connections_past_the_cap_get_503(served: TapServer) -> None:
    idle = [socket.create_connection(_address(served), timeout=10) for _ in range(tap_server.MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # all accepted
        status, _ = _cone(served)
        assert status == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while _cone(served)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_head_answers_without_a_body(served: TapServer) -> None:
    r = requests.head(f"{served.url}/capabilities", timeout=30)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) > 0 and r.content == b""
    assert r.headers["Server"] == tap_server.SERVER


def test_stop_ends_a_blocking_wait_at_once(sqlite_url: str) -> None:
    with open_catalog(sqlite_url) as cat:
        server = TapServer(cat).start()
        data = {"LANG": "ADQL", "QUERY": CONE}
        r = requests.post(f"{server.url}/async", data=data, allow_redirects=False, timeout=30)
        job = r.headers["Location"]
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(requests.get, job, params={"WAIT": "60"}, timeout=30)
            time.sleep(0.5)
            t0 = time.monotonic()
            server.stop()
            assert time.monotonic() - t0 < 3.0
            assert waiting.result(timeout=5).status_code == 200  # answered, not cut off
