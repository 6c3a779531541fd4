"""The Source contract (``skyplug.core.source.Source``), checked on every implementation.

:class:`SourceContract` is reusable: subclass it and give a ``make`` fixture returning
``make(data) -> (source, change)``, where ``change()`` alters the object behind the source's back
(same size, other bytes). Local files, S3 objects, STORED zip members and ``sky://`` objects pass it.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyplug.core.dataset import open_target
from skyplug.core.errors import FormatError, StaleObjectError
from skyplug.core.source import Source
from skyplug.core.uri import parse_uri
from tests.multisite.conftest import Sky, sky_services  # noqa: F401 (the fixture sky:// runs on)

Make = Callable[[bytes], tuple[Source, Callable[[], None]]]
SIZE = 300_000


def _other(data: bytes) -> bytes:
    """Same size, other bytes."""
    return bytes(b ^ 0x5A for b in data)


class SourceContract:
    """What every Source promises its callers (formats, engines, the CLI)."""

    @pytest.fixture
    def data(self) -> bytes:
        return os.urandom(SIZE)

    def test_size_and_version(self, make: Make, data: bytes) -> None:
        src, _ = make(data)
        assert src.size == len(data)
        assert isinstance(src.version, str) and src.version
        assert src.version == src.version  # stable while the object does not change

    def test_read_ranges_without_max_gap(self, make: Make, data: bytes) -> None:
        src, _ = make(data)
        ranges = [(200_000, 200_100), (10, 20), (15, 40_000), (SIZE - 1, SIZE), (0, SIZE)]
        assert src.read_ranges(ranges) == [data[s:e] for s, e in ranges]
        assert src.read(1234, 5678) == data[1234:5678]

    def test_read_ranges_with_max_gap(self, make: Make, data: bytes) -> None:
        src, _ = make(data)
        ranges = [(100, 200), (150_000, 150_010), (299_000, 299_500)]
        before = src.stats.requests
        assert src.read_ranges(ranges, max_gap=0) == [data[s:e] for s, e in ranges]
        apart = src.stats.requests - before
        before = src.stats.requests
        assert src.read_ranges(ranges, max_gap=SIZE) == [data[s:e] for s, e in ranges]
        merged = src.stats.requests - before
        assert apart == 3 and merged == 1  # the gap bound decides what is merged

    def test_empty_ranges(self, make: Make, data: bytes) -> None:
        src, _ = make(data)
        assert src.read_ranges([]) == []
        assert src.read_ranges([(7, 7), (SIZE, SIZE)]) == [b"", b""]
        assert src.read_ranges([(5, 5), (5, 9)], max_gap=0) == [b"", data[5:9]]

    @pytest.mark.parametrize("rng", [(-1, 3), (0, SIZE + 1), (9, 3), (SIZE + 5, SIZE + 9)])
    def test_out_of_bounds_is_one_clear_error(self, make: Make, data: bytes, rng: tuple[int, int]) -> None:
        src, _ = make(data)
        with pytest.raises(FormatError) as err:
            src.read_ranges([(0, 4), rng])
        assert src.uri in str(err.value) and "outside" in str(err.value)
        assert err.value.offset == rng[0]  # where the bad range starts
        assert len(str(err.value).splitlines()) == 1

    def test_a_changed_object_is_stale(self, make: Make, data: bytes) -> None:
        src, change = make(data)
        assert src.read(0, 10) == data[:10]
        change()
        with pytest.raises(StaleObjectError) as err:
            src.read(SIZE - 100, SIZE)
        assert len(str(err.value).splitlines()) == 1

    def test_read_buffers_are_writable_and_cost_what_read_ranges_costs(self, make: Make, data: bytes) -> None:
        src, _ = make(data)
        ranges = [(200_000, 200_100), (10, 20), (15, 40_000), (SIZE - 1, SIZE), (7, 7)]
        before = src.stats.as_dict()
        bufs = src.read_buffers(ranges)
        between = src.stats.as_dict()
        assert [bytes(b) for b in bufs] == [data[s:e] for s, e in ranges]
        assert src.read_ranges(ranges) == [data[s:e] for s, e in ranges]
        after = src.stats.as_dict()
        for key in ("requests", "bytes"):  # the same requests, counted alike
            assert between[key] - before[key] == after[key] - between[key] > 0
        assert all(isinstance(b, memoryview) and not b.readonly for b in bufs)
        bufs[0][:] = bytes(100)  # the caller's own: writing changes no later read
        assert src.read_buffers([(200_000, 200_100)])[0] == data[200_000:200_100]
        assert src.read_buffers([]) == []

    def test_a_split_range_lands_in_one_buffer(self, make: Make, data: bytes) -> None:
        src, _ = make(data)
        planner = getattr(src, "parent", src)  # a window (zip member) reads through its parent's plan
        planner.max_part = 70_000
        before = src.stats.requests
        (got,) = src.read_buffers([(1000, SIZE)])
        assert src.stats.requests - before == 5  # fetched in parts ...
        assert got == data[1000:]  # ... exactly, into one buffer: no joined copy
        assert memoryview(got.obj).nbytes == SIZE - 1000  # the buffer behind the view: the range

    def test_read_buffers_of_a_changed_object_are_stale(self, make: Make, data: bytes) -> None:
        src, change = make(data)
        assert src.read_buffers([(0, 10)]) == [data[:10]]
        change()
        with pytest.raises(StaleObjectError):
            src.read_buffers([(SIZE - 100, SIZE)])


class TestLocalSource(SourceContract):
    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        def make(data: bytes) -> tuple[Source, Callable[[], None]]:
            path = tmp_path / "obj.bin"
            path.write_bytes(data)
            src = open_target(str(path))
            assert isinstance(src, Source)
            return src, lambda: path.write_bytes(_other(data))

        return make


class TestS3Source(SourceContract):
    @pytest.fixture
    def make(self, s3env: Any) -> Make:
        def make(data: bytes) -> tuple[Source, Callable[[], None]]:
            s3env.client().put_object(Bucket=s3env.bucket, Key="obj.bin", Body=data)
            src = open_target(f"s3://{s3env.bucket}/obj.bin")
            assert isinstance(src, Source)

            def change() -> None:
                s3env.client().put_object(Bucket=s3env.bucket, Key="obj.bin", Body=_other(data))

            return src, change

        return make


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("first.txt", b"a member before, so the window does not start at 0")
        zf.writestr("dir/obj.bin", data)
    return buf.getvalue()


class TestZipMemberSource(SourceContract):
    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        def make(data: bytes) -> tuple[Source, Callable[[], None]]:
            path = tmp_path / "obj.zip"
            path.write_bytes(_zip(data))
            tree = open_target(str(path))
            src = tree.source("dir/obj.bin")  # type: ignore[union-attr]
            return src, lambda: path.write_bytes(_zip(_other(data)))

        return make


class TestSkySource(SourceContract):
    @pytest.fixture
    def make(
        self,
        sky_services: dict[str, Any],  # noqa: F811 (the imported fixture)
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> Make:
        from skyplug.plugins.locators.multisite.locator import open_sky

        sky = Sky(sky_services, tmp_path, monkeypatch)

        def make(data: bytes) -> tuple[Source, Callable[[], None]]:
            obj = sky.put(data, "obj.bin", at="edge")
            src = open_sky(parse_uri(sky.uri("obj.bin")), "edge")
            assert isinstance(src, Source)
            (rep,) = sky.ctx.db.replicas(obj.id)

            def change() -> None:  # its only replica rewritten behind our back
                sky.client("edge").put_object(Bucket=rep.pbucket, Key=rep.pkey, Body=_other(data))

            return src, change

        return make
