#!/usr/bin/env python3
"""Catalogue sync throughput: objects per second from MQTT notification to catalogue record.

A real S3 server (SeaweedFS by default, or Swift; never moto) and Debian's Mosquitto, both started
by tools/services.py on loopback. Each round uploads ``--objects`` small files (MS zip, h5parm, FITS
in turn) under fresh names, starts ``skyplug catalog sync --listen`` as its own process on a fresh
catalogue and state, waits until it listens, then publishes one ``{"uri": ...}`` notification per
object at QoS 1. Measured per round: from the first notification to the last state row written
(objects/s), and each object's latency (its notification to its record). Medians over ``--rounds``.

    .venv/bin/python -m bench.bench_sync [--backend seaweedfs|swift] [--objects 60] [--rounds 3]

Writes bench/results/sync.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import _services, report, s3_server


def _publish_all(broker: Any, topic: str, payloads: list[bytes]) -> list[float]:
    """Publish at QoS 1 on skyplug's selector loop; the send time of each message."""
    import paho.mqtt.client as mqtt

    from skyplug.catalog.mqttloop import SelectorLoop

    acked: set[int] = set()
    cond, connected = threading.Condition(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda *_a: connected.set()

    def on_publish(_c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with cond:
            acked.add(mid)
            cond.notify_all()

    client.on_publish = on_publish
    client.connect_async(broker.host, broker.port)
    loop = SelectorLoop(client).start()
    try:
        if not connected.wait(10):
            raise SystemExit("no CONNACK from the bench broker")
        sent, mids = [], []
        for payload in payloads:
            sent.append(time.time())
            mids.append(client.publish(topic, payload, qos=1).mid)
        with cond:
            if not cond.wait_for(lambda: all(m in acked for m in mids), 60):
                raise SystemExit("the bench broker did not acknowledge every notification")
        return sent
    finally:
        loop.stop()


def _subscribe(broker: Any, topic: str, client_id: str) -> None:
    """Open the job's persistent session first, so no notification can arrive before it exists."""
    import paho.mqtt.client as mqtt

    from skyplug.catalog.mqttloop import SelectorLoop

    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_a: done.set()
    client.connect_async(broker.host, broker.port)
    loop = SelectorLoop(client).start()
    try:
        if not done.wait(10):
            raise SystemExit("no SUBACK from the bench broker")
    finally:
        loop.stop()


def _wait_done(state_db: Path, n: int, timeout: float) -> list[tuple[str, float]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_db.exists():
            with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=10) as conn:
                try:
                    rows = conn.execute(
                        "SELECT uri, updated FROM skyplug_sync WHERE status = 'done'"
                    ).fetchall()
                except sqlite3.OperationalError:
                    rows = []
            if len(rows) >= n:
                return [(str(u), float(t)) for u, t in rows]
        time.sleep(0.2)
    raise SystemExit(f"only part of {n} objects synced after {timeout:.0f} s")


def one_round(server: Any, broker: Any, files: list[Path], n: int, root: Path) -> dict[str, float]:
    """Upload, start the job, notify; objects/s and latencies of one round."""
    prefix = f"r{uuid.uuid4().hex[:8]}"
    uris = [
        server.upload(files[i % len(files)], f"{prefix}/{i:04d}-{files[i % len(files)].name}")
        for i in range(n)
    ]
    wd = root / prefix
    wd.mkdir()
    svc = server.service
    (wd / "skyplug.toml").write_text(
        'default_site = "bench"\n[catalog]\nurl = "sqlite:///catalog.db"\n'
        f'[sites.bench]\ntype = "s3"\nendpoint = "{svc.endpoint}"\nregion = "{svc.region}"\n'
    )
    env = {**os.environ, "SKYPLUG_CONFIG": str(wd / "skyplug.toml"), "SKYPLUG_DATA_DIR": str(wd / "data")}
    env["SKYPLUG_CACHE_DIR"] = str(wd / "cache")
    topic, client_id = f"bench/{prefix}", f"bench-sync-{prefix}"
    _subscribe(broker, topic, client_id)
    cmd = [sys.executable, "-m", "skyplug.cli", "catalog", "sync", "--listen", f"{broker.url}/{topic}"]
    cmd += ["--client-id", client_id, "--state", "sqlite:///state.db", "--max-messages", str(n), "--json"]
    with open(wd / "job.log", "w") as log:
        job = subprocess.Popen(cmd, cwd=wd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "listening" not in (wd / "job.log").read_text():
            if job.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the sync job did not start:\n{(wd / 'job.log').read_text()}")
            time.sleep(0.1)
        sent = _publish_all(broker, topic, [json.dumps({"uri": u}).encode() for u in uris])
        done = dict(_wait_done(wd / "state.db", n, 600))
        job.wait(60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(10)
    latencies = [done[u] - t for u, t in zip(uris, sent, strict=True)]
    span = max(done.values()) - sent[0]
    return {
        "objects": n,
        "seconds": span,
        "objects_per_s": n / span,
        "latency_median_s": statistics.median(latencies),
        "latency_max_s": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="seaweedfs", choices=["seaweedfs", "swift"])
    parser.add_argument("--objects", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from skyplug.synthetic import fits, h5parm
    from skyplug.synthetic.ms import make_ms, zip_ms

    with tempfile.TemporaryDirectory() as tmp, s3_server(args.backend) as server:
        root = Path(tmp)
        files = [
            zip_ms(make_ms(root / "obs.ms", ntime=4, nchan=4, nant=4), root / "SB001.ms.zip"),
            h5parm.make_solutions(root / "SB001.h5", times=(8, 4)),
            fits.make_all(root / "fits")["cube4"],
        ]
        sizes = {p.name: p.stat().st_size for p in files}
        broker = _services().start_mqtt()
        try:
            rounds = [one_round(server, broker, files, args.objects, root) for _ in range(args.rounds)]
        finally:
            broker.stop()
    med = {
        k: statistics.median(r[k] for r in rounds)
        for k in ("objects_per_s", "latency_median_s", "latency_max_s")
    }
    report(
        "sync",
        server,
        {
            "what": "notification (MQTT QoS 1) to catalogue record: HEAD, index, catalogue add, provenance",
            "broker": broker.version,
            "files": sizes,
            "objects_per_round": args.objects,
            "rounds": rounds,
            "median": med,
        },
    )


if __name__ == "__main__":
    main()
