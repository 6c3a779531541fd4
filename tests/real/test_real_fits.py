"""Real radio FITS (a WSClean image with degenerate axes, a CASA beam, an e-Callisto dynamic spectrum,
a HERA calfits cube and tables, MWA metafits and correlator files): every block along every axis and
every table's rows equal astropy; each ``--as fits`` block keeps the WCS of its first pixel and adds
no fitsverify error that the source does not already carry."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

import skyplug
from tests.real.conftest import FITS
from tests.test_fits import _block


def verify_errors(path: Path) -> int:
    """fitsverify's error count for a file (its warnings are the source's business)."""
    exe = shutil.which("fitsverify")
    assert exe, "fitsverify is not installed (Debian package fitsverify)"
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    found = re.search(r"(\d+) warning\(s\) and (\d+) error\(s\)", run.stdout)
    assert found, run.stdout[-2000:] + run.stderr[-2000:]
    return int(found.group(2))


def hdus(path: Path) -> list[tuple[int, str, tuple[int, ...]]]:
    """(index, kind, shape) of every HDU holding data."""
    with fits.open(path) as hdul:
        return [
            (i, "table" if isinstance(h, fits.BinTableHDU) else "image", tuple(h.data.shape))
            for i, h in enumerate(hdul)
            if h.data is not None and h.size
        ]


def same(got: object, want: object) -> bool:
    """Equal values, NaN equal to NaN in float columns."""
    got, want = np.asarray(got), np.asarray(want)
    return bool(np.array_equal(got, want, equal_nan=got.dtype.kind in "fc" and want.dtype.kind in "fc"))


def first_pixel_world(header: fits.Header, pixel: list[float]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header).wcs_pix2world([pixel], 0)[0]


@pytest.mark.parametrize("key", sorted(FITS))
def test_image_blocks_exact_with_wcs(real_fits, tmp_path: Path, key: str) -> None:
    path = real_fits(key)
    source_errors = verify_errors(path)
    problems = []
    for hdu, kind, shape in hdus(path):
        if kind != "image":
            continue
        with fits.open(path) as hdul:
            ref, header = hdul[hdu].data.copy(), hdul[hdu].header.copy()
        for axis in range(2, len(shape) + 1):  # NAXIS1 lies inside every row: not a block axis
            length = shape[len(shape) - axis]
            if length < 2:
                continue
            parts = skyplug.open(str(path)).plan(f"axis:{axis}", 3, hdu=hdu)
            covered = 0
            for p in parts:
                a, b = p.selection["range"]
                covered += b - a
                got, want = p.load(as_="array"), _block(ref, axis, a, b)
                where = f"HDU {hdu} axis {axis} [{a}, {b})"
                if got.dtype != want.dtype.newbyteorder("=") or not np.array_equal(got, want, equal_nan=True):
                    problems.append(f"{where}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}")
                (out,) = p.write(tmp_path / f"{hdu}-{axis}-{a}", as_="fits")
                if verify_errors(out) > source_errors:
                    problems.append(f"{where}: fitsverify finds more errors than in the source")
                with fits.open(out) as o:
                    part_header = o[-1].header
                shifted = [0.0] * len(shape)
                shifted[axis - 1] = float(a)
                got_w = first_pixel_world(part_header, [0.0] * len(shape))
                want_w = first_pixel_world(header, shifted)
                if not np.allclose(got_w, want_w, rtol=0, atol=1e-9, equal_nan=True):
                    problems.append(f"{where}: first pixel at {got_w}, want {want_w}")
            if covered != length:
                problems.append(f"HDU {hdu} axis {axis}: blocks cover {covered} of {length}")
    assert not problems, f"{key}:\n" + "\n".join(problems)


@pytest.mark.parametrize("key", sorted(k for k in FITS if k in ("ecallisto", "hera_gain", "mwa_metafits")))
def test_table_rows_exact(real_fits, tmp_path: Path, key: str) -> None:
    path = real_fits(key)
    source_errors = verify_errors(path)
    problems = []
    for hdu, _, (nrow,) in [h for h in hdus(path) if h[1] == "table"]:
        with fits.open(path) as hdul:
            ref = hdul[hdu].data
            names = ref.columns.names
            parts = skyplug.open(str(path)).plan("rows", 3, hdu=hdu)
            assert sum(p.selection["range"][1] - p.selection["range"][0] for p in parts) == nrow
            for p in parts:
                a, b = p.selection["range"]
                got = p.load()["data"]
                for col in names:
                    want = np.asarray(ref[col][a:b])
                    if col not in got or not same(got[col], want):
                        problems.append(f"HDU {hdu} rows [{a}, {b}) column {col} differs")
                (out,) = p.write(tmp_path / f"{hdu}-{a}", as_="fits")
                if verify_errors(out) > source_errors:
                    problems.append(
                        f"HDU {hdu} rows [{a}, {b}): fitsverify finds more errors than the source"
                    )
                with fits.open(out) as o:
                    for col in names:
                        if not same(o[-1].data[col], ref[col][a:b]):
                            problems.append(f"HDU {hdu} rows [{a}, {b}) --as fits column {col} differs")
    assert not problems, f"{key}:\n" + "\n".join(problems)
