"""describe(): ObsCore + radio fields; summary(): the layouts ``skyplug index`` shows."""

from __future__ import annotations

import math

import numpy as np
import pytest

import skyplug
from skyplug.synthetic.ms import MJD_START, REF_FREQ

C = 299_792_458.0


def test_describe_obscore_and_radio_fields(ms_factory) -> None:
    from casacore import tables

    ms = ms_factory("twospw")
    d = skyplug.open(str(ms)).describe()
    assert d["t_min"] == pytest.approx((MJD_START - 5.0) / 86400.0)
    assert d["t_max"] == pytest.approx((MJD_START + 110.0 + 5.0) / 86400.0)
    assert d["t_exptime"] == pytest.approx(120.0) and d["t_resolution"] == 10.0
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        freqs = np.concatenate([spw.getcell("CHAN_FREQ", i) for i in range(spw.nrows())])
        widths = np.concatenate([spw.getcell("CHAN_WIDTH", i) for i in range(spw.nrows())])
    assert d["em_min"] == pytest.approx(C / np.max(freqs + widths / 2))
    assert d["em_max"] == pytest.approx(C / (REF_FREQ - widths[0] / 2))
    assert d["f_resolution"] == pytest.approx(widths.min() / 1e3)
    assert d["em_res_power"] > 100
    assert d["s_ra"] == pytest.approx(299.868) and d["s_dec"] == pytest.approx(40.734)
    assert d["pol_states"] == "/XX/XY/YX/YY/"
    with tables.table(str(ms / "ANTENNA"), ack=False) as ant:
        pos = ant.getcol("POSITION")
    dist = [np.linalg.norm(pos[i] - pos[j]) for i in range(len(pos)) for j in range(i + 1, len(pos))]
    assert d["instr_tel_number"] == len(pos)
    assert d["instr_tel_min_dist"] == pytest.approx(min(dist))
    assert d["instr_tel_max_dist"] == pytest.approx(max(dist))
    with tables.table(str(ms), ack=False) as tab:
        uvw = tab.getcol("UVW")
    assert d["uv_distance_max"] >= np.hypot(uvw[:, 0], uvw[:, 1]).max() - 1e-6
    assert d["uv_distance_min"] == 0.0  # autocorrelations
    assert d["facility_name"] == d["instrument_name"] == "NenuFAR"
    assert d["access_estsize"] == math.ceil(skyplug.open(str(ms)).index()["ms_bytes"] / 1000)


def test_single_correlation_pol_states(ms_factory) -> None:
    assert skyplug.open(str(ms_factory("unsorted"))).describe()["pol_states"] == "/XX/"


def test_summary_shows_layouts(ms_factory) -> None:
    from skyplug.core import plugins

    ds = skyplug.open(str(ms_factory("chansplit")))
    s = plugins.find("formats", "ms").summary(ds.index())
    data = s["managers"]["TiledData"]
    assert data["manager"] == "TiledColumnStMan" and data["columns"] == "DATA"
    assert data["hypercubes"] == ["table.f3_TSM0: cube [4, 16, 252], tile [2, 4, 16], 1024 B/tile"]
    assert s["managers"]["SSMVar"]["manager"] == "StandardStMan"
    assert "TIME" in s["managers"]["ISMData"]["columns"].split(", ")
    assert s["rows_per_timestamp"] == [21] and s["timestamps"] == 12
    assert s["spectral_windows"][0]["nchan"] == 16
    dysco = plugins.find("formats", "ms").summary(skyplug.open(str(ms_factory("dysco"))).index())
    assert dysco["managers"]["DyscoData"] == {
        "manager": "DyscoStMan",
        "columns": "DATA, WEIGHT_SPECTRUM",
        "rows_per_block": 21,
        "block_bytes": 4220,
    }
