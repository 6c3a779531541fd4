"""Real FITS and h5parm in xarray: every image HDU of the corpus (WSClean NAXIS=4 with degenerate axes,
a CASA beam, an e-Callisto dynamic spectrum, a HERA calfits cube, MWA correlator images) equals
astropy bit for bit with coordinates equal to astropy.wcs ``pixel_to_world``; every soltab of the
LOFAR h5parms equals h5py and losoto's reading (values, weights, axes; NaN kept)."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits

from skyplug.plugins.formats.fits.xarray import open_dataset as fits_dataset
from skyplug.plugins.formats.hdf5.xarray import open_datatree
from tests.real.conftest import FITS, H5PARM
from tests.test_fits_xarray import astropy_world, check_coords, image_hdus, same_bits


@pytest.mark.parametrize("key", sorted(FITS))
def test_fits_images_equal_astropy(real_fits, key: str) -> None:
    path: Path = real_fits(key)
    hdus = image_hdus(path)
    for hdu in hdus:
        ds = fits_dataset(str(path), hdu=hdu)
        with fits.open(path) as hdul, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = hdul[hdu].data
            header = hdul[hdu].header
            assert same_bits(ds["data"].values, want), f"{key} HDU {hdu}"
            for k in range(1, header["NAXIS"] + 1):
                assert ds["data"].shape[header["NAXIS"] - k] == header[f"NAXIS{k}"]
        w, shape = astropy_world(path, hdu)
        check_coords(ds, w, shape)
        # one block along the partition axis equals the same block of astropy's array
        axis = next(i for i, n in enumerate(ds["data"].data.chunks) if len(n) > 1 or i == len(shape) - 2)
        n = ds["data"].data.chunks[axis][0]
        block = ds["data"].isel({ds["data"].dims[axis]: slice(0, n)}).values
        assert same_bits(block, np.take(want, range(n), axis=axis))


def test_wsclean_image_schema(real_fits) -> None:
    """The WSClean image: NAXIS=4 (RA, DEC, FREQ, STOKES) with degenerate FREQ and STOKES."""
    ds = fits_dataset(str(real_fits("wsclean_image")))
    assert ds["data"].dims == ("stokes", "freq", "m", "l")
    assert ds["ra"].dims == ("m", "l") and list(ds["stokes"].values) == ["I"]
    assert ds["freq"].attrs["units"] == "Hz" and ds["freq"].size == 1


@pytest.mark.parametrize("key", H5PARM)
def test_h5parm_soltabs_equal_h5py_and_losoto(real_h5parm, key: str) -> None:
    from losoto.h5parm import h5parm

    path: Path = real_h5parm(key)
    tree = open_datatree(str(path))
    found = [n.path.strip("/") for n in tree.subtree if "val" in n.dataset]
    with h5py.File(path) as f:
        tabs = [f"{s}/{t}" for s in f for t in f[s] if isinstance(f[s][t], h5py.Group) and "val" in f[s][t]]
        assert sorted(found) == sorted(tabs)
        for tab in tabs:
            ds = tree[tab].to_dataset(inherit=False)
            for name in ("val", "weight"):
                ref = f[f"{tab}/{name}"]
                assert ds[name].dims == tuple(ref.attrs["AXES"].decode().split(","))
                assert same_bits(ds[name].values, ref[()]), (tab, name)
    lo = h5parm(str(path), readonly=True)
    try:
        for tab in tabs:
            solset, name = tab.split("/")
            st = lo.getSolset(solset).getSoltab(name)
            ds = tree[tab].to_dataset(inherit=False)
            vals, axes = st.getValues(retAxesVals=True)
            weights = st.getValues(retAxesVals=False, weight=True)
            assert list(ds["val"].dims) == st.getAxesNames()
            assert np.array_equal(ds["val"].values, vals, equal_nan=True)
            assert np.array_equal(ds["weight"].values, weights, equal_nan=True)
            assert np.isnan(ds["val"].values).sum() == np.isnan(vals).sum()
            for axis, values in axes.items():
                want = np.asarray(values)
                want = np.char.decode(want, "utf-8") if want.dtype.kind == "S" else want
                assert np.array_equal(ds[axis].values, want), (tab, axis)
            assert ds.attrs["TITLE"] == st.getType()
    finally:
        lo.close()
