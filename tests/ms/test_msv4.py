"""The MSv4 schema (``skyplug.open_msv4``) against xradio 1.3 ``open_msv2`` and xarray-ms 0.5.13
on local MSs of every layout, and lazily from S3 through ``engine="skyplug"``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr

import skyplug
from skyplug.core.dataset import Dataset, bytes_read
from skyplug.core.errors import SkyplugError
from tests.ms.msv4_compare import MAIN, assert_same_as_xradio, xradio_tree

pytest.importorskip("xradio")

LAYOUTS = ["tcsm", "chansplit", "tssm", "ssm", "twospw", "unsorted", "bda", "flagged", "casa", "bda4"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_equal_to_xradio_open_msv2(ms_factory, layout: str) -> None:
    ms = str(ms_factory(layout))
    ours = skyplug.open_msv4(ms, chunks={"time": 5, "frequency": 7})  # chunks that cut both axes
    assert_same_as_xradio(ours, xradio_tree(ms))


@pytest.mark.parametrize("layout", ["tcsm", "twospw", "chansplit"])
def test_values_equal_to_xarray_ms(ms_factory, layout: str) -> None:
    """xarray-ms (auto_corrs=True) names partitions ``<ms>_partition_NNN`` and gives FLAG as
    uint8; values, dims and coordinates are the same."""
    ms = str(ms_factory(layout))
    ours = skyplug.open_msv4(ms)
    theirs = xr.open_datatree(ms, engine="xarray-ms:msv2", auto_corrs=True)
    assert len(ours.children) == len(theirs.children)
    for a, b in zip(ours.children, theirs.children, strict=True):
        o, t = ours[a].to_dataset().compute(), theirs[b].to_dataset().compute()
        assert {d: t.sizes[d] for d in o.sizes} == dict(o.sizes)
        for c in ("time", "frequency", "polarization", "baseline_antenna1_name", "baseline_antenna2_name"):
            assert np.array_equal(o[c].values, t[c].values), c
        for v in MAIN:
            want = t[v].values.astype(bool) if v == "FLAG" else t[v].values
            assert np.array_equal(o[v].values, want, equal_nan=True), v


def test_autocorrelations_kept_and_partition_scheme(ms_factory) -> None:
    ms = str(ms_factory("casa"))
    tree = skyplug.open_msv4(ms, partition_scheme=["SCAN_NUMBER"])
    ref = xradio_tree_with(ms, partition_scheme=["SCAN_NUMBER"])
    assert_same_as_xradio(tree, ref)
    first = tree[next(iter(tree.children))].to_dataset()
    assert (first.baseline_antenna1_name.values == first.baseline_antenna2_name.values).any()


def xradio_tree_with(ms: str, **kw: Any) -> Any:
    from xradio.measurement_set import open_msv2

    return open_msv2(ms, **kw)


def test_backend_entry_point_local_and_zip(ms_factory, tmp_path) -> None:
    from skyplug.synthetic.ms import zip_ms

    ms = str(ms_factory("tcsm"))
    zipped = str(zip_ms(ms_factory("tcsm"), tmp_path / "tcsm.ms.zip", "stored"))  # xradio's names
    tree = xr.open_datatree(zipped, engine="skyplug")
    assert_same_as_xradio(tree, xradio_tree(ms))
    ds = xr.open_dataset(zipped, engine="skyplug", partition=0)
    assert ds.VISIBILITY.dims == ("time", "baseline_id", "frequency", "polarization")
    assert np.array_equal(ds.VISIBILITY.values, tree[next(iter(tree.children))].VISIBILITY.values, equal_nan=True)
    assert "FLAG" not in xr.open_dataset(zipped, engine="skyplug", drop_variables="FLAG")


@pytest.mark.parametrize(
    "kwargs,message",
    [({"partition": 7}, "no MSv4 partition 7"), ({"partition_chunks": {"time": 0}}, "positive integer")],
)
def test_bad_input_is_one_line(ms_factory, kwargs: dict[str, Any], message: str) -> None:
    ms = str(ms_factory("tcsm"))
    with pytest.raises(SkyplugError) as err:
        xr.open_dataset(ms, engine="skyplug", **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_other_formats_dispatch_or_fail_in_one_line(tmp_path) -> None:
    from astropy.io import fits

    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, 3, 4), np.float32)).writeto(path)
    try:
        import skyplug.plugins.formats.fits.xarray  # noqa: F401
    except ImportError:
        with pytest.raises(SkyplugError, match="no xarray view of fits") as err:
            xr.open_dataset(str(path), engine="skyplug")
        assert "\n" not in str(err.value)
    else:
        assert xr.open_dataset(str(path), engine="skyplug").sizes


@pytest.fixture
def targets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The targets datasets open (to read their byte counters)."""
    made: list[Any] = []
    getter = Dataset.target.fget
    assert getter is not None

    def target(self: Dataset) -> Any:
        t = getter(self)
        if not any(t is m for m in made):
            made.append(t)
        return t

    monkeypatch.setattr(Dataset, "target", property(target))
    return made


@pytest.mark.s3
@pytest.mark.parametrize("packed", ["prefix", "zip"])
def test_lazy_isel_reads_only_its_tiles_from_s3(tmp_path, s3env, targets, packed: str) -> None:
    """``isel(time=...)`` of VISIBILITY fetches the bytes of the DATA partition of those times
    (its planned ranges) and nothing else; a channel block of a channel-split MS fewer still."""
    from skyplug.plugins.formats.ms import plan as plan_mod
    from skyplug.synthetic.ms import make_ms, zip_ms

    ms = make_ms(tmp_path / "big.ms", "chansplit", ntime=40, nchan=64)
    local = zip_ms(ms, tmp_path / "big.ms.zip", "stored") if packed == "zip" else ms
    uri = s3env.upload(local, local.name)
    tree = xr.open_datatree(uri, engine="skyplug", partition_chunks={"time": 8, "frequency": 16})
    (target,) = targets
    (name,) = tree.children
    vis = tree[name].VISIBILITY
    assert vis.data.numblocks == (5, 1, 4, 1)
    index = skyplug.open(str(ms)).index()
    opened = bytes_read(target)
    got = vis.isel(time=slice(8, 16)).compute()
    nbl = index["baselines"]
    rows = np.arange(8 * nbl, 16 * nbl)  # times 8..15 of a time-sorted MS of complete baselines
    whole = sum(e - s for _, s, e in plan_mod.requests(plan_mod._partition(
        index, 0, 1, {"rows": (int(rows[0]), int(rows[-1]) + 1), "ddid": 0}, rows, None, None, ["DATA"])))  # fmt: skip
    fetched = bytes_read(target) - opened
    assert fetched == whole < index["big_sizes"][_data_file(index)] // 4
    ref = xradio_tree(str(ms))
    assert np.array_equal(got.values, ref[name].VISIBILITY.values[8:16], equal_nan=True)
    before = bytes_read(target)
    block = vis.isel(time=slice(8, 16)).sel(frequency=vis.frequency.values[16:32]).compute()
    assert 0 < bytes_read(target) - before <= whole // 4 + 4096  # one of 4 channel blocks
    assert np.array_equal(block.values, ref[name].VISIBILITY.values[8:16, :, 16:32], equal_nan=True)
    before = bytes_read(target)
    tree[name].TIME_CENTROID.compute()  # a column in the small files: no bulk bytes
    assert bytes_read(target) == before


def _data_file(index: dict[str, Any]) -> str:
    (dm,) = [dm for dm in index["managers"] if "DATA" in dm["columns"]]
    return dm["cubes"][0]["file"]
