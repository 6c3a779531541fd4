"""Interleaved measurements of several TAP services over the same rows (bench_tap.py --dachs).

Every query is sent to each service in turn (A B A B ...), so load on the shared machine hits both
alike. Latency is client wall time to the complete body; rows are counted by parsing it (not timed).
Throughput runs N client processes (not threads: the client's GIL would be the limit) with
http.client on a new connection per query, as in the DaCHS anchor run.
"""

from __future__ import annotations

import http.client
import io
import math
import multiprocessing
import os
import random
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from astropy.io.votable import parse

CONE = (
    "SELECT TOP 100 * FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra:.6f}, {dec:.6f}, {r}))"
)
TIME = "SELECT TOP 100 * FROM ivoa.obscore WHERE t_min BETWEEN {a:.6f} AND {b:.6f}"
COUNT = (
    "SELECT COUNT(*) AS n FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra:.6f}, {dec:.6f}, 5.0))"
)
DIDS_CONE = (
    "SELECT obs_publisher_did FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra:.6f}, {dec:.6f}, 1.0))"
)
DIDS_TIME = "SELECT obs_publisher_did FROM ivoa.obscore WHERE t_min BETWEEN {a:.6f} AND {b:.6f}"


def centres(n: int, seed: int) -> list[tuple[float, float]]:
    rnd = random.Random(seed)
    return [(360 * rnd.random(), math.degrees(math.asin(2 * rnd.random() - 1))) for _ in range(n)]


def windows(n: int, seed: int = 7) -> list[tuple[float, float]]:
    rnd = random.Random(seed)
    return [(a, a + 1.0) for a in (55000 + 4990 * rnd.random() for _ in range(n))]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000, 1)


def _post(base: str, query: str, session: requests.Session | None = None) -> tuple[float, bytes]:
    data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, "MAXREC": "100000"}
    t0 = time.perf_counter()
    if session is None:
        r = requests.post(f"{base}/sync", data=data, headers={"Connection": "close"}, timeout=120)
    else:
        r = session.post(f"{base}/sync", data=data, timeout=120)
    dt = time.perf_counter() - t0
    r.raise_for_status()
    return dt, r.content


def _table(body: bytes) -> Any:
    return parse(io.BytesIO(body)).get_first_table().array


def latency(services: dict[str, str], n_cones: int = 200, n_other: int = 20) -> dict[str, Any]:
    """p50/p95 per service and mode, queries interleaved across the services."""
    import pyvo

    tap = {name: pyvo.dal.TAPService(base) for name, base in services.items()}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in services}
    rows: dict[str, dict[str, list[int]]] = {name: {} for name in services}

    def note(name: str, mode: str, dt: float, n: int) -> None:
        times[name].setdefault(mode, []).append(dt)
        rows[name].setdefault(mode, []).append(n)

    for ra, dec in centres(20, seed=1):  # warm-up
        for name in services:
            tap[name].run_sync(CONE.format(ra=ra, dec=dec, r=1.0))
    for ra, dec in centres(n_cones, seed=42):
        q = CONE.format(ra=ra, dec=dec, r=1.0)
        for name, base in services.items():
            t0 = time.perf_counter()
            n = len(tap[name].run_sync(q))
            note(name, "cone 1 deg, pyvo run_sync", time.perf_counter() - t0, n)
            dt, body = _post(base, q)
            note(name, "cone 1 deg, new connection", dt, len(_table(body)))
    for a, b in windows(n_other):
        q = TIME.format(a=a, b=b)
        for name, base in services.items():
            dt, body = _post(base, q)
            note(name, "time window 1 d TOP 100, new connection", dt, len(_table(body)))
    for ra, dec in centres(n_other, seed=5):
        q = COUNT.format(ra=ra, dec=dec)
        for name, base in services.items():
            dt, body = _post(base, q)
            note(name, "COUNT cone 5 deg, new connection", dt, int(_table(body)[0][0]))
    out: dict[str, Any] = {}
    for name in services:
        out[name] = {
            mode: {"p50_ms": pct(ts, 50), "p95_ms": pct(ts, 95), "mean_rows": round(sum(ns) / len(ns), 1)}
            for (mode, ts), ns in zip(times[name].items(), rows[name].values(), strict=True)
        }
    return out


def same_rows(services: dict[str, str], n_cones: int = 200, n_windows: int = 20) -> dict[str, Any]:
    """Whether every service returns the same obs_publisher_did set per query (cones, windows, counts)."""
    queries = [DIDS_CONE.format(ra=ra, dec=dec) for ra, dec in centres(n_cones, seed=42)]
    queries += [DIDS_TIME.format(a=a, b=b) for a, b in windows(n_windows)]
    differ = []
    for q in queries:
        sets = {
            name: frozenset(str(x) for x in _table(_post(base, q)[1])["obs_publisher_did"])
            for name, base in services.items()
        }
        if len(set(sets.values())) != 1:
            differ.append({"query": q, **{k: len(v) for k, v in sets.items()}})
    counts_differ = []
    for ra, dec in centres(n_windows, seed=5):
        q = COUNT.format(ra=ra, dec=dec)
        counts = {name: int(_table(_post(base, q)[1])[0][0]) for name, base in services.items()}
        if len(set(counts.values())) != 1:
            counts_differ.append({"query": q, **counts})
    return {
        "queries": len(queries),
        "same_sets": len(queries) - len(differ),
        "differ": differ[:5],
        "counts": n_windows,
        "same_counts": n_windows - len(counts_differ),
        "counts_differ": counts_differ[:5],
    }


def _client(args: tuple[str, list[str], str]) -> list[float]:
    """One client process: its queries in turn, each on a new connection from ``source``; the latencies.

    Each client has its own loopback address, as distinct users would (skyplug limits the queries
    running at once per client address).
    """
    base, queries, source = args
    u = urlsplit(base)
    out = []
    for q in queries:
        body = urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q})
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(
            u.hostname or "127.0.0.1", u.port, timeout=120, source_address=(source, 0)
        )
        try:
            conn.request(
                "POST", f"{u.path}/sync", body, {"Content-Type": "application/x-www-form-urlencoded"}
            )
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{base}: HTTP {r.status}")
        finally:
            conn.close()
        out.append(time.perf_counter() - t0)
    return out


def throughput(
    services: dict[str, str], clients: tuple[int, ...] = (1, 4, 8), per_client: int = 40
) -> dict[str, Any]:
    """Queries per second with 1/4/8 client processes (1-degree cones), services interleaved per level."""
    out: dict[str, Any] = {name: {} for name in services}
    ctx = multiprocessing.get_context("fork")
    for k in clients:
        cones = [CONE.format(ra=ra, dec=dec, r=1.0) for ra, dec in centres(k * per_client, seed=100 + k)]
        for name, base in services.items():
            jobs = [(base, cones[i::k], f"127.0.0.{10 + i}") for i in range(k)]
            with ctx.Pool(k) as pool:
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                lat = [x for part in pool.map(_client, jobs) for x in part]
                wall = time.perf_counter() - t0
            out[name][str(k)] = {
                "queries_per_s": round(len(lat) / wall, 1),
                "p50_ms": pct(lat, 50),
                "p95_ms": pct(lat, 95),
                "load_avg_1min": round(load, 1),
            }
    return out
