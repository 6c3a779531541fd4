"""What real S3 servers do that moto does not, and how skyplug handles it (reference/real_s3.md).

Run on every selected backend; assertions that only a real server can honour (signatures,
regions) are checked where the backend enforces them and said so where it does not (moto).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import skyplug
from skyplug.cli import cli
from skyplug.core.errors import SiteError
from skyplug.plugins.locators.s3 import client_for

pytestmark = pytest.mark.s3
MiB = 1024 * 1024


def _checks_signatures(s3env) -> bool:
    return s3env.services["edge"].backend != "moto"  # moto accepts any secret


def test_wrong_secret_is_one_clear_error_naming_the_site(s3env, tmp_path: Path, monkeypatch) -> None:
    np.save(tmp_path / "a.npy", np.arange(100))
    uri = s3env.upload(tmp_path / "a.npy")
    wrong = "wrong-secret-0123456789"
    monkeypatch.setenv("SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY", wrong)
    if not _checks_signatures(s3env):
        pytest.skip("moto checks no signature (reference/real_s3.md): nothing to refuse")
    t0 = time.monotonic()
    with pytest.raises(SiteError, match=r"site 'edge'.*access refused.*(SignatureDoesNotMatch|403)") as info:
        skyplug.open(uri).index()
    assert time.monotonic() - t0 < 5
    assert wrong not in str(info.value) and "retr" not in str(info.value)
    result = CliRunner().invoke(cli, ["index", uri])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "site 'edge'" in lines[0] and wrong not in result.output


def test_each_site_signs_for_its_own_region(s3env, tmp_path: Path) -> None:
    """edge and lake are two servers with their own region; each is read through its own."""
    data = np.arange(5000, dtype="<f8")
    np.save(tmp_path / "a.npy", data)
    for site in ("edge", "lake"):
        uri = s3env.upload(tmp_path / "a.npy", site=site)
        assert s3env.config.site(site).settings.region == s3env.services[site].region
        parts = skyplug.open(uri, site=site).plan("rows", 3)
        got = np.concatenate([p.load()["array"] for p in parts])
        assert np.array_equal(got, data)
        assert parts[0].site["region"] == s3env.services[site].region


def test_wrong_region_fails_fast_and_clearly(s3env, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(10))
    uri = s3env.upload(tmp_path / "a.npy")
    edge = s3env.config.site("edge")
    elsewhere = skyplug.Site.from_dict("edge", {**edge.public(), "region": "ap-south-1"})
    if s3env.services["edge"].backend != "swift":
        pytest.skip(f"{s3env.services['edge'].backend} accepts any region (reference/real_s3.md)")
    t0 = time.monotonic()
    with pytest.raises(SiteError, match=r"site 'edge'"):
        skyplug.open_target(uri, elsewhere).read(0, 4)
    assert time.monotonic() - t0 < 5


def test_addressing_style_is_per_site(s3env, monkeypatch) -> None:
    """Path style by default; virtual-host style when a site asks for it."""
    for what in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"):
        monkeypatch.setenv(f"SKYPLUG_SITE_VH_{what}", "test")
    edge = s3env.config.site("edge")
    endpoint = edge.settings.endpoint.replace("127.0.0.1", "localhost")  # no virtual hosts on an IP address
    virtual = skyplug.Site.from_dict("vh", {**edge.public(), "endpoint": endpoint, "addressing": "virtual"})
    urls: list[str] = []
    for site in (edge, virtual):
        client = client_for(site)
        client.meta.events.register(
            "before-send.s3.HeadObject", lambda request, **_: urls.append(request.url)
        )
        with contextlib.suppress(Exception):  # only the URL matters; *.localhost may not resolve
            client.head_object(Bucket=s3env.bucket, Key="absent")
    assert urls[0].endswith(f"/{s3env.bucket}/absent")
    assert f"//{s3env.bucket}." in urls[1] and urls[1].endswith("/absent")


def test_multipart_objects_read_exactly_across_parts(s3env, tmp_path: Path) -> None:
    """5 MiB parts (the real minimum), an ETag of the "-N" form, If-Match with it."""
    from boto3.s3.transfer import TransferConfig

    data = np.random.default_rng(5).integers(0, 256, 12 * MiB + 123, dtype=np.uint8).tobytes()
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    s3env.client().upload_file(
        str(path),
        s3env.bucket,
        "big.bin",
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    src = skyplug.open_target(f"s3://{s3env.bucket}/big.bin")
    assert src.version.strip('"').endswith("-3")
    ranges = [(5 * MiB - 10, 5 * MiB + 10), (0, 1), (12 * MiB, 12 * MiB + 123), (1000, 11 * MiB)]
    assert src.read_ranges(ranges) == [data[a:b] for a, b in ranges]


def test_nothing_depends_on_stored_checksums_or_metadata(s3env, tmp_path: Path) -> None:
    """Swift returns no flexible checksums and keeps 256 B of metadata: skyplug needs neither."""
    np.save(tmp_path / "a.npy", np.arange(1000, dtype="<i4"))
    uri = s3env.upload(tmp_path / "a.npy")
    head = s3env.client().head_object(Bucket=s3env.bucket, Key="a.npy", ChecksumMode="ENABLED")
    result = CliRunner().invoke(
        cli, ["fetch", uri, "--by", "rows", "-n", "2", "--out", str(tmp_path / "o"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sum(p["bytes_fetched"] for p in report["partitions"]) == 4000
    assert not head.get("Metadata")
