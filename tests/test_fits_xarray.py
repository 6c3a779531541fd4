"""FITS images and cubes in xarray (skyplug.plugins.formats.fits.xarray): values bit for bit as
astropy reads them (BSCALE/BZERO/BLANK included), world coordinates as astropy.wcs computes them,
lazy chunks that are skyplug partitions (a plane selected fetches that plane's bytes only, counted
on the S3 requests), and ``load(as_="xarray")`` of a partition in the same schema."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import skyplug
from skyplug.core.errors import PluginError
from skyplug.plugins.formats.fits.xarray import open_dataset
from skyplug.synthetic.fits import make_all


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_all(tmp_path_factory.mktemp("fits-xr"))


def image_hdus(path: Path) -> list[int]:
    with fits.open(path) as hdul:
        return [
            i
            for i, h in enumerate(hdul)
            if isinstance(h, fits.PrimaryHDU | fits.ImageHDU)
            and not isinstance(h, fits.CompImageHDU)  # refused: see test_bad_input_is_one_clear_error
            and h.data is not None
            and h.data.ndim >= 2
        ]


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    """Same shape, dtype (byte order aside) and bytes: NaN payloads and -0.0 count."""
    want = want.astype(want.dtype.newbyteorder("="))
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


def astropy_world(path: Path, hdu: int) -> tuple[WCS, tuple[int, ...]]:
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(hdul[hdu].header), hdul[hdu].data.shape


def check_coords(ds: Any, w: WCS, shape: tuple[int, ...]) -> None:
    """Every coordinate equals astropy.wcs ``pixel_to_world`` of the pixels it labels (the other
    axes anywhere: they are separable)."""
    naxis = len(shape)
    dims = list(ds["data"].dims)
    grids = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = w.pixel_to_world(*(grids[naxis - 1 - k] for k in range(naxis)))
    world = world if isinstance(world, list) else [world]
    keys = list(dict.fromkeys(c[0] for c in w.world_axis_object_components))
    corr = w.axis_correlation_matrix
    seen = set()
    for key, obj in zip(keys, world, strict=True):
        kind = type(obj).__name__
        if kind in ("Quantity", "Time"):  # a plain world axis (TIME, non-standard types): one pixel axis
            (j,) = [j for j, c in enumerate(w.world_axis_object_components) if c[0] == key]
            p = int(np.argmax(corr[j]))
            if not w.wcs.ctype[p]:
                continue  # an axis without CTYPE has no coordinate (astropy: pixel + 1)
            name = dims[naxis - 1 - p]
            idx = tuple(slice(None) if d == name else 0 for d in dims)
            if kind == "Quantity":
                want_values = obj[idx].value  # in the WCS's unit, as ours
            else:  # astropy.time.Time: its world values in the header's unit, by the low-level API
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want_values = np.asarray(
                        w.pixel_to_world_values(*(grids[naxis - 1 - k] for k in range(naxis)))[j]
                    )[idx]
            np.testing.assert_array_equal(ds[name].values, want_values)
            seen.add(name)
        if kind == "SkyCoord":
            sph = obj.spherical
            lon, lat = ("ra", "dec") if "ra" in ds.coords else ("glon", "glat")
            for name, want in ((lon, sph.lon.deg), (lat, sph.lat.deg)):
                got = ds[name]
                idx = tuple(0 if d not in got.dims else slice(None) for d in dims)
                np.testing.assert_array_equal(got.values, want[idx], err_msg=name)
                seen.add(name)
        elif kind == "SpectralCoord":
            name = next(d for d in dims if d in ("freq", "vrad", "wave", "vopt", "velo"))
            got = ds[name]
            idx = tuple(slice(None) if d == name else 0 for d in dims)
            np.testing.assert_array_equal(got.values, obj[idx].to_value(got.attrs["units"]))
            seen.add(name)
        elif kind == "StokesCoord":
            idx = tuple(slice(None) if d == "stokes" else 0 for d in dims)
            assert list(ds["stokes"].values) == list(obj[idx].symbol)
            seen.add("stokes")
    assert seen == set(ds.coords), (seen, set(ds.coords))


def test_every_synthetic_image_equals_astropy(files: dict[str, Path]) -> None:
    """Values and dtypes (every BITPIX, scaled, blank, pseudo-unsigned) and coordinates."""
    checked = 0
    for name, path in files.items():
        for hdu in image_hdus(path):
            ds = open_dataset(str(path), hdu=hdu)
            with fits.open(path) as hdul:
                want = hdul[hdu].data
                assert same_bits(ds["data"].values, want), f"{name} HDU {hdu}"
            w, shape = astropy_world(path, hdu)
            check_coords(ds, w, shape)
            checked += 1
    assert checked >= 9


def test_cube_dims_coords_attrs(files: dict[str, Path]) -> None:
    ds = open_dataset(str(files["cube4"]))
    assert ds["data"].dims == ("stokes", "freq", "m", "l")
    assert ds["ra"].dims == ("m", "l") and ds["dec"].dims == ("m", "l")
    assert ds["freq"].attrs["units"] == "Hz"
    with fits.open(files["cube4"]) as hdul:
        header = hdul[0].header
    assert ds.attrs["CTYPE3"] == header["CTYPE3"] and ds.attrs["CRPIX1"] == header["CRPIX1"]
    assert "NAXIS1" not in ds.attrs and "BITPIX" not in ds.attrs
    if "BUNIT" in header:
        assert ds["data"].attrs["units"] == header["BUNIT"]


def test_scaling_kept_in_encoding(files: dict[str, Path]) -> None:
    ds = open_dataset(str(files["cube_i32_blank"]))
    with fits.open(files["cube_i32_blank"], do_not_scale_image_data=True) as hdul:
        header = hdul[0].header
    assert ds["data"].encoding["BLANK"] == header["BLANK"]
    assert np.isnan(ds["data"].values).any()
    assert "BLANK" not in ds.attrs and "BSCALE" not in ds.attrs


def test_lazy_chunks_are_partitions(files: dict[str, Path]) -> None:
    ds = open_dataset(str(files["cube4"]))
    data = ds["data"].data
    assert type(data).__module__.startswith("dask")
    assert data.chunks[1] == (1,) * ds.sizes["freq"]  # one partition per channel plane
    two = open_dataset(str(files["cube4"]), chunks={"freq": 4})
    assert two["data"].data.chunks[1] == (4, 4, 4)
    assert same_bits(two["data"].values, ds["data"].values)


def test_partition_load_as_xarray_same_schema(files: dict[str, Path]) -> None:
    path = str(files["cube4"])
    whole = open_dataset(path)
    parts = skyplug.open(path).plan("channel", 3)
    for p in parts:
        a, b = p.selection["range"]
        got = p.load(as_="xarray")
        want = whole.isel(freq=slice(a, b))
        assert got["data"].dims == want["data"].dims and set(got.coords) == set(want.coords)
        assert same_bits(got["data"].values, want["data"].values.copy())
        for name in want.coords:
            if want[name].dtype.kind == "U":
                assert list(got[name].values) == list(want[name].values)
            else:
                np.testing.assert_allclose(got[name].values, want[name].values, rtol=1e-12)
        assert got.attrs["CRPIX3"] == whole.attrs["CRPIX3"] - a


def _ranges_seen(s3env: Any) -> list[str]:
    seen: list[str] = []
    s3env.client().meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: seen.append(request.headers.get("Range", b"all"))
    )
    return seen


def test_isel_on_s3_fetches_only_that_plane(files: dict[str, Path], s3env: Any) -> None:
    """On a real S3 server: the header and index are read once; computing ``isel(freq=3)`` then
    asks only for the byte ranges of plane 3 (one per Stokes plane), nothing else."""
    path = files["cube4"]
    uri = s3env.upload(path, "cube4.fits")
    seen = _ranges_seen(s3env)
    ds = open_dataset(uri)
    seen.clear()
    got = ds["data"].isel(freq=3).values
    with fits.open(path) as hdul:
        assert same_bits(got, hdul[0].data[:, 3])
        data_start = hdul[0]._data_offset
    nstokes, nfreq, ny, nx = ds["data"].shape
    plane = ny * nx * 4
    want = {
        f"bytes={data_start + (s * nfreq + 3) * plane}-{data_start + (s * nfreq + 4) * plane - 1}"
        for s in range(nstokes)
    }
    got_ranges = {r.decode() if isinstance(r, bytes) else r for r in seen}
    assert got_ranges == want, (got_ranges, want)


def test_bad_input_is_one_clear_error(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"HDU 2 is a bintable, not an image"):
        open_dataset(str(files["multi"]), hdu=2)
    with pytest.raises(PluginError, match=r"HDU 1 is a tile-compressed image"):
        open_dataset(str(files["compressed"]), hdu=1)
    with pytest.raises(PluginError, match=r"chunks name no dim \['chan'\]"):
        open_dataset(str(files["cube4"]), chunks={"chan": 2})
    with pytest.raises(PluginError, match=r"takes hdu, chunks and site, not mask_and_scale"):
        open_dataset(str(files["cube4"]), mask_and_scale=False)
    with pytest.raises(PluginError, match=r"not a FITS object"):
        npy = tmp_path / "x.npy"
        np.save(npy, np.zeros(3))
        open_dataset(str(npy))
    table = skyplug.open(str(files["multi"])).plan("rows", 2, hdu=2)[0]
    with pytest.raises(PluginError, match=r"only image HDUs load as xarray"):
        table.load(as_="xarray")


def test_tasks_pickle_for_process_schedulers(files: dict[str, Path]) -> None:
    """Chunk tasks travel without the opened object; each process opens it from the partition."""
    import dask

    ds = open_dataset(str(files["cube4"]))
    with dask.config.set(scheduler="processes", num_workers=2):
        got = ds["data"].isel(freq=slice(2, 6)).values
    with fits.open(files["cube4"]) as hdul:
        assert same_bits(got, hdul[0].data[:, 2:6])


def test_large_planes_get_lazy_sky_coords(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Over EAGER_SKY_PIXELS, ra/dec are dask arrays in row blocks, equal to the eager ones."""
    from skyplug.plugins.formats.fits import xarray as fx

    eager = open_dataset(str(files["cube4"]))
    monkeypatch.setattr(fx, "EAGER_SKY_PIXELS", 100)  # 36 x 40 pixels: blocks of 2 rows
    lazy = open_dataset(str(files["cube4"]))
    assert type(lazy["ra"].data).__module__.startswith("dask") and len(lazy["ra"].data.chunks[0]) == 18
    for name in ("ra", "dec"):
        assert np.array_equal(lazy[name].values, eager[name].values, equal_nan=True)
