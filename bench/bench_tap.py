#!/usr/bin/env python3
"""Cone-search latency of the TAP service on a 1,000,000-row synthetic catalogue, both backends.

Builds the catalogue (SQLite file; PostgreSQL via tools/pg.py unless --pg-url), starts
``skyplug catalog serve`` in a subprocess, and times 200 random 1-degree ``TOP 100`` cones (seed 42,
as in the DaCHS anchor run) with pyvo (keep-alive) and with a new HTTP connection per query.

    python bench/bench_tap.py [--rows 1000000] [--backends sqlite,postgres] [--workdir DIR]

``--dachs`` instead serves the same PostgreSQL rows with skyplug and with GAVO DaCHS (bench_dachs.py)
and measures both interleaved (query by query, A B A B): 1-degree cones via pyvo and on a new
connection, 1-day time windows, 5-degree COUNTs, throughput at 1/4/8 client processes, and that
both return the same obs_publisher_did sets; it writes bench/results/tap_dachs.json.

    python bench/bench_tap.py --dachs [--rows 1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from astropy.io.votable import parse as parse_votable

ROOT = Path(__file__).resolve().parents[1]
CONE = (
    "SELECT TOP 100 * FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra:.6f}, {dec:.6f}, 1.0))"
)


def centres(n: int = 200, seed: int = 42) -> list[tuple[float, float]]:
    rnd = random.Random(seed)
    return [(360 * rnd.random(), math.degrees(math.asin(2 * rnd.random() - 1))) for _ in range(n)]


def build(url: str, rows: int) -> float:
    from skyplug.catalog import synthetic
    from skyplug.catalog.db import open_catalog

    t0 = time.perf_counter()
    with open_catalog(url) as cat:
        cat.bulk_load(synthetic.records(rows, radio=False))
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, workdir: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skyplug.cli",
            "catalog",
            "serve",
            "--db",
            url,
            "--port",
            str(port),
            "--jobs",
            str(workdir / f"jobs-{port}"),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/tap"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/availability", timeout=3).ok:
                return proc, base
        except requests.RequestException:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("the TAP server did not start within 300 s")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000


def run(base: str) -> dict[str, dict[str, float]]:
    import pyvo

    svc = pyvo.dal.TAPService(base)
    out: dict[str, dict[str, float]] = {}
    for mode in ("pyvo run_sync (keep-alive)", "HTTP POST, new connection"):
        times, nrows = [], []
        for ra, dec in centres():
            q = CONE.format(ra=ra, dec=dec)
            t0 = time.perf_counter()
            if mode.startswith("pyvo"):
                n = len(svc.run_sync(q))
            else:
                r = requests.post(
                    f"{base}/sync",
                    data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q},
                    headers={"Connection": "close"},
                    timeout=60,
                )
                n = len(parse_votable(io.BytesIO(r.content)).get_first_table().array)
            times.append(time.perf_counter() - t0)
            nrows.append(n)
        out[mode] = {
            "p50_ms": round(pct(times, 50), 1),
            "p95_ms": round(pct(times, 95), 1),
            "mean_rows": round(statistics.mean(nrows), 1),
        }
    return out


def _count(url: str) -> int:
    from skyplug.catalog.db import open_catalog

    with open_catalog(url) as cat:
        return cat.count()


def _tools_pg() -> Any:
    spec = importlib.util.spec_from_file_location("skyplug_tools_pg", ROOT / "tools" / "pg.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def side_by_side(args: argparse.Namespace, work: Path) -> int:
    """skyplug on PostgreSQL (``--workers`` processes, and 1 for throughput) beside DaCHS on the same rows."""
    import platform

    sys.path.insert(0, str(ROOT))
    from bench import bench_dachs, tap_side_by_side
    from skyplug.catalog.model import OBSCORE

    pg = None if args.pg_url else _tools_pg().start_pg(work / "pg")
    url = args.pg_url or pg.url
    procs: list[subprocess.Popen[bytes]] = []
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.python_version()}",
        "rows": args.rows,
        "skyplug_workers": args.workers,
        "load_avg_start": [round(x, 1) for x in os.getloadavg()],
    }
    try:
        if args.reuse and _count(url) == args.rows:  # a catalogue loaded before (--pg-url)
            report["skyplug_load_seconds"] = "reused"
        else:
            report["skyplug_load_seconds"] = round(build(url, args.rows), 1)
        dachs_base, report["dachs_setup"] = bench_dachs.start(url, [c.name for c in OBSCORE.columns])
        report["dachs_version"] = bench_dachs.version()
        proc, base = serve(url, work, args.workers)
        procs.append(proc)
        proc1, base1 = serve(url, work, 1)
        procs.append(proc1)
        services = {"skyplug": base, "dachs": dachs_base}
        report["latency"] = tap_side_by_side.latency(services)
        print(json.dumps(report["latency"]), flush=True)
        report["same_rows"] = tap_side_by_side.same_rows(services)
        print(json.dumps(report["same_rows"]), flush=True)
        report["throughput"] = tap_side_by_side.throughput(
            {f"skyplug --workers {args.workers}": base, "skyplug --workers 1": base1, "dachs": dachs_base}
        )
        report["load_avg_end"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
        bench_dachs.stop()
        if pg is not None:
            pg.stop()
    out = ROOT / "bench" / "results" / "tap_dachs.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--pg-url", default=os.environ.get("SKYPLUG_PG_URL"))
    ap.add_argument(
        "--reuse", action="store_true", help="Keep WORKDIR/bench.db (SQLite) or the --pg-url rows."
    )
    ap.add_argument("--dachs", action="store_true", help="skyplug (PostgreSQL) beside GAVO DaCHS, same rows.")
    ap.add_argument("--workers", type=int, default=2, help="skyplug catalog serve --workers (with --dachs).")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="skyplug-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.dachs:
        return side_by_side(args, work)
    report: dict[str, object] = {"rows": args.rows, "queries": 200, "radius_deg": 1.0}
    pg = None
    try:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{work / 'bench.db'}"
                if (work / "bench.db").exists() and not args.reuse:
                    (work / "bench.db").unlink()
            else:
                if args.pg_url:
                    url = args.pg_url
                else:
                    spec = importlib.util.spec_from_file_location(
                        "skyplug_tools_pg", ROOT / "tools" / "pg.py"
                    )
                    assert spec and spec.loader
                    mod = importlib.util.module_from_spec(spec)
                    sys.modules[spec.name] = mod
                    spec.loader.exec_module(mod)
                    pg = mod.start_pg(work / "pg")
                    url = pg.url
            reuse = args.reuse and backend == "sqlite" and (work / "bench.db").exists()
            load = 0.0 if reuse else build(url, args.rows)
            proc, base = serve(url, work)
            try:
                res = run(base)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            report[backend] = {"load_seconds": round(load, 1), **res}
            print(json.dumps({backend: report[backend]}), flush=True)
    finally:
        if pg is not None:
            pg.stop()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
