"""The same exactness and the same bytes from S3: an MS uploaded as a prefix and as a STORED zip."""

from __future__ import annotations

import pytest

import skyplug
from skyplug.core.dataset import bytes_read, open_target
from skyplug.core.load import load_partition
from skyplug.core.partition import Partition
from skyplug.core.source import Source
from skyplug.plugins.formats.ms.load import groups
from tests.ms.conftest import assert_equal_columns, fetched_buffer, reference

pytestmark = pytest.mark.s3


@pytest.mark.parametrize("layout", ["chansplit", "dysco", "twospw"])
def test_exact_from_s3_prefix_and_zip(ms_factory, s3env, layout: str) -> None:
    ms = ms_factory(layout)
    for uri in (
        s3env.upload(ms, f"{layout}.ms"),
        s3env.upload(ms_factory(layout, zip="stored"), f"{layout}.ms.zip"),
    ):
        ds = skyplug.open(uri)
        assert ds.index()["nrow"] > 0
        for by, n in [("time", 3), ("chan", 2)]:
            for p in ds.plan(by, n):
                q = Partition.from_json(p.to_json())  # as a remote worker gets it
                for got in groups(q.load()).values():  # one per window when their shapes differ
                    assert_equal_columns(got, reference(ms, got["ROWID"], p.selection.get("chan")))


def test_s3_bytes_equal_plain_and_zip(ms_factory, s3env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Source, "max_gap", 0)  # no coalescing: every request is a planned range
    prefix = s3env.upload(ms_factory("tcsm"), "SB226.ms")
    zipped = s3env.upload(ms_factory("tcsm", zip="stored"), "SB226.ms.zip")
    plain_ds, zip_ds = skyplug.open(prefix), skyplug.open(zipped)
    assert plain_ds.index()["small_bytes"] == zip_ds.index()["small_bytes"]
    for p, q in zip(plain_ds.plan("time", 4), zip_ds.plan("time", 4), strict=True):
        t = open_target(p.uri, p.site and s3env.config.site("edge"), version=p.version)
        load_partition(p, target=t)
        z = open_target(q.uri, s3env.config.site("edge"), version=q.version)
        structure = bytes_read(z)
        load_partition(q, target=z)
        assert bytes_read(t) == bytes_read(z) - structure == p.expected_bytes


def test_s3_zip_as_ms_reads_its_tiles_once(ms_factory, s3env, tmp_path, monkeypatch) -> None:
    """``--as ms`` from a zip in S3, coalescing on: each partition reads its planned bytes only,
    and a cold worker fetches the small files once per object version, then reuses them."""
    from skyplug.core import config
    from skyplug.core.load import fetch_partition

    uri = s3env.upload(ms_factory("casa", zip="stored"), "casa.ms.zip")
    parts = [Partition.from_json(p.to_json()) for p in skyplug.open(uri).plan("time", 3)]
    for p in parts:
        assert fetch_partition(p, tmp_path / "warm", as_="ms")["bytes_fetched"] == p.expected_bytes
    monkeypatch.setenv("SKYPLUG_CACHE_DIR", str(tmp_path / "cold-worker"))
    config.set_config(config.Config.from_dict(s3env.config.raw))
    first = fetch_partition(parts[0], tmp_path / "cold", as_="ms")["bytes_fetched"]
    assert first >= parts[0].expected_bytes + parts[0].meta["small_bytes"]
    for p in parts[1:]:
        assert fetch_partition(p, tmp_path / "cold", as_="ms")["bytes_fetched"] == p.expected_bytes


def test_s3_whole_cell_tiles_are_views_of_the_fetched_buffers(ms_factory, s3env) -> None:
    """From S3 too (prefix and zip): the arrays of whole-cell tiles are the buffers the GETs were
    read into, exact and writable."""
    ms = ms_factory("tcsm")
    for uri in (s3env.upload(ms, "zc.ms"), s3env.upload(ms_factory("tcsm", zip="stored"), "zc.ms.zip")):
        p = Partition.from_json(skyplug.open(uri).plan("time", 3)[2].to_json())
        got = p.load()
        assert_equal_columns(got, reference(ms, got["ROWID"]))
        assert fetched_buffer(got["DATA"]) is not None and got["DATA"].flags.writeable


def test_s3_ranges_split_in_parts_load_exact_into_one_buffer(ms_factory, s3env, monkeypatch) -> None:
    """Ranges longer than ``max_part`` (a 1 GB MS's partition) are fetched in parts into one
    buffer: the arrays are exact, and still views of it."""
    ms = ms_factory("tcsm")
    p = Partition.from_json(skyplug.open(s3env.upload(ms, "split.ms")).plan("time", 2)[0].to_json())
    monkeypatch.setattr(Source, "max_part", 5000)  # DATA: 64 KiB, WEIGHT_SPECTRUM: 32 KiB here
    t = open_target(p.uri, s3env.config.site("edge"), version=p.version)
    got = load_partition(p, target=t)
    assert_equal_columns(got, reference(ms, got["ROWID"]))
    assert sum(s.stats.requests for s in t._sources()) > len(p.ranges)  # split indeed
    assert fetched_buffer(got["DATA"]) is not None
