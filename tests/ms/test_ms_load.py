"""Loads on a warm worker: no listing of a zip, shared casacore tables safe across threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core import config
from skyplug.core import zip as zipmod
from skyplug.core.dataset import bytes_read, open_target
from skyplug.core.load import load_partition
from skyplug.core.partition import Partition
from skyplug.plugins.formats.ms.load import groups
from tests.ms.conftest import all_rows, assert_equal_columns, fetched_buffer, reference


def test_zip_partition_loads_without_central_directory(ms_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = skyplug.open(str(ms_factory("tcsm", zip="stored")))
    parts = ds.plan("time", 3)
    assert all(isinstance(p.meta["big"], dict) for p in parts)

    def forbidden(src: object) -> list[zipmod.Member]:
        raise AssertionError("the central directory was read")

    monkeypatch.setattr(zipmod, "read_central_directory", forbidden)
    for p in parts:
        q = Partition.from_json(p.to_json())
        target = open_target(q.uri, version=q.version, size=q.size, container=q.container)
        got = load_partition(q, target=target)
        assert bytes_read(target) == q.expected_bytes
        assert_equal_columns(got, reference(ms_factory("tcsm"), got["ROWID"]))


@pytest.mark.parametrize("zipped", [None, "stored"])
def test_cold_worker_zip_or_folder(
    ms_factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, zipped: str | None
) -> None:
    """An empty small-file cache is filled once (for a zip, after reading its central directory)."""
    parts = skyplug.open(str(ms_factory("tcsm", zip=zipped))).plan("time", 2)
    monkeypatch.setenv("SKYPLUG_CACHE_DIR", str(tmp_path / "cold"))
    config.set_config(config.Config.from_dict({}))
    for p in parts:
        got = Partition.from_json(p.to_json()).load()
        assert_equal_columns(got, reference(ms_factory("tcsm"), got["ROWID"]))


@pytest.mark.parametrize(
    "layout,by", [("tcsm", "time"), ("chansplit", "chan"), ("twospw", "time"), ("dysco", "rows")]
)
def test_concurrent_loads_are_exact(ms_factory, layout: str, by: str) -> None:
    """Threads loading partitions of one MS at once share its open table without mixing rows."""
    ms = ms_factory(layout)
    parts = [Partition.from_json(p.to_json()) for p in skyplug.open(str(ms)).plan(by, 4)] * 3
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: p.load(), parts))
    for p, loaded in zip(parts, results, strict=True):
        chan = p.selection.get("chan")
        for got in groups(loaded).values():  # twospw time partitions: one group per window
            assert_equal_columns(got, reference(ms, got["ROWID"], chan))
        assert len(all_rows(loaded)) == p.selection["nrows"]


def test_returned_arrays_are_independent(ms_factory) -> None:
    """Writing into one load's arrays leaves the next load's untouched."""
    p = skyplug.open(str(ms_factory("tcsm"))).plan("time", 2)[0]
    first = p.load()
    for value in first.values():
        if value.dtype.kind in "fc":
            value[...] = 0
    second = p.load()
    assert not np.array_equal(second["CHAN_FREQ"], first["CHAN_FREQ"])
    assert not np.array_equal(second["DATA"], first["DATA"])


@pytest.mark.parametrize("zipped", [None, "stored"])
def test_whole_cell_tiles_load_without_a_copy(ms_factory, zipped: str | None) -> None:
    """Tiles of whole cells in native byte order are the arrays a caller gets: views of the
    buffers their bytes were fetched into, equal to casacore's values, writable. Bit-packed
    FLAG and a channel block are decoded into arrays of their own."""
    ms = ms_factory("tcsm")
    ds = skyplug.open(str(ms_factory("tcsm", zip=zipped)))
    p = Partition.from_json(ds.plan("time", 3)[1].to_json())
    got = p.load()
    assert_equal_columns(got, reference(ms, got["ROWID"]))
    for col in ("DATA", "WEIGHT_SPECTRUM", "UVW"):
        value = got[col]
        assert fetched_buffer(value) is not None, col
        assert value.flags.writeable and value.flags.c_contiguous and value.flags.aligned, col
    assert fetched_buffer(got["FLAG"]) is None
    got["DATA"][...] = 1 + 2j  # users write into what they get
    assert_equal_columns(Partition.from_json(p.to_json()).load(), reference(ms, got["ROWID"]))
    block = Partition.from_json(ds.plan("chan", 2)[1].to_json()).load()
    assert fetched_buffer(block["DATA"]) is None
    assert_equal_columns(block, reference(ms, block["ROWID"], ds.plan("chan", 2)[1].selection["chan"]))


def test_big_endian_tiles_are_swapped_into_arrays_of_their_own(ms_factory, tmp_path: Path) -> None:
    """The same MS written big-endian: values equal casacore's, decoded (not viewed) in native order."""
    from casacore import tables

    with tables.table(str(ms_factory("tcsm")), ack=False) as tab:
        tab.copy(str(tmp_path / "big.ms"), deep=True, valuecopy=True, endian="big").close()
    with tables.table(str(tmp_path / "big.ms"), ack=False) as tab:
        assert tab.endianformat() == "big"
    p = Partition.from_json(skyplug.open(str(tmp_path / "big.ms")).plan("time", 3)[1].to_json())
    got = p.load()
    assert_equal_columns(got, reference(tmp_path / "big.ms", got["ROWID"]))
    assert fetched_buffer(got["DATA"]) is None and got["DATA"].dtype.isnative
