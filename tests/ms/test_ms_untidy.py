"""Untidy real-world MSs: baseline-dependent averaging, broken subtables, flagged and non-finite data."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.errors import SkyplugWarning
from skyplug.core.load import fetch_partition
from skyplug.synthetic.ms import MJD_START
from tests.ms.conftest import assert_equal_columns, reference


def windows(ms: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TIME, INTERVAL, EXPOSURE, ANTENNA1 == ANTENNA2 of every row, as casacore reads them."""
    from casacore import tables

    with tables.table(str(ms), ack=False) as tab:
        return (
            tab.getcol("TIME"),
            tab.getcol("INTERVAL"),
            tab.getcol("EXPOSURE"),
            tab.getcol("ANTENNA1") == tab.getcol("ANTENNA2"),
        )


def test_bda_layout_is_averaged(ms_factory) -> None:
    time, interval, exposure, _ = windows(ms_factory("bda"))
    assert set(np.unique(interval).tolist()) == {10.0, 20.0, 40.0}
    assert np.array_equal(interval, exposure)
    per_time = np.unique(np.unique(time, return_counts=True)[1])
    assert len(per_time) > 1  # rows per timestamp vary
    assert not np.all(np.diff(time) >= 0)  # written when their window ends, not by centroid


@pytest.mark.parametrize("zipped", [None, "stored"])
@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_bda_time_partitions_never_split_a_window(ms_factory, zipped: str | None, n: int) -> None:
    ms = ms_factory("bda")
    time, interval, _, _ = windows(ms)
    parts = skyplug.open(str(ms_factory("bda", zip=zipped))).plan("time", n)
    spans, seen = [], []
    for p in parts:
        rows = p.load()["ROWID"]
        seen.append(rows)
        spans.append(
            (float((time[rows] - interval[rows] / 2).min()), float((time[rows] + interval[rows] / 2).max()))
        )
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(len(time)))  # each row once
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start  # no averaged row reaches into another partition's time range
    assert len(parts) == min(n, 3)  # 12 integrations in windows of up to 4: 3 slots


def test_bda_describe_and_summary(ms_factory) -> None:
    from skyplug.core import plugins

    ds = skyplug.open(str(ms_factory("bda")))
    d = ds.describe()
    assert d["t_min"] == pytest.approx((MJD_START - 5.0) / 86400.0, abs=1e-9)
    assert d["t_max"] == pytest.approx((MJD_START + 115.0) / 86400.0, abs=1e-9)
    assert d["t_exptime"] == pytest.approx(120.0)  # per baseline, not timestamps x first EXPOSURE
    assert d["t_resolution"] == 10.0 and d["t_xel"] == 12
    idx = ds.index()
    assert idx["sorted_by_time"] is False and idx["interval_max"] == 40.0
    assert plugins.find("formats", "ms").summary(idx)["timestamps"] == len(idx["times"])


def test_tidy_ms_has_no_time_slots(ms_factory) -> None:
    idx = skyplug.open(str(ms_factory("tcsm"))).index()
    assert "time_slots" not in idx and idx["exptime"] == 120.0
    assert len(skyplug.open(str(ms_factory("tcsm"))).plan("time", 12)) == 12


@pytest.mark.parametrize("zipped", [None, "stored"])
def test_bad_subtables_warn_and_load(ms_factory, tmp_path: Path, zipped: str | None) -> None:
    from casacore import tables

    ms = ms_factory("badsubtables")
    ds = skyplug.open(str(ms_factory("badsubtables", zip=zipped)))
    with pytest.warns(SkyplugWarning, match=r"POINTING \(unreadable.*SOURCE \(absent\)"):
        idx = ds.index()
    assert idx["missing_subtables"] == ["POINTING", "SOURCE"]
    assert set(idx["bad_subtables"]) == {"POINTING", "SOURCE"}
    d = ds.describe()
    assert d["facility_name"] == "NenuFAR" and d["pol_states"] == "/XX/XY/YX/YY/"
    p = ds.plan("time", 3)[1]
    got = p.load()
    assert_equal_columns(got, reference(ms, got["ROWID"]))
    assert len(got["ANTENNA_NAME"]) == 6
    dropped = r"POINTING \(unreadable.*written empty.*SOURCE \(absent, left out\)"
    with pytest.warns(SkyplugWarning, match=dropped):
        out = Path(fetch_partition(p, tmp_path, as_="ms")["outputs"][0])
    with tables.table(str(out), ack=False) as tab:
        assert "SOURCE" not in tab.keywordnames()
        assert tab.nrows() == len(got["ROWID"])
        for name in ("POINTING", "FEED"):  # an empty POINTING written, the empty FEED copied
            with tables.table(str(out / name), ack=False) as sub:
                assert sub.nrows() == 0
        with tables.table(str(out / "ANTENNA"), ack=False) as sub:
            assert sub.nrows() == 6


def test_flagged_values_pass_through(ms_factory) -> None:
    ms = ms_factory("flagged")
    time, _, _, auto = windows(ms)
    auto_only = [t for t in np.unique(time) if auto[time == t].all()]
    assert len(auto_only) == 1
    parts = skyplug.open(str(ms)).plan("time", 12)
    assert len(parts) == 12
    found = {"nan": False, "inf": False, "flag_row": False, "all_flagged": False, "auto_only": False}
    for p in parts:
        got = p.load()
        assert_equal_columns(got, reference(ms, got["ROWID"]))  # bit for bit
        data = got["DATA"]
        found["nan"] |= bool(np.isnan(data.real).any() and np.isnan(data.imag).any())
        found["inf"] |= bool(np.isinf(data.real).any() and np.isinf(data.imag).any())
        found["flag_row"] |= bool(got["FLAG_ROW"].any())
        found["all_flagged"] |= bool((got["FLAG"].all(axis=(1, 2)) & ~got["FLAG_ROW"]).any())
        if (got["ANTENNA1"] == got["ANTENNA2"]).all():
            found["auto_only"] = True
            assert got["TIME"][0] == auto_only[0] and len(got["ROWID"]) == 6
    assert all(found.values()), found
    assert np.signbit(parts[0].load()["DATA"].real[0, 0, 0])  # -0.0 kept
