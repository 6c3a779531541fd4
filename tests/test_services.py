"""Checks of the S3 test servers (tools/services.py) and the fault proxy (tools/faultproxy.py)."""

from __future__ import annotations

import hashlib
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from tests.servers.s3_services import faultproxy

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


def _status(err: ClientError) -> int:
    return int(err.response["ResponseMetadata"]["HTTPStatusCode"])


def _location(region: str) -> dict[str, Any]:
    if region == "us-east-1":
        return {}
    return {"CreateBucketConfiguration": {"LocationConstraint": region}}


def _empty_and_delete(client: Any, bucket: str) -> None:
    for up in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def client(s3_site: Any, s3_client_factory: Callable[..., Any]) -> Any:
    """boto3 client for the edge site (default retries)."""
    return s3_client_factory(s3_site)


@pytest.fixture
def bucket(client: Any, s3_site: Any) -> Iterator[str]:
    """A fresh bucket on the edge site, emptied and deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name, **_location(s3_site.region))
    yield name
    try:
        _empty_and_delete(client, name)
    except ClientError as exc:  # already deleted by the test
        if _status(exc) != 404:
            raise


def test_sites_started(s3_backend: str, s3_sites: dict[str, Any]) -> None:
    assert set(s3_sites) == {"edge", "lake"}
    assert s3_sites["edge"].region == "eu-west-1"
    assert s3_sites["lake"].region == "us-east-1"
    assert s3_sites["edge"].endpoint != s3_sites["lake"].endpoint
    for svc in s3_sites.values():
        assert svc.backend == s3_backend
        assert svc.version.startswith(s3_backend + " ")
        assert svc.alive()
        assert type(svc).from_json(svc.to_json()) == svc


def test_botocore_signed_probe_accepted(s3_backend: str, s3_site: Any) -> None:
    """The readiness probe (ListBuckets signed by botocore's S3SigV4Auth) is accepted at the site's
    own region; servers that check signatures (all but moto) refuse it with a wrong secret or
    another region."""
    from tests.servers.s3_services import services

    probe = services.s3servers._signed_list_buckets
    assert probe(s3_site.port, s3_site.region, s3_site.access_key, s3_site.secret_key) == 200
    if s3_backend != "moto":
        assert probe(s3_site.port, s3_site.region, s3_site.access_key, "not-the-secret") == 403
        other = "us-east-1" if s3_site.region != "us-east-1" else "eu-west-1"
        assert probe(s3_site.port, other, s3_site.access_key, s3_site.secret_key) in (400, 403)


def test_put_and_random_ranges(client: Any, bucket: str) -> None:
    rng = random.Random(1234)
    data = rng.randbytes(3 * MiB)
    put = client.put_object(Bucket=bucket, Key="obj", Body=data)
    head = client.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    size = len(data)
    for i in range(200):
        kind = i % 4
        if kind == 0:  # open-ended
            start = rng.randrange(size)
            rng_header, expected = f"bytes={start}-", data[start:]
        elif kind == 1:  # suffix
            n = rng.randrange(1, 100_000)
            rng_header, expected = f"bytes=-{n}", data[-n:]
        else:
            start = rng.randrange(size)
            end = min(size - 1, start + rng.randrange(1, 200_000))
            rng_header, expected = f"bytes={start}-{end}", data[start : end + 1]
        resp = client.get_object(Bucket=bucket, Key="obj", Range=rng_header)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206, rng_header
        assert resp["Body"].read() == expected, rng_header


def test_if_match(client: Any, bucket: str) -> None:
    etag = client.put_object(Bucket=bucket, Key="k", Body=b"hello")["ETag"]
    assert client.get_object(Bucket=bucket, Key="k", IfMatch=etag)["Body"].read() == b"hello"
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=bucket, Key="k", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert _status(err.value) == 412
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"


def test_multipart_upload(client: Any, bucket: str) -> None:
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(MiB // 3)]
    up = client.create_multipart_upload(Bucket=bucket, Key="mp")
    parts = []
    for n, chunk in enumerate(parts_data, start=1):
        r = client.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=chunk)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    done = client.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    md5s = b"".join(hashlib.md5(c).digest() for c in parts_data)
    assert done["ETag"].strip('"') == f"{hashlib.md5(md5s).hexdigest()}-3"
    data = b"".join(parts_data)
    got = client.get_object(Bucket=bucket, Key="mp")
    assert got["ContentLength"] == len(data)
    assert got["Body"].read() == data
    a, b = 5 * MiB - 10, 5 * MiB + 9  # across the part boundary
    cross = client.get_object(Bucket=bucket, Key="mp", Range=f"bytes={a}-{b}")["Body"].read()
    assert cross == data[a : b + 1]


def test_delete(client: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="gone", Body=b"x")
    client.delete_object(Bucket=bucket, Key="gone")
    with pytest.raises(ClientError) as err:
        client.head_object(Bucket=bucket, Key="gone")
    assert _status(err.value) == 404
    client.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        client.head_bucket(Bucket=bucket)
    assert _status(err.value) == 404


def test_sites_are_separate(
    s3_backend: str, s3_sites: dict[str, Any], s3_client_factory: Callable[..., Any]
) -> None:
    edge, lake = (s3_client_factory(s3_sites[s]) for s in ("edge", "lake"))
    name = f"t-{uuid.uuid4().hex[:16]}"
    edge.create_bucket(Bucket=name, **_location("eu-west-1"))
    try:
        location = edge.get_bucket_location(Bucket=name)["LocationConstraint"]
        # SeaweedFS accepts any LocationConstraint but reports none (docs/testing.md).
        assert location == (None if s3_backend == "seaweedfs" else "eu-west-1")
        assert name not in [b["Name"] for b in lake.list_buckets()["Buckets"]]
    finally:
        _empty_and_delete(edge, name)


def test_wrong_secret_rejected(s3_backend: str, s3_site: Any, s3_client_factory: Callable[..., Any]) -> None:
    if s3_backend == "moto":
        pytest.skip("moto server checks no signatures by default (documented moto property)")
    bad = s3_client_factory(s3_site, secret_key="not-the-secret")
    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        bad.list_buckets()
    assert _status(err.value) == 403
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------ fault proxy


@pytest.fixture
def proxied(fault_proxy: Any, s3_site: Any, s3_client_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``make(**config)``: a client that goes through the fault proxy, retries disabled."""

    def make(**config: Any) -> Any:
        return s3_client_factory(s3_site, endpoint_url=fault_proxy.endpoint, max_attempts=1, **config)

    return make


def test_proxy_passthrough_keeps_signatures(
    fault_proxy: Any, proxied: Callable[..., Any], bucket: str
) -> None:
    c = proxied()
    data = os.urandom(3 * MiB)
    c.put_object(Bucket=bucket, Key="via-proxy", Body=data)
    assert c.get_object(Bucket=bucket, Key="via-proxy")["Body"].read() == data
    assert c.get_object(Bucket=bucket, Key="via-proxy", Range="bytes=5-9")["Body"].read() == (data[5:10])
    st = fault_proxy.stats()
    assert st["requests"] == st["forwarded_requests"] == 3
    # moto's werkzeug server closes each connection; swift and seaweedfs keep them alive.
    assert 1 <= st["upstream_connections"] == st["connections"] <= 3
    # byte counters (bench_workflow's "bytes moved"): bodies both ways, plus the HTTP heads
    assert st["methods"] == {"PUT": 1, "GET": 2}
    assert 3 * MiB < st["bytes_to_upstream"] < 3 * MiB + 16 * 1024
    assert 3 * MiB + 5 < st["bytes_from_upstream"] < 3 * MiB + 5 + 16 * 1024


def test_proxy_status_503(fault_proxy: Any, proxied: Callable[..., Any], bucket: str) -> None:
    c = proxied()
    c.put_object(Bucket=bucket, Key="k", Body=b"abc")
    fault_proxy.set_fault("status", count=1)
    with pytest.raises(ClientError) as err:
        c.get_object(Bucket=bucket, Key="k")
    assert _status(err.value) == 503
    assert err.value.response["Error"]["Code"] == "SlowDown"
    fault_proxy.set_fault("status", count=1)
    with pytest.raises(ClientError) as err:
        c.head_object(Bucket=bucket, Key="k")
    assert _status(err.value) == 503
    fault_proxy.set_fault("status", count=1)  # a PUT with a body (Expect: 100-continue)
    with pytest.raises(ClientError) as err:
        c.put_object(Bucket=bucket, Key="big", Body=os.urandom(2 * MiB))
    assert _status(err.value) == 503
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"  # fault used up
    st = fault_proxy.stats()
    assert st["faults_applied"]["status"] == 3
    assert st["requests"] - st["forwarded_requests"] == 3


def test_proxy_status_then_retry_succeeds(
    fault_proxy: Any, s3_site: Any, s3_client_factory: Callable[..., Any], bucket: str
) -> None:
    c = s3_client_factory(s3_site, endpoint_url=fault_proxy.endpoint, max_attempts=3)
    c.put_object(Bucket=bucket, Key="k", Body=b"abc")
    fault_proxy.set_fault("status", count=2)
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"
    assert fault_proxy.stats()["faults_applied"]["status"] == 2


def test_proxy_reset(fault_proxy: Any, proxied: Callable[..., Any], bucket: str) -> None:
    c = proxied()
    c.put_object(Bucket=bucket, Key="k", Body=b"abc")
    fault_proxy.set_fault("reset", count=1)
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        c.get_object(Bucket=bucket, Key="k")
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"
    assert fault_proxy.stats()["faults_applied"]["reset"] == 1


def test_proxy_cut(fault_proxy: Any, proxied: Callable[..., Any], bucket: str) -> None:
    c = proxied()
    data = os.urandom(256 * 1024)
    c.put_object(Bucket=bucket, Key="k", Body=data)
    fault_proxy.set_fault("cut", count=1, cut_after=4096)
    resp = c.get_object(Bucket=bucket, Key="k")
    with pytest.raises((IncompleteReadError, ResponseStreamingError)):
        resp["Body"].read()
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_proxy_stall(fault_proxy: Any, proxied: Callable[..., Any], bucket: str) -> None:
    c = proxied()
    c.put_object(Bucket=bucket, Key="k", Body=b"abc")
    fault_proxy.set_fault("stall", count=1, seconds=0.5)
    t0 = time.monotonic()
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"
    assert time.monotonic() - t0 >= 0.5
    impatient = proxied(read_timeout=0.5)
    fault_proxy.set_fault("stall", count=1, seconds=3)
    with pytest.raises(ReadTimeoutError):
        impatient.get_object(Bucket=bucket, Key="k")
    assert fault_proxy.stats()["faults_applied"]["stall"] == 2


def test_proxy_link_caps_all_connections_together(
    fault_proxy: Any, proxied: Callable[..., Any], bucket: str
) -> None:
    """Two concurrent GETs through a capped link take at least their bytes over the rate (less the
    bucket's burst), and the proxy counts them as it does on an uncapped link."""
    c = proxied()
    data = os.urandom(MiB)
    c.put_object(Bucket=bucket, Key="k", Body=data)

    def two_gets() -> tuple[int, int]:
        r0, b0 = fault_proxy.counts()
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda _: c.get_object(Bucket=bucket, Key="k")["Body"].read(), range(2)))
        assert got == [data, data]
        r1, b1 = fault_proxy.counts()
        return r1 - r0, b1 - b0

    free = two_gets()
    rate = 2 * MiB
    fault_proxy.set_link(rate=rate)
    assert fault_proxy.link == {"rate": rate, "latency": 0.0, "burst": faultproxy.LINK_BURST}
    t0 = time.monotonic()
    capped = two_gets()
    assert time.monotonic() - t0 >= (2 * MiB - faultproxy.LINK_BURST) / rate
    assert capped[0] == free[0] == 2
    assert abs(capped[1] - free[1]) < 1024  # the same bodies; heads may differ by a few bytes
    assert 2 * MiB < capped[1] < 2 * MiB + 4096
    fault_proxy.set_link()
    assert fault_proxy.link["rate"] is None and two_gets()[0] == 2
    with pytest.raises(ValueError, match="rate"):
        fault_proxy.set_link(rate=0)


def test_proxy_link_latency_per_request(
    s3_site: Any,
    s3_client_factory: Callable[..., Any],
    fault_proxy: Any,
    proxied: Callable[..., Any],
    bucket: str,
) -> None:
    """Latency is added to every request, set at run time or when the proxy starts."""
    c = proxied()
    c.put_object(Bucket=bucket, Key="k", Body=b"abc")
    fault_proxy.set_link(latency=0.2)
    t0 = time.monotonic()
    for _ in range(3):
        c.head_object(Bucket=bucket, Key="k")
    assert time.monotonic() - t0 >= 3 * 0.2
    assert fault_proxy.counts()[0] == 4
    url = urlsplit(s3_site.endpoint)
    with faultproxy.FaultProxy(url.hostname or "127.0.0.1", url.port or 80, latency=0.3) as slow:
        assert slow.link["latency"] == 0.3 and slow.link["rate"] is None
        c2 = s3_client_factory(s3_site, endpoint_url=slow.endpoint, max_attempts=1)
        t0 = time.monotonic()
        assert c2.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"
        assert time.monotonic() - t0 >= 0.3
