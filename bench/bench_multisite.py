#!/usr/bin/env python3
"""Benchmark of the multi-site locator: hit and miss latency over a WAN-like link, and policy cost.

Two S3 sites on real servers started by tools/services.py (SeaweedFS by default, or Swift; never
moto, whose ranged GETs read whole objects): ``edge`` (where the client runs) and ``lake`` (remote).
The WAN between them is emulated:

- as root, when the kernel has ``sch_netem``: a network namespace joined by a veth pair whose two
  ends carry ``tc netem delay RTT/2 rate MBIT``; the client reaches the lake through forwarders on
  both sides of the veth (``--link netns``);
- otherwise: a delay proxy on loopback (``--link proxy``, the fallback): every byte crosses a shared
  token bucket at MBIT and is delivered RTT/2 later in each direction.

Measured (median of ``--reps``): a direct GET of the whole object from the lake with boto3; a cold
read through ``sky://`` at the edge (copy-on-read: streamed to the client while it fills and
verifies the edge replica); a hot read (the edge replica); 64 KiB ranged reads hot and cold; and
``locate`` (DB lookup and ranking). Then the policy simulator on a synthetic TASKA-like trace.

    python bench/bench_multisite.py [--backend seaweedfs|swift] [--size-mib 32] [--reps 3]
        [--rtt-ms 80] [--mbit 100] [--link auto|netns|proxy] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NETNS, VETH_HOST, VETH_NS = "skyplug-bench", "skyb0", "skyb1"
HOST_IP, NS_IP = "10.231.0.1", "10.231.0.2"


# --------------------------------------------------------------------------- the emulated link


class Link:
    """One direction of a link: a shared token bucket (bytes/s) plus a one-way delay."""

    def __init__(self, rate: float, delay: float) -> None:
        self.rate, self.delay = rate, delay
        self._lock = threading.Lock()
        self._free = 0.0

    def schedule(self, nbytes: int) -> float:
        """When ``nbytes`` sent now arrive at the other end (monotonic seconds)."""
        with self._lock:
            start = max(time.monotonic(), self._free)
            self._free = start + (nbytes / self.rate if self.rate else 0.0)
            return self._free + self.delay


def _pump(src: socket.socket, dst: socket.socket, link: Link | None) -> None:
    """Copy src -> dst; each chunk is delivered when the link says (a reader and a sender thread)."""
    q: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def reader() -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            q.put((link.schedule(len(data)) if link and data else 0.0, data))
            if not data:
                return

    def sender() -> None:
        while True:
            when, data = q.get()
            pause = when - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    threading.Thread(target=reader, daemon=True).start()
    threading.Thread(target=sender, daemon=True).start()


def _netem_works() -> str | None:
    """None when namespaces and netem can be used here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "iproute2 (ip, tc) not installed"
    probe = subprocess.run(
        [
            "sh",
            "-c",
            f"ip link add {VETH_HOST}p type veth peer name {VETH_NS}p || exit 9; "
            f"tc qdisc add dev {VETH_HOST}p root netem delay 1ms; r=$?; ip link del {VETH_HOST}p; exit $r",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0:
        return None
    what = "veth pairs" if probe.returncode == 9 else "the tc netem qdisc (kernel module sch_netem)"
    return f"{what} unavailable here: {' '.join(probe.stderr.split())}"


def _helper(*argv: str, netns: str | None = None) -> subprocess.Popen[bytes]:
    """This script in a helper process (a forwarder or the delay proxy), optionally in a namespace."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.Popen([*prefix, sys.executable, __file__, *argv])


def _wait_port(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


@contextlib.contextmanager
def netns_link(server_port: int, rtt_ms: float, mbit: float) -> Iterator[str]:
    """An endpoint reaching 127.0.0.1:server_port across a veth pair with netem on both ends.

    client -> NS_IP:port (a forwarder in the namespace) -> veth -> HOST_IP:port2 (a forwarder in
    the root namespace) -> the server on loopback.
    """
    half = f"{rtt_ms / 2:g}ms"
    cmds = [
        f"ip netns add {NETNS}",
        f"ip link add {VETH_HOST} type veth peer name {VETH_NS}",
        f"ip link set {VETH_NS} netns {NETNS}",
        f"ip addr add {HOST_IP}/30 dev {VETH_HOST}",
        f"ip link set {VETH_HOST} up",
        f"ip netns exec {NETNS} ip addr add {NS_IP}/30 dev {VETH_NS}",
        f"ip netns exec {NETNS} ip link set {VETH_NS} up",
        f"ip netns exec {NETNS} ip link set lo up",
        f"tc qdisc add dev {VETH_HOST} root netem delay {half} rate {mbit:g}mbit",
        f"ip netns exec {NETNS} tc qdisc add dev {VETH_NS} root netem delay {half} rate {mbit:g}mbit",
    ]
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in cmds:
            subprocess.run(cmd.split(), check=True, capture_output=True)
        port2, port = _free_port(), _free_port()
        helpers.append(_helper("--forward", f"{HOST_IP}:{port2}", f"127.0.0.1:{server_port}"))
        _wait_port(HOST_IP, port2)
        helpers.append(_helper("--forward", f"{NS_IP}:{port}", f"{HOST_IP}:{port2}", netns=NETNS))
        _wait_port(NS_IP, port)
        yield f"http://{NS_IP}:{port}"
    finally:
        for proc in helpers:
            proc.terminate()
            proc.wait()
        subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)


@contextlib.contextmanager
def proxy_link(server_port: int, rtt_ms: float, mbit: float) -> Iterator[str]:
    """An endpoint reaching 127.0.0.1:server_port through the delay proxy, in its own process
    (so that its threads do not compete with the client's for one interpreter)."""
    port = _free_port()
    proc = _helper("--delay-proxy", str(port), str(server_port), str(rtt_ms), str(mbit))
    try:
        _wait_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(listen: tuple[str, int], target: tuple[str, int], up: Link | None, down: Link | None) -> None:
    """Forward connections from ``listen`` to ``target`` until killed (a helper process)."""
    server = socket.create_server(listen)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(target)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _pump(client, upstream, up)
        _pump(upstream, client, down)


# --------------------------------------------------------------------------- measurements


def _median(fn: Callable[[], Any], reps: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


class _Sink:
    """A file object that counts and drops what it is given."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import _services
    from skyplug.core import config
    from skyplug.core.source import BytesSource
    from skyplug.core.uri import parse_uri
    from skyplug.plugins.locators.multisite import eviction, sim
    from skyplug.plugins.locators.multisite.context import get_context
    from skyplug.plugins.locators.multisite.locator import SkySource, open_sky
    from skyplug.plugins.locators.multisite.write import put_object
    from skyplug.plugins.locators.s3 import client_for

    services = _services()
    work = Path(tempfile.mkdtemp(prefix="skyplug-bench-"))
    started = [
        services.start_s3(args.backend, "edge", "eu-west-1"),
        services.start_s3(args.backend, "lake", "us-east-1"),
    ]
    edge_svc, lake_svc = started
    link_mode, why = args.link, None
    if link_mode in ("auto", "netns"):
        why = _netem_works()
        if why and link_mode == "netns":
            raise SystemExit(f"--link netns: {why}")
        link_mode = "proxy" if why else "netns"
    stack = contextlib.ExitStack()
    try:
        if link_mode == "netns":
            lake_endpoint = stack.enter_context(netns_link(lake_svc.port, args.rtt_ms, args.mbit))
        else:
            lake_endpoint = stack.enter_context(proxy_link(lake_svc.port, args.rtt_ms, args.mbit))
        sites = {}
        for name, svc, endpoint, egress in (
            ("edge", edge_svc, edge_svc.endpoint, 0.09),
            ("lake", lake_svc, lake_endpoint, 0.02),
        ):
            os.environ[f"SKYPLUG_SITE_{name.upper()}_ACCESS_KEY_ID"] = svc.access_key
            os.environ[f"SKYPLUG_SITE_{name.upper()}_SECRET_ACCESS_KEY"] = svc.secret_key
            sites[name] = {
                "type": "s3",
                "endpoint": endpoint,
                "region": svc.region,
                "egress_per_gb": egress,
                "storage_per_gb_month": 0.023,
                "read_timeout": 120,
            }
        raw = {
            "sites": sites,
            "default_site": "edge",
            "client_site": "edge",
            "multisite": {"db": f"sqlite:///{work / 'loc.db'}", "trace": str(work / "trace.csv")},
        }
        cfg = config.Config.from_dict(raw)
        config.set_config(cfg)
        ctx = get_context(cfg)
        bucket = f"bench{uuid.uuid4().hex[:8]}"
        size = args.size_mib * 1024 * 1024
        data = os.urandom(size)
        lake_client = client_for(cfg.site("lake"))
        report: dict[str, Any] = {
            "s3_server": edge_svc.version,
            "link": link_mode,
            "link_fallback_reason": why,
            "rtt_ms": args.rtt_ms,
            "mbit": args.mbit,
            "object_bytes": size,
            "reps": args.reps,
        }

        def fresh(i: int) -> SkySource:
            obj, _ = put_object(
                ctx, BytesSource("mem", data[:-1] + bytes([i % 256]), "v"), bucket, f"o{i}", "lake"
            )
            src = open_sky(parse_uri(obj.uri), "edge")
            assert isinstance(src, SkySource)
            return src

        warm = fresh(-1)  # creates the edge bucket and warms the connections: not measured
        warm.write_to(_Sink())  # type: ignore[arg-type]
        first = fresh(0)
        rep = ctx.db.replicas(first.obj.id)[0]
        direct, direct_all = _median(
            lambda: lake_client.get_object(Bucket=rep.pbucket, Key=rep.pkey)["Body"].read(), args.reps
        )
        colds = [fresh(i + 1) for i in range(args.reps)]
        it = iter(colds)
        sinks: list[_Sink] = []

        def cold_read() -> None:
            sink = _Sink()
            next(it).write_to(sink)  # type: ignore[arg-type]
            sinks.append(sink)

        miss, miss_all = _median(cold_read, args.reps)
        assert all(s.n == size for s in sinks)
        assert all(c.candidates()[0].local for c in colds), "every cold read left a verified edge replica"
        hot = colds[0]
        hit, hit_all = _median(lambda: hot.write_to(_Sink()), args.reps)  # type: ignore[arg-type]
        range_hit, _ = _median(lambda: hot.read(size // 2, size // 2 + 65536), args.reps * 5)
        ctx.settings.policies["*"] = type(ctx.settings.placement(bucket, "x"))("write-local")
        cold_range = fresh(10_000)
        range_miss, _ = _median(lambda: cold_range.read(size // 3, size // 3 + 65536), args.reps * 5)
        locate, _ = _median(lambda: open_sky(parse_uri(hot.obj.uri), "edge").candidates(), 50)
        report.update(
            {
                "direct_remote_get_s": direct,
                "sky_miss_s": miss,
                "sky_hit_s": hit,
                "miss_overhead": miss / direct - 1,
                "range64k_hit_ms": range_hit * 1000,
                "range64k_remote_ms": range_miss * 1000,
                "locate_ms": locate * 1000,
                "samples_s": {"direct": direct_all, "miss": miss_all, "hit": hit_all},
                "evicted_after": len(eviction.plan(ctx)),
            }
        )
        prices = sim.Prices(
            egress={"edge": 0.09, "lake-a": 0.02, "lake-b": 0.02},
            storage={"edge": 0.023, "lake-a": 0.023, "lake-b": 0.023},
        )
        trace = sim.taska_trace(seed=args.seed)
        costs = {p: sim.simulate(trace, prices, p) for p in sim.expand(["all"])}
        baseline = min(costs["always-remote"]["total"], costs["replicate-all"]["total"])
        report["policies"] = {
            p: {
                "total": r["total"],
                "vs_cheaper_baseline": r["total"] / baseline,
                "vs_optimum": r["total"] / costs["optimum"]["total"],
                "hit_ratio": r["hit_ratio"],
                "gb_moved": r["bytes_moved"] / 1e9,
            }
            for p, r in costs.items()
        }
        report["trace_accesses"] = len(trace)
        return report
    finally:
        stack.close()
        config.set_config(None)
        for svc in started:
            svc.stop()
        shutil.rmtree(work, ignore_errors=True)


def print_report(r: dict[str, Any]) -> None:
    print(f"S3 server: {r['s3_server']} (two instances: edge, lake)")
    link = f"{r['link']} (RTT {r['rtt_ms']:g} ms, {r['mbit']:g} Mbit/s)"
    if r["link_fallback_reason"]:
        link += f"; netns/netem not used: {r['link_fallback_reason']}"
    print(f"WAN link:  {link}")
    mib = r["object_bytes"] / 2**20
    print(f"object:    {mib:g} MiB, median of {r['reps']}")
    print(f"direct remote GET (boto3):        {r['direct_remote_get_s']:8.3f} s")
    print(
        f"sky miss (copy-on-read, verified):{r['sky_miss_s']:8.3f} s   "
        f"overhead {r['miss_overhead']:+.1%} (goal <= +10%)"
    )
    print(f"sky hit (edge replica):           {r['sky_hit_s']:8.3f} s")
    print(
        f"64 KiB range, hit / remote:       {r['range64k_hit_ms']:8.1f} ms / {r['range64k_remote_ms']:.1f} ms"
    )
    print(f"locate (DB + ranking):            {r['locate_ms']:8.2f} ms")
    print(
        f"\npolicy cost on a TASKA-like trace ({r['trace_accesses']} accesses; "
        "edge $0.09/GB, lakes $0.02/GB, "
        "$0.023/GB-month)"
    )
    print(
        f"{'policy':15} {'total $':>9} {'/cheaper baseline':>18} {'/optimum':>9} "
        f"{'hit ratio':>10} {'GB moved':>9}"
    )
    for p, c in r["policies"].items():
        print(
            f"{p:15} {c['total']:9.3f} {c['vs_cheaper_baseline']:18.2f} {c['vs_optimum']:9.2f} "
            f"{c['hit_ratio']:10.3f} {c['gb_moved']:9.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="seaweedfs", choices=("seaweedfs", "swift"))
    ap.add_argument("--size-mib", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rtt-ms", type=float, default=80.0)
    ap.add_argument("--mbit", type=float, default=100.0)
    ap.add_argument("--link", default="auto", choices=("auto", "netns", "proxy"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="Also write the report as JSON here.")
    ap.add_argument("--forward", nargs=2, metavar=("LISTEN", "TARGET"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--delay-proxy", nargs=4, metavar=("PORT", "TARGET_PORT", "RTT_MS", "MBIT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.forward:
        (lhost, lport), (thost, tport) = (x.rsplit(":", 1) for x in args.forward)
        _serve((lhost, int(lport)), (thost, int(tport)), None, None)
    if args.delay_proxy:
        port, target, rtt, mbit = args.delay_proxy
        rate, delay = float(mbit) * 1e6 / 8, float(rtt) / 2000
        _serve(("127.0.0.1", int(port)), ("127.0.0.1", int(target)), Link(rate, delay), Link(rate, delay))
    report = run(args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
