"""Comparison of skyplug's MSv4 trees with xradio's ``open_msv2`` and xarray-ms's (shared by
tests/ms/test_msv4.py and tests/real/test_real_msv4.py)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

# what skyplug writes for every partition (xradio's main variables; xarray-ms adds SIGMA_SPECTRUM)
MAIN = ("VISIBILITY", "FLAG", "WEIGHT", "UVW", "TIME_CENTROID", "EFFECTIVE_INTEGRATION_TIME")
COORDS = ("time", "baseline_id", "baseline_antenna1_name", "baseline_antenna2_name", "frequency",
          "polarization", "uvw_label", "field_name", "scan_name")  # fmt: skip


def xradio_tree(ms: str) -> Any:
    from xradio.measurement_set import open_msv2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            return open_msv2(ms)
        finally:
            logging.disable(logging.NOTSET)


def assert_same_as_xradio(ours: Any, ref: Any) -> None:
    """Same partitions (names), dims, coordinates, main variables (dtype, values, NaN where
    xradio has no row), antenna and field sub-datasets."""
    assert list(ours.children) == list(ref.children)
    for name in ref.children:
        o, r = ours[name].to_dataset(), ref[name].to_dataset().compute()
        assert dict(o.sizes) == dict(r.sizes), name
        for c in COORDS:
            assert np.array_equal(o[c].values, r[c].values), (name, c)
        assert o.time.attrs["units"] == r.time.attrs["units"] and o.time.attrs["format"] == "unix"
        o = o.compute()
        for v in MAIN:
            if v not in r:
                assert v not in o, (name, v)
                continue
            assert o[v].dims == r[v].dims and o[v].dtype == r[v].dtype, (name, v)
            assert np.array_equal(o[v].values, r[v].values, equal_nan=True), (name, v)
        oa, ra = ours[name]["antenna_xds"].to_dataset(), ref[name]["antenna_xds"].to_dataset().compute()
        assert np.array_equal(oa.antenna_name.values, ra.antenna_name.values), name
        assert np.array_equal(oa.ANTENNA_POSITION.values, ra.ANTENNA_POSITION.values), name
        of = ours[name]["field_and_source_base_xds"].to_dataset()
        rf = ref[name]["field_and_source_base_xds"].to_dataset().compute()
        assert set(rf.field_name.values) <= set(of.field_name.values), name
        for f in rf.field_name.values:
            assert np.allclose(
                of.FIELD_PHASE_CENTER_DIRECTION.sel(field_name=f).values,
                rf.FIELD_PHASE_CENTER_DIRECTION.sel(field_name=f).values,
            ), (name, f)
