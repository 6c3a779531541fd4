"""A fill killed with SIGKILL mid-way: no ready replica with wrong bytes; rolled back, then refilled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3

from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite.locator import open_sky

ROOT = Path(__file__).resolve().parents[2]


def test_fill_killed_mid_way_is_rolled_back_and_refilled(sky, tmp_path: Path, clock) -> None:
    sky.apply(lease_seconds=2)
    data = os.urandom(24 * 1024 * 1024)
    obj = sky.put(data, "kill.bin", at="lake-a")
    svc = sky.services["edge"]
    direct = boto3.session.Session().client(  # bypasses the proxy that slows skyplug down
        "s3",
        endpoint_url=svc.endpoint,
        region_name=svc.region,
        aws_access_key_id=svc.access_key,
        aws_secret_access_key=svc.secret_key,
    )
    svc.proxy.set_fault("stall", count=None, seconds=1.0)  # every request to the edge waits 1 s
    cmd = [
        sys.executable,
        "-m",
        "skyplug.cli",
        "--config",
        str(sky.write_toml()),
        "cat",
        sky.uri("kill.bin"),
        "--at",
        "edge",
    ]
    with (tmp_path / "out").open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not _uploaded_parts(direct, sky.bucket):  # kill once parts of the replica are stored
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()[-800:]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        svc.proxy.clear()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert sky.states(obj)["edge"] == "pending"  # never ready, and its bytes are not an object
    assert direct.list_objects_v2(Bucket=sky.bucket).get("Contents", []) == []
    clock.now = time.time()  # the dead filler's lease (2 s, on the real clock) ends by now + 2 s
    clock.advance(2.5)
    sky.monkeypatch.setattr(sky.ctx.db, "clock", clock)
    src = open_sky(parse_uri(sky.uri("kill.bin")), "edge")
    assert src.read(0, len(data)) == data
    rep = {r.site: r for r in sky.ctx.db.replicas(obj.id)}["edge"]
    assert rep.state == "ready" and rep.checksum == obj.version
    assert (
        direct.list_multipart_uploads(Bucket=sky.bucket).get("Uploads", []) == []
    )  # the partial one aborted
    assert direct.get_object(Bucket=rep.pbucket, Key=rep.pkey)["Body"].read() == data


def _uploaded_parts(client, bucket: str) -> int:
    """Parts stored by unfinished multipart uploads in a bucket (0 while it does not exist)."""
    if not any(b["Name"] == bucket for b in client.list_buckets()["Buckets"]):
        return 0
    ups = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sum(
        len(client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in ups
    )
