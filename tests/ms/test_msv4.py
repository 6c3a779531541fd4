"""The MSv4 schema (``skyplug.open_msv4``) against xradio 1.3 ``open_msv2`` and xarray-ms 0.5.13
on local MSs of every layout, and lazily from S3 through ``engine="skyplug"``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr

import skyplug
from skyplug.core.errors import SkyplugError
from tests.ms.msv4_compare import MAIN, assert_same_as_xradio, xradio_tree

pytest.importorskip("xradio")

LAYOUTS = [
    "tcsm",
    "chansplit",
    "tssm",
    "ssm",
    "twospw",
    "unsorted",
    "bda",
    "flagged",
    "casa",
    "bda4",
    "dysco",
]


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
    assert np.array_equal(
        ds.VISIBILITY.values, tree[next(iter(tree.children))].VISIBILITY.values, equal_nan=True
    )
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


@pytest.mark.s3
@pytest.mark.parametrize("packed", ["prefix", "zip"])
def test_lazy_from_s3_equals_xradio_on_the_local_ms(tmp_path, s3env, targets: list[int], packed: str) -> None:
    """Time and channel slices of the lazy remote tree equal xradio's reading of the local MS,
    and fetch only the tiles of their times (a fifth of the DATA tiles for one time chunk);
    TIME_CENTROID (small files) nothing."""
    from skyplug.synthetic.ms import make_ms, zip_ms

    ms = make_ms(tmp_path / "big.ms", "chansplit", ntime=40, nchan=64)
    local = zip_ms(ms, tmp_path / "big.ms.zip", "stored") if packed == "zip" else ms
    uri = s3env.upload(local, local.name)
    tree = xr.open_datatree(uri, engine="skyplug", chunks={}, partition_chunks={"time": 8, "frequency": 16})
    (name,) = tree.children
    vis = tree[name].VISIBILITY
    assert vis.data.numblocks == (5, 1, 4, 1)
    ref = xradio_tree(str(ms))[name].to_dataset().compute()
    index = skyplug.open(str(ms)).index()
    data_bytes = sum(n for f, n in index["big_sizes"].items() if f == _data_file(index))
    before = _read(targets)
    block = vis.isel(time=slice(8, 16)).sel(frequency=vis.frequency.values[16:32]).compute()
    one_chunk = _read(targets) - before
    assert np.array_equal(block.values, ref.VISIBILITY.values[8:16, :, 16:32], equal_nan=True)
    before = _read(targets)
    got = vis.isel(time=slice(16, 24)).compute()
    time_block = _read(targets) - before
    assert np.array_equal(got.values, ref.VISIBILITY.values[16:24], equal_nan=True)
    print(f"one chunk {one_chunk} B, one time block {time_block} B, DATA {data_bytes} B")
    # a chunk reads the tiles of its times only; its channel cut is planned, but on these small
    # tiles (2 x 16 x 16) the near ranges are joined, so it saves little (335872 of 360448 B)
    assert 0 < one_chunk < data_bytes // 4 and time_block > 0
    before = _read(targets)
    tree[name].TIME_CENTROID.compute()
    assert _read(targets) == before
    assert_same_as_xradio(tree, xradio_tree(str(ms)))


@pytest.fixture
def targets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes fetched by every partition load (the chunk tasks'), summed by :func:`_read`."""
    from skyplug.core import load
    from skyplug.core.dataset import bytes_read

    fetched: list[int] = []
    original = load.load_partition

    def counted(p: Any, as_: str = "arrays", target: Any = None) -> Any:
        target = target or load._partition_target(p)
        before = bytes_read(target)
        try:
            return original(p, as_, target)
        finally:
            fetched.append(bytes_read(target) - before)

    monkeypatch.setattr(load, "load_partition", counted)
    return fetched


def _read(targets: list[int]) -> int:
    return sum(targets)


def _data_file(index: dict[str, Any]) -> str:
    (dm,) = [dm for dm in index["managers"] if "DATA" in dm["columns"]]
    return str(dm["cubes"][0]["file"])
