"""Ranged reads: planning, exact bytes (local, zip, S3), stale objects, retries."""

from __future__ import annotations

import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skyplug
from skyplug.core.errors import FormatError, NotFound, SiteError, StaleObjectError
from skyplug.core.source import TransientError, plan_ranges
from skyplug.core.zip import ZipTree
from skyplug.plugins.locators.local import LocalSource, LocalTree

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = np.random.default_rng(1).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    path = tmp_path_factory.mktemp("blob") / "blob.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture(scope="module")
def stored_zip(tmp_path_factory: pytest.TempPathFactory, blob: tuple[Path, bytes]) -> Path:
    path = tmp_path_factory.mktemp("zip") / "SB001.ms.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("SB001.ms/table.info", b"Type = Measurement Set\n")
        zf.write(blob[0], "SB001.ms/table.f2_TSM0")
        zf.writestr("SB001.ms/notes.txt", b"x" * 5000, compress_type=zipfile.ZIP_DEFLATED)
    return path


ranges_strategy = st.lists(
    st.tuples(st.integers(0, SIZE), st.integers(0, 2 * 1024 * 1024)).map(
        lambda t: (t[0], min(SIZE, t[0] + t[1]))
    ),
    min_size=1,
    max_size=12,
)


def test_plan_ranges_merges_near_and_splits_large() -> None:
    assert plan_ranges([(0, 10), (20, 30), (1000, 1010)], max_gap=15) == [(0, 30), (1000, 1010)]
    assert plan_ranges([(0, 100)], max_part=40) == [(0, 40), (40, 80), (80, 100)]
    assert plan_ranges([(5, 5), (3, 9), (1, 4)], max_gap=0) == [(1, 9)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ranges=ranges_strategy)
def test_local_ranges_exact(blob: tuple[Path, bytes], ranges: list[tuple[int, int]]) -> None:
    src = LocalSource(blob[0])
    src.max_part = 512 * 1024  # exercise splitting
    assert src.read_ranges(ranges) == [blob[1][s:e] for s, e in ranges]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ranges=ranges_strategy)
def test_zip_member_ranges_exact(
    stored_zip: Path, blob: tuple[Path, bytes], ranges: list[tuple[int, int]]
) -> None:
    tree = skyplug.open_target(stored_zip)
    assert isinstance(tree, ZipTree)
    got = tree.read_ranges([("SB001.ms/table.f2_TSM0", s, e) for s, e in ranges])
    assert got == [blob[1][s:e] for s, e in ranges]


def test_zip_deflate_member_warns_and_is_exact(stored_zip: Path) -> None:
    tree = skyplug.open_target(stored_zip)
    with pytest.warns(skyplug.core.errors.SkyplugWarning, match="DEFLATE member read whole"):
        assert tree.read_ranges([("SB001.ms/notes.txt", 10, 20)]) == [b"x" * 10]
    assert tree.members()["SB001.ms/table.info"] == 23


def test_out_of_bounds_range_is_a_format_error(blob: tuple[Path, bytes]) -> None:
    with pytest.raises(FormatError, match=r"outside the object"):
        LocalSource(blob[0]).read(SIZE - 5, SIZE + 5)


def test_changed_local_file_raises_stale(tmp_path: Path) -> None:
    path = tmp_path / "obj.bin"
    path.write_bytes(b"a" * 1000)
    src = LocalSource(path)
    assert src.read(0, 4) == b"aaaa"
    version = src.version
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(StaleObjectError, match="changed"):
        src.read(4, 8)
    with pytest.raises(StaleObjectError):
        LocalSource(path, expected_version=version).read(0, 1)


def test_local_tree_version_and_missing_member(tmp_path: Path) -> None:
    (tmp_path / "t.ms" / "ANTENNA").mkdir(parents=True)
    (tmp_path / "t.ms" / "table.dat").write_bytes(b"x" * 10)
    (tmp_path / "t.ms" / "ANTENNA" / "table.dat").write_bytes(b"y" * 5)
    tree = LocalTree(tmp_path / "t.ms")
    assert tree.members() == {"table.dat": 10, "ANTENNA/table.dat": 5}
    assert tree.read_ranges([("ANTENNA/table.dat", 1, 3), ("table.dat", 0, 2)]) == [b"yy", b"xx"]
    with pytest.raises(NotFound, match="no member"):
        tree.source("table.f0")
    (tmp_path / "t.ms" / "table.dat").write_bytes(b"z" * 11)
    with pytest.raises(StaleObjectError):
        LocalTree(tmp_path / "t.ms", expected_version=tree.version).members()


class FlakySource(LocalSource):
    """Fails the first ``fails`` fetches with a transient error."""

    def __init__(self, path: Path, fails: int) -> None:
        super().__init__(path)
        self.fails = fails

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        if self.fails > 0:
            self.fails -= 1
            raise TransientError("injected 503")
        return super()._fetch(start, end, version)


