"""Issue 16's done test: 200 objects uploaded through the Nuvla stand-in while the sync job runs as
its own process, is SIGKILLed once and the broker is restarted once; the end is exactly 200
catalogue rows, queryable over TAP, no duplicate, every notification handled."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from skyplug.catalog import sync
from skyplug.plugins.publishers import nuvla as nuvla_pub
from tests.sync.conftest import Standin, SyncSite, s3_credential, upload_data_object
from tests.sync.test_sync import _subscribe_first

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]
N = 200
KILL_GATE, RESTART_GATE = 70, 140


class Job:
    """``skyplug catalog sync --listen`` as a child process, its output in a log file."""

    def __init__(self, site: SyncSite, args: list[str], name: str) -> None:
        self.log = site.tmp / f"{name}.log"
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "skyplug.cli", "-v", "catalog", "sync", *args],
                cwd=site.tmp,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
            )


def _count(site: SyncSite) -> int:
    """Catalogue rows, read-only (no catalogue object: it would refresh TAP_SCHEMA on every poll)."""
    path = site.tmp / "catalog.db"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM ivoa_obscore").fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0


def _wait_rows(site: SyncSite, n: int, stall: float = 45) -> int:
    """Wait until ``n`` rows; give up when no new row came for ``stall`` seconds (a shared,
    loaded machine slows progress, a hang stops it)."""
    count, last, since = 0, -1, time.monotonic()
    while True:
        count = _count(site)
        if count >= n:
            return count
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > stall:
            return count
        time.sleep(0.5)


def test_200_objects_survive_a_killed_job_and_a_broker_restart(
    sync_site: SyncSite,
    sample_files: dict[str, Path],
    fresh_mqtt_broker: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import pyvo

    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.server import TapServer

    broker, topic, client_id = fresh_mqtt_broker, "nuvla/data-object", "skyplug-sync-done"
    standin = Standin(sync_site.s3.services["edge"], f"{broker.url}/{topic}", tmp_path)
    jobs: list[Job] = []
    try:
        monkeypatch.setenv(nuvla_pub.KEY_ENV, standin.key)
        monkeypatch.setenv(nuvla_pub.SECRET_ENV, standin.secret)
        _subscribe_first(broker, topic, client_id)
        with sync_site.config_file.open("a") as fh:  # every record also goes back to Nuvla
            fh.write(f'\n[publishers.nuvla]\ntype = "nuvla"\nendpoint = "{standin.endpoint}"\n')
        args = ["--listen", f"{broker.url}/{topic}", "--nuvla", standin.endpoint, "--client-id", client_id]
        args += ["--state", sync_site.state_url, "--idle-exit", "3", "--publish-to", "nuvla", "--json"]
        jobs.append(Job(sync_site, args, "job1"))
        api = standin.client()
        cred = s3_credential(api, sync_site.s3.services["edge"])
        blobs = [(p.name, p.read_bytes()) for p in sample_files.values()]
        keys = [f"done/{i:03d}-{blobs[i % 3][0]}" for i in range(N)]
        uploaded: list[str] = []
        lock = threading.Lock()
        # gates keep both faults mid-way however fast the machine is: uploads from KILL_GATE wait
        # for the kill, uploads from RESTART_GATE for the broker restart
        killed, restarted = threading.Event(), threading.Event()

        def put(i: int) -> None:
            for gate, event in ((KILL_GATE, killed), (RESTART_GATE, restarted)):
                if i >= gate:
                    assert event.wait(300)
            rid = upload_data_object(api, cred, sync_site.bucket, keys[i], blobs[i % 3][1])
            with lock:
                uploaded.append(rid)

        def uploads_reach(n: int) -> None:
            deadline = time.monotonic() + 120
            while len(uploaded) < n and time.monotonic() < deadline:
                time.sleep(0.1)

        events: dict[str, int] = {}
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(put, i) for i in range(N)]
            assert _wait_rows(sync_site, 40) >= 40, jobs[0].log.read_text()
            jobs[0].proc.send_signal(signal.SIGKILL)  # mid-way, messages in flight and unacked
            jobs[0].proc.wait(10)
            events.update(killed_at_rows=_count(sync_site), killed_at_uploads=len(uploaded))
            killed.set()
            jobs.append(Job(sync_site, args, "job2"))
            want = events["killed_at_rows"] + 10  # the new job is connected and at work
            assert _wait_rows(sync_site, want) >= want, jobs[1].log.read_text()
            uploads_reach(RESTART_GATE - 10)
            events.update(restart_at_rows=_count(sync_site), restart_at_uploads=len(uploaded))
            broker.restart()  # uploads go on while it is down: the stand-in's notifications queue
            restarted.set()
            for f in futures:
                f.result(timeout=300)
        assert _wait_rows(sync_site, N) == N, jobs[1].log.read_text()
        jobs[1].proc.wait(30)  # exits after 3 s without notifications
        elapsed = time.monotonic() - started
        out = jobs[1].log.read_text()
        assert jobs[1].proc.returncode == 0, out
        assert events["killed_at_uploads"] <= KILL_GATE and events["restart_at_uploads"] <= RESTART_GATE, (
            events
        )

        rows = sync_site.rows()
        assert len(rows) == N and len({r["skyplug_uri"] for r in rows}) == N  # no duplicate
        assert sorted(r["skyplug_uri"] for r in rows) == sorted(f"s3://{sync_site.bucket}/{k}" for k in keys)
        state = sync.SyncState(sync_site.state_url)
        try:
            assert state.counts() == {"done": N}  # every notification handled, none failed
        finally:
            state.close()
        assert len(uploaded) == N and api.search("data-object", filter="state='READY'").count == N
        # Nuvla: one data-record per object, pointing at the data-object uploaded (none made twice)
        assert api.search("data-object").count == N
        recs = api.search("data-record", filter="tags='skyplug'", last=10000).resources
        assert len(recs) == N
        assert len({r.data["skyplug:obs_publisher_did"] for r in recs}) == N
        assert {r.data["data-object"] for r in recs} == set(uploaded)
        by_did = {r["obs_publisher_did"]: r for r in rows}
        sets = api.search("data-set", filter="tags='skyplug'", last=1000).resources
        want = {f"skyplug:data-set:obs_id:{r['obs_id']}" for r in rows}
        want |= {f"skyplug:data-set:dataproduct_type:{r['dataproduct_type']}" for r in rows}
        assert {t for ds in sets for t in ds.data["tags"] if t.startswith("skyplug:data-set:")} == want
        for ds in sets:  # each data-set's filter selects exactly its records
            (tag,) = [t for t in ds.data["tags"] if t.startswith("skyplug:data-set:")]
            field, value = tag.removeprefix("skyplug:data-set:").split(":", 1)
            got = api.search("data-record", filter=ds.data["data-record-filter"], last=10000).resources
            expect = {d for d, r in by_did.items() if str(r[field]) == value}
            assert {r.data["skyplug:obs_publisher_did"] for r in got} == expect, tag

        cat = open_catalog(sync_site.catalog_url)
        server = TapServer(cat, port=0, jobs_dir=tmp_path / "tap-jobs", maxrec=1000).start()
        try:
            tap = pyvo.dal.TAPService(server.url)
            n = tap.search("SELECT COUNT(*) AS n FROM ivoa.obscore").to_table()["n"][0]
            assert int(n) == N
            res = tap.search("SELECT DISTINCT skyplug_format FROM ivoa.obscore").to_table()
            assert {str(v) for v in res["skyplug_format"]} == {"ms", "hdf5", "fits"}
        finally:
            server.stop()
            cat.close()
        print(f"done test: {N} objects in {elapsed:.1f} s, {events}")
    finally:
        for job in jobs:
            if job.proc.poll() is None:
                job.proc.kill()
                job.proc.wait(10)
        standin.stop()
