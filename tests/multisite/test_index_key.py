"""The index cache is keyed by the site's identity: one object key and version on two servers are two
objects (issue 12 item 11)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import skyplug
from skyplug.core import config


def _image(path: Path, shape: tuple[int, int]) -> None:
    from astropy.io import fits

    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.zeros(shape, np.float32)).writeto(path)


def test_an_index_from_one_site_is_not_reused_on_another(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "obs" / "img.fits", tmp_path / "b" / "obs" / "img.fits"
    _image(a, (10, 10))
    _image(b, (20, 5))  # same size (one FITS block of data), other shape
    st = a.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))  # same version: mtime and size
    sites = {"here": {"type": "local", "path": str(tmp_path / "a")}}
    config.set_config(config.Config.from_dict({"sites": sites}))
    first = skyplug.open("s3://obs/img.fits", site="here").index()
    assert first["hdus"][0]["shape"] == [10, 10]
    # "here" was moved to another folder (another server) holding another object of that version
    sites["here"]["path"] = str(tmp_path / "b")
    config.set_config(config.Config.from_dict({"sites": sites}))
    again = skyplug.open("s3://obs/img.fits", site="here").index()
    assert again["version"] == first["version"]
    assert again["hdus"][0]["shape"] == [5, 20]
    config.set_config(
        config.Config.from_dict({"sites": {"here": {"type": "local", "path": str(a.parents[1])}}})
    )
    cached = skyplug.open("s3://obs/img.fits", site="here")
    assert cached.index()["hdus"][0]["shape"] == [10, 10] and cached.index_stats["cached"]