def test_transient_failures_are_retried(blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("skyplug.core.source.BACKOFF", 0.001)
    src = FlakySource(blob[0], fails=2)
    assert src.read(100, 200) == blob[1][100:200]
    assert src.stats.retries == 2
    src = FlakySource(blob[0], fails=100)
    with pytest.raises(SiteError, match=r"failed after 5 attempts: injected 503"):
        src.read(0, 10)


class TearingSource(LocalSource):
    """Its first ``fails`` reads into a buffer write garbage into half of it, then fail."""

    def __init__(self, path: Path, fails: int) -> None:
        super().__init__(path)
        self.fails, self.lock = fails, threading.Lock()

    def _fetch_into(self, start: int, end: int, version: str, out: memoryview) -> int:
        with self.lock:
            tear, self.fails = self.fails > 0, self.fails - 1
        if tear:
            out[: len(out) // 2] = b"\xff" * (len(out) // 2)
            raise TransientError("injected reset mid-body")
        return super()._fetch_into(start, end, version, out)


def test_retried_parts_leave_no_torn_bytes(blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("skyplug.core.source.BACKOFF", 0.001)
    src = TearingSource(blob[0], fails=3)
    src.max_part = 1 << 20
    (got,) = src.read_buffers([(5, SIZE)])
    assert got == blob[1][5:]
    assert (src.stats.requests, src.stats.retries, src.stats.bytes) == (4, 3, SIZE - 5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ranges=ranges_strategy, cached=st.integers(0, 300_000))
def test_local_buffers_exact(blob: tuple[Path, bytes], ranges: list[tuple[int, int]], cached: int) -> None:
    """Split, merged and partly cached (the bytes first read from offset 0) ranges: exact, and
    fetched with the requests read_ranges makes."""
    src = LocalSource(blob[0])
    src.max_part = 700_000
    src.read(0, cached)
    before = src.stats.as_dict()
    assert src.read_buffers(ranges) == [blob[1][s:e] for s, e in ranges]
    between = src.stats.as_dict()
    src.read_ranges(ranges)
    after = src.stats.as_dict()
    assert {k: between[k] - before[k] for k in before} == {k: after[k] - between[k] for k in before}


# --- S3 (moto by default; --s3-backends moto,swift,seaweedfs for real servers) -----------------


@pytest.mark.s3
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ranges=ranges_strategy)
def test_s3_ranges_exact(s3_blob: tuple[str, bytes], ranges: list[tuple[int, int]]) -> None:
    src = skyplug.open_target(s3_blob[0])
    assert src.read_ranges(ranges) == [s3_blob[1][s:e] for s, e in ranges]


@pytest.fixture
def s3_blob(s3env, blob: tuple[Path, bytes]) -> tuple[str, bytes]:
    return s3env.upload(blob[0], "blob.bin"), blob[1]


@pytest.mark.s3
def test_s3_zip_member_exact(s3env, stored_zip: Path, blob: tuple[Path, bytes]) -> None:
    uri = s3env.upload(stored_zip)
    tree = skyplug.open_target(uri)
    assert isinstance(tree, ZipTree)
    rng = np.random.default_rng(3)
    reqs = [
        ("SB001.ms/table.f2_TSM0", int(a), int(a) + int(n)) for a, n in rng.integers(0, SIZE // 2, (20, 2))
    ]
    assert tree.read_ranges(reqs) == [blob[1][s:e] for _, s, e in reqs]


@pytest.mark.s3
def test_s3_changed_object_raises_stale(s3env) -> None:
    cli = s3env.client()
    cli.put_object(Bucket=s3env.bucket, Key="obj", Body=b"a" * 4096)
    src = skyplug.open_target(f"s3://{s3env.bucket}/obj")
    assert src.read(0, 4) == b"aaaa"
    cli.put_object(Bucket=s3env.bucket, Key="obj", Body=b"b" * 4096)
    with pytest.raises(StaleObjectError, match=r"s3://.*/obj.*changed since it was indexed"):
        src.read(100, 200)


@pytest.mark.s3
def test_s3_missing_object_and_prefix_tree(s3env, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no such object.*site 'edge'|site 'edge'.*no such object"):
        skyplug.open_target(f"s3://{s3env.bucket}/absent.bin")
    (tmp_path / "d.ms" / "SUB").mkdir(parents=True)
    (tmp_path / "d.ms" / "table.dat").write_bytes(b"t" * 100)
    (tmp_path / "d.ms" / "SUB" / "table.dat").write_bytes(b"s" * 50)
    tree = skyplug.open_target(s3env.upload(tmp_path / "d.ms"))
    assert tree.members() == {"table.dat": 100, "SUB/table.dat": 50}
    assert tree.read_ranges([("SUB/table.dat", 0, 3)]) == [b"sss"]


@pytest.mark.s3
def test_s3_server_faults_are_retried_then_reported(s3env, fault_proxy, monkeypatch) -> None:
    monkeypatch.setattr("skyplug.core.source.BACKOFF", 0.01)
    cli = s3env.client()
    cli.put_object(Bucket=s3env.bucket, Key="f.bin", Body=bytes(range(256)) * 64)
    site = s3env.config.site("edge")
    proxied = skyplug.Site.from_dict("edge", {**site.public(), "endpoint": fault_proxy.endpoint})
    src = skyplug.open_target(f"s3://{s3env.bucket}/f.bin", proxied)
    assert src.size == 256 * 64
    fault_proxy.set_fault("status", count=2)
    assert src.read(0, 256) == bytes(range(256))
    assert src.stats.retries == 2
    fault_proxy.set_fault("reset", count=2)
    assert src.read(256, 512) == bytes(range(256))
    fault_proxy.set_fault("status", count=1000)
    t0 = time.monotonic()
    with pytest.raises(SiteError, match=r"s3://.*f\.bin.*failed after 5 attempts.*503|SlowDown"):
        src.read(512, 600)
    assert time.monotonic() - t0 < 30
    fault_proxy.set_fault(None)


@pytest.mark.s3
@pytest.mark.parametrize("reader", ["socket", "botocore body"])
def test_s3_body_cut_mid_buffer_is_read_again_whole(s3env, fault_proxy, monkeypatch, reader: str) -> None:
    """A connection cut while a part is read into its buffer: the part is fetched again, whole,
    whether read from the socket or through botocore's body."""
    from skyplug.plugins.locators import s3 as s3loc

    monkeypatch.setattr("skyplug.core.source.BACKOFF", 0.01)
    if reader != "socket":
        monkeypatch.setattr(s3loc, "_wire", lambda body: None)
    data = os.urandom(600_000)
    s3env.client().put_object(Bucket=s3env.bucket, Key="cut.bin", Body=data)
    site = s3env.config.site("edge")
    proxied = skyplug.Site.from_dict("edge", {**site.public(), "endpoint": fault_proxy.endpoint})
    src = skyplug.open_target(f"s3://{s3env.bucket}/cut.bin", proxied)
    assert src.size == len(data)
    src.max_part = 250_000
    fault_proxy.set_fault("cut", count=1, cut_after=100_000)
    (got,) = src.read_buffers([(0, len(data))])
    assert got == data
    assert (src.stats.requests, src.stats.retries, src.stats.bytes) == (3, 1, len(data))
    fault_proxy.set_fault(None)


@pytest.mark.s3
def test_s3_stopped_server_is_reported(s3env, monkeypatch) -> None:
    import socket

    monkeypatch.setattr("skyplug.core.source.BACKOFF", 0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = skyplug.Site.from_dict("dead", {"type": "s3", "endpoint": f"http://127.0.0.1:{port}"})
    monkeypatch.setenv("SKYPLUG_SITE_DEAD_ACCESS_KEY_ID", "AKIDEAD")
    monkeypatch.setenv("SKYPLUG_SITE_DEAD_SECRET_ACCESS_KEY", "dead-secret-value")
    t0 = time.monotonic()
    with pytest.raises(SiteError, match=r"failed after 5 attempts.*site 'dead'.*cannot connect"):
        skyplug.open_target("s3://b/k.bin", dead).read(0, 1)
    assert time.monotonic() - t0 < 20


@pytest.mark.s3
def test_s3_prefix_partition_members_need_no_list(s3env, tmp_path: Path, monkeypatch) -> None:
    """A partition names its members' sizes and ETags: the worker reads them with no LIST,
    lists (and checks the tree's version) only when asked for another member."""
    from skyplug.plugins.locators import s3 as s3loc

    (tmp_path / "d.ms").mkdir()
    (tmp_path / "d.ms" / "table.f2_TSM0").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "d.ms" / "table.dat").write_bytes(b"t" * 100)
    uri = s3env.upload(tmp_path / "d.ms")
    tree = skyplug.open_target(uri)
    container = tree.container(["table.f2_TSM0"])
    listed = []
    real_list = s3loc.list_prefix
    monkeypatch.setattr(s3loc, "list_prefix", lambda *a: listed.append(a) or real_list(*a))
    worker = skyplug.open_target(uri, version=tree.version, container=container)
    assert worker.read_ranges([("table.f2_TSM0", 256, 260)]) == [bytes(range(4))]
    assert not listed and worker.version == tree.version
    assert worker.read_member("table.dat") == b"t" * 100
    assert len(listed) == 1
    s3env.client().put_object(Bucket=s3env.bucket, Key="d.ms/table.f2_TSM0", Body=b"x" * 2048)
    stale = skyplug.open_target(uri, version=tree.version, container=container)
    with pytest.raises(StaleObjectError):
        stale.read_ranges([("table.f2_TSM0", 0, 4)])
    with pytest.raises(StaleObjectError):
        skyplug.open_target(uri, version=tree.version, container=container).members()
