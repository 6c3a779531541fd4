"""Every column of every partition equals python-casacore reading the same rows of the whole MS."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import skyplug
from skyplug.core.errors import SkyplugWarning
from skyplug.core.load import load_partition
from skyplug.core.partition import Partition
from skyplug.plugins.formats.ms.load import groups
from skyplug.synthetic.ms import LAYOUTS as ms_layouts
from tests.ms.conftest import all_rows, assert_equal_columns, reference

LAYOUTS = list(ms_layouts)
AXES = [("time", 5), ("rows", 3), ("spw", 2), ("chan", 3)]


def check_all(uri: str, ms, by: str, n: int) -> list[Partition]:
    """Plan, load every partition, compare with the reference; return the partitions."""
    ds = skyplug.open(uri)
    parts = ds.plan(by, n)
    assert parts
    seen = []
    for p in parts:
        loaded = p.load()
        assert len(all_rows(loaded)) == p.selection["nrows"]
        for got in groups(loaded).values():  # one per DATA_DESC_ID when the shapes differ
            rows = got["ROWID"]
            seen.append(rows)
            assert_equal_columns(got, reference(ms, rows, p.selection.get("chan")))
            assert got["DATA"].shape[1:] == got["FLAG"].shape[1:]
            assert len(got["CHAN_FREQ"]) == got["DATA"].shape[1]
    if by in ("time", "rows", "spw"):  # these cover every row exactly once
        allrows = np.sort(np.concatenate(seen))
        assert np.array_equal(allrows, np.arange(ds.index()["nrow"]))
    return parts


@pytest.mark.parametrize("by,n", AXES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_exact_plain(ms_factory, layout: str, by: str, n: int) -> None:
    ms = ms_factory(layout)
    check_all(str(ms), ms, by, n)


@pytest.mark.parametrize(
    "layout", ["tcsm", "chansplit", "dysco", "twospw", "bda", "badsubtables", "flagged", "casa", "casavla"]
)
@pytest.mark.parametrize("by,n", [("time", 4), ("chan", 2)])
def test_exact_zip_stored(ms_factory, layout: str, by: str, n: int) -> None:
    with warnings.catch_warnings():
        # no member is read whole (broken subtables still warn)
        warnings.filterwarnings("error", ".*DEFLATE member read whole", SkyplugWarning)
        check_all(str(ms_factory(layout, zip="stored")), ms_factory(layout), by, n)


@pytest.mark.parametrize("layout", ["tcsm", "tssm", "dysco", "bda", "badsubtables", "flagged"])
def test_exact_zip_deflated_warns(ms_factory, layout: str) -> None:
    with pytest.warns(SkyplugWarning, match="DEFLATE member read whole"):
        check_all(str(ms_factory(layout, zip="deflated")), ms_factory(layout), "time", 3)


def test_baseline_filter(ms_factory) -> None:
    ms = ms_factory("chansplit")
    wanted = [[0, 0], [0, 3], [2, 5]]
    parts = skyplug.open(str(ms)).plan("time", 3, baselines=wanted)
    for p in parts:
        got = p.load()
        pairs = set(zip(got["ANTENNA1"].tolist(), got["ANTENNA2"].tolist(), strict=True))
        assert pairs == {tuple(b) for b in wanted}
        assert_equal_columns(got, reference(ms, got["ROWID"]))


def test_conventions_kept(ms_factory) -> None:
    """Autocorrelations stay, NaN/inf pass through, rows keep their order."""
    ms = ms_factory("tcsm")
    got = skyplug.open(str(ms)).plan("rows", 1)[0].load()
    assert np.any(got["ANTENNA1"] == got["ANTENNA2"])
    assert np.isnan(got["DATA"]).any() and np.isinf(got["DATA"]).any()
    assert np.array_equal(got["ROWID"], np.arange(len(got["ROWID"])))


def test_unsorted_time_partitions_hold_whole_timestamps(ms_factory) -> None:
    ms = ms_factory("unsorted")
    ds = skyplug.open(str(ms))
    assert ds.index()["sorted_by_time"] is False
    times = [set(np.unique(p.load()["TIME"]).tolist()) for p in ds.plan("time", 4)]
    for i, a in enumerate(times):
        for b in times[i + 1 :]:
            assert not a & b
    assert sum(len(t) for t in times) == len(ds.index()["times"])


def test_partition_json_and_pickle_roundtrip(ms_factory) -> None:
    ms = ms_factory("chansplit")
    for by, n in AXES:
        for p in skyplug.open(str(ms)).plan(by, n):
            text = p.to_json()
            assert len(text) < 2048, (by, len(text))
            q = Partition.from_json(text)
            assert q == p and pickle.loads(pickle.dumps(p)) == p
    p = skyplug.open(str(ms)).plan("chan", 3)[1]
    got = Partition.from_json(p.to_json()).load()
    assert_equal_columns(got, reference(ms, got["ROWID"], p.selection["chan"]))


def test_xarray_output(ms_factory) -> None:
    pytest.importorskip("xarray")
    ms = ms_factory("tcsm")
    p = skyplug.open(str(ms)).plan("time", 2)[0]
    xds = load_partition(p, as_="xarray")
    assert xds["DATA"].dims == ("row", "chan", "corr")
    assert xds["UVW"].dims == ("row", "uvw")
    assert xds["CHAN_FREQ"].dims == ("chan",)
    assert np.array_equal(xds["DATA"].values, reference(ms, xds["ROWID"].values)["DATA"], equal_nan=True)


@pytest.mark.parametrize("layout,decoded", [("chansplit", True), ("twospw", True), ("dysco", False)])
def test_tiles_decoded_with_numpy(
    ms_factory, monkeypatch: pytest.MonkeyPatch, layout: str, decoded: bool
) -> None:
    """Tiled columns come from the fetched tiles (numpy); only Dysco goes through casacore."""
    from skyplug.plugins.formats.ms import load

    via_casacore: list[str] = []
    original = load._casacore_columns

    def spy(tab, rows, cols, *args):
        via_casacore.extend(cols)
        return original(tab, rows, cols, *args)

    monkeypatch.setattr(load, "_casacore_columns", spy)
    ms = ms_factory(layout)
    p = skyplug.open(str(ms)).plan("chan", 2)[1]
    got = p.load()
    assert ("DATA" not in via_casacore) is decoded
    assert "FLAG" not in via_casacore and "UVW" not in via_casacore
    assert_equal_columns(got, reference(ms, got["ROWID"], p.selection["chan"]))
