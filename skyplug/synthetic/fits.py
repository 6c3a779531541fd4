"""Generate FITS test files with astropy: cubes with full WCS, every BITPIX with BSCALE/BZERO/BLANK,
an image extension, a binary table with variable-length columns and a tile-compressed image.

Run ``python skyplug/synthetic/fits.py DIR`` or call :func:`make_all`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _raw_image(path: Path, data: np.ndarray, bitpix: int, extra: dict[str, object]) -> Path:
    """Write raw (unscaled) integers under a header carrying BSCALE/BZERO/BLANK, as instruments do."""
    from astropy.io import fits

    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = bitpix
    header["NAXIS"] = data.ndim
    for i, n in enumerate(reversed(data.shape), start=1):
        header[f"NAXIS{i}"] = n
    for key, value in extra.items():
        header[key] = value
    raw = data.astype(data.dtype.newbyteorder(">")).tobytes()
    body = header.tostring().encode("ascii") + raw
    path.write_bytes(body + b"\0" * (-len(body) % 2880))
    return path


def _add_cards(path: Path, marker: bytes, cards: list[str]) -> None:
    """Insert raw cards before END of the header starting with ``marker`` (astropy cannot write
    a scaled integer column, so TSCALn/TZEROn are added to the raw integers afterwards)."""
    body = bytearray(path.read_bytes())
    start = body.index(marker)
    end = next(i for i in range(start, len(body), 80) if body[i : i + 80].rstrip() == b"END")
    text = b"".join(c.ljust(80).encode() for c in cards) + b"END".ljust(80)
    assert end + len(text) <= start + -(-(end + 80 - start) // 2880) * 2880, "no room for the cards"
    body[end : end + len(text)] = text
    path.write_bytes(bytes(body))


def wcs_header(naxis: int, rotated: bool = False) -> dict[str, object]:
    """RA/DEC (SIN) + FREQ + STOKES world coordinates, with a rotation matrix when asked."""
    h: dict[str, object] = {
        "CTYPE1": "RA---SIN",
        "CRVAL1": 210.5,
        "CRPIX1": 20.0,
        "CDELT1": -0.01,
        "CUNIT1": "deg",
        "CTYPE2": "DEC--SIN",
        "CRVAL2": 54.3,
        "CRPIX2": 17.5,
        "CDELT2": 0.01,
        "CUNIT2": "deg",
        "RADESYS": "FK5",
        "EQUINOX": 2000.0,
        "DATE-OBS": "2024-03-01T12:30:00.000",
        "OBJECT": "M101",
        "TELESCOP": "NenuFAR",
        "BUNIT": "Jy/beam",
    }
    if rotated:
        h.update({"PC1_1": 0.9659258, "PC1_2": -0.2588190, "PC2_1": 0.2588190, "PC2_2": 0.9659258})
    if naxis >= 3:
        h.update(
            {
                "CTYPE3": "FREQ",
                "CRVAL3": 44.0e6,
                "CRPIX3": 1.0,
                "CDELT3": 195312.5,
                "CUNIT3": "Hz",
                "SPECSYS": "TOPOCENT",
                "RESTFRQ": 1.420405752e9,
            }
        )
    if naxis >= 4:
        h.update({"CTYPE4": "STOKES", "CRVAL4": 1.0, "CRPIX4": 1.0, "CDELT4": 1.0})
    return h


def make_all(root: Path) -> dict[str, Path]:
    """Every test file under ``root``; returns name -> path."""
    from astropy.io import fits

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    out: dict[str, Path] = {}

    cube = rng.standard_normal((4, 12, 36, 40)).astype(np.float32)  # STOKES, FREQ, DEC, RA
    hdu = fits.PrimaryHDU(cube)
    hdu.header.update(wcs_header(4, rotated=True))
    out["cube4"] = root / "cube4.fits"
    hdu.writeto(out["cube4"], overwrite=True)

    cube3 = rng.integers(-30000, 30000, (9, 20, 24), dtype=np.int16)
    cube3[0, 0, :5] = -32768
    out["cube3_i16"] = _raw_image(
        root / "cube3_i16.fits", cube3, 16, {**wcs_header(3), "BSCALE": 0.25, "BZERO": 10.0, "BLANK": -32768}
    )
    img = rng.integers(0, 255, (30, 17), dtype=np.uint8)
    out["img_u8"] = _raw_image(root / "img_u8.fits", img, 8, wcs_header(2))
    out["img_i8"] = _raw_image(root / "img_i8.fits", img, 8, {"BZERO": -128, "BSCALE": 1})
    u16 = rng.integers(-32768, 32767, (5, 13, 11), dtype=np.int16)
    out["cube_u16"] = _raw_image(root / "cube_u16.fits", u16, 16, {**wcs_header(3), "BZERO": 32768})
    i32 = rng.integers(-(2**31), 2**31 - 1, (6, 14, 10), dtype=np.int32)
    i32[2, 3, 4] = 7
    out["cube_i32_blank"] = _raw_image(root / "cube_i32_blank.fits", i32, 32, {**wcs_header(3), "BLANK": 7})
    i64 = rng.integers(-(2**62), 2**62, (2, 3, 8, 9), dtype=np.int64)
    out["cube_i64"] = _raw_image(root / "cube_i64.fits", i64, 64, wcs_header(4))
    u32 = rng.integers(-(2**31), 2**31 - 1, (3, 7, 5), dtype=np.int32)
    out["cube_u32"] = _raw_image(root / "cube_u32.fits", u32, 32, {"BZERO": 2**31})
    f64 = rng.standard_normal((7, 6, 5))
    out["cube_f64_scaled"] = _raw_image(
        root / "cube_f64_scaled.fits", f64, -64, {**wcs_header(3), "BSCALE": 2.0, "BZERO": 1.5}
    )

    # primary without data + image extension + binary table with variable-length columns
    n = 57
    ext = fits.ImageHDU(rng.standard_normal((10, 16, 12)).astype(np.float32), name="CUBE")
    ext.header.update(wcs_header(3))
    cols = [
        fits.Column(name="id", format="J", array=np.arange(n)),
        fits.Column(name="flux", format="E", array=rng.standard_normal(n).astype(np.float32)),
        fits.Column(name="spec", format="8D", array=rng.standard_normal((n, 8))),
        fits.Column(name="grid", format="6I", dim="(3,2)", array=rng.integers(-99, 99, (n, 2, 3))),
        fits.Column(name="name", format="12A", array=np.array([f"src{i}" for i in range(n)])),
        fits.Column(name="ok", format="L", array=rng.integers(0, 2, n).astype(bool)),
        fits.Column(name="bits", format="11X", array=rng.integers(0, 2, (n, 11)).astype(bool)),
        fits.Column(name="vis", format="C", array=(rng.standard_normal(n) + 1j).astype(np.complex64)),
        fits.Column(name="counts", format="I", array=np.arange(n, dtype=np.int16) - 20),
        fits.Column(name="big", format="K", array=rng.integers(-(2**40), 2**40, n)),
        fits.Column(name="uid", format="J", bzero=2**31, array=np.arange(n, dtype=np.uint32) * 1000),
        fits.Column(
            name="samples",
            format="PE()",
            array=[rng.standard_normal(i % 7).astype(np.float32) for i in range(n)],
        ),
        fits.Column(name="lags", format="QD()", array=[np.arange(i % 4, dtype=np.float64) for i in range(n)]),
        fits.Column(
            name="ants", format="PJ()", array=[np.arange(i % 5, dtype=np.int32) * 3 for i in range(n)]
        ),
    ]
    table = fits.BinTableHDU.from_columns(cols, name="SOURCES")
    out["multi"] = root / "multi.fits"
    fits.HDUList([fits.PrimaryHDU(), ext, table]).writeto(out["multi"], overwrite=True)
    _add_cards(
        out["multi"],
        b"XTENSION= 'BINTABLE'",
        ["TSCAL9  =                  0.5", "TZERO9  =                  3.0"],
    )

    comp = fits.CompImageHDU(rng.standard_normal((32, 30)).astype(np.float32), compression_type="GZIP_1")
    out["compressed"] = root / "compressed.fits"
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(out["compressed"], overwrite=True)
    return out


def make_untidy(root: Path) -> dict[str, tuple[Path, str, int]]:
    """Files as radio software writes them: a WSClean image (NAXIS=4, NAXIS3=NAXIS4=1, HISTORY), a
    CASA-style cube (PC matrix, ALTRVAL/ALTRPIX, LSRK, CONTINUE and HIERARCH cards), a dynamic
    spectrum with a trailing table, a BLANK/BSCALE int16 cube with an extra image HDU. Name ->
    (path, --by, n)."""
    from astropy.io import fits

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(8)
    sky = {
        "CTYPE1": "RA---SIN",
        "CRPIX1": 65.0,
        "CRVAL1": 299.87,
        "CDELT1": -0.01,
        "CUNIT1": "deg",
        "CTYPE2": "DEC--SIN",
        "CRPIX2": 65.0,
        "CRVAL2": 40.73,
        "CDELT2": 0.01,
        "CUNIT2": "deg",
    }
    out: dict[str, tuple[Path, str, int]] = {}

    h = fits.Header(
        {
            **sky,
            "CTYPE3": "FREQ",
            "CRPIX3": 1.0,
            "CRVAL3": 5.0e7,
            "CDELT3": 1.0e6,
            "CUNIT3": "Hz",
            "CTYPE4": "STOKES",
            "CRPIX4": 1.0,
            "CRVAL4": 1.0,
            "CDELT4": 1.0,
            "BMAJ": 0.1,
            "BMIN": 0.08,
            "BPA": 12.0,
            "WSCVERSI": "3.1",
            "DATE-OBS": "2024-03-01T12:00:00.0",
        }
    )
    h["HISTORY"] = "wsclean -size 128 128 -scale 36asec -niter 1000 " + "-weight briggs 0 " * 8
    path = root / "wsclean-image.fits"
    fits.PrimaryHDU(rng.standard_normal((1, 1, 128, 128)).astype(np.float32), h).writeto(path, overwrite=True)
    out["wsclean"] = (path, "rows", 4)

    h = fits.Header(
        {
            **sky,
            "CRPIX1": 17.0,
            "CRPIX2": 17.0,
            "CTYPE3": "FREQ",
            "CRPIX3": 3.0,
            "CRVAL3": 1.42e9,
            "CDELT3": -1.2e4,
            "CUNIT3": "Hz",
            "CTYPE4": "STOKES",
            "CRPIX4": 1.0,
            "CRVAL4": 1.0,
            "CDELT4": 1.0,
            "PC1_1": 1.0,
            "PC1_2": 0.0,
            "PC2_1": 0.0,
            "PC2_2": 1.0,
            "PC3_3": 1.0,
            "PC4_4": 1.0,
            "RESTFRQ": 1.420405752e9,
            "SPECSYS": "LSRK",
            "ALTRVAL": -1.0e3,
            "ALTRPIX": 3.0,
            "VELREF": 257,
            "BTYPE": "Intensity",
            "MJD-OBS": 60000.5,
        }
    )
    h["OBJECT"] = "A very long object name, as CASA keeps it " * 4  # CONTINUE cards
    h["HIERARCH CASA TOOL VERSION"] = "6.6.0"
    path = root / "casa-cube.fits"
    fits.PrimaryHDU(rng.standard_normal((2, 10, 32, 32)).astype(np.float32), h).writeto(path, overwrite=True)
    out["casa"] = (path, "channel", 3)

    h = fits.Header(
        {
            "CTYPE1": "TIME",
            "CRPIX1": 1.0,
            "CRVAL1": 0.0,
            "CDELT1": 0.5,
            "CUNIT1": "s",
            "CTYPE2": "FREQ",
            "CRPIX2": 1.0,
            "CRVAL2": 1e7,
            "CDELT2": 1e5,
            "CUNIT2": "Hz",
        }
    )
    times = fits.BinTableHDU.from_columns([fits.Column(name="t", format="D", array=np.arange(300.0))])
    path = root / "dynspec.fits"
    fits.HDUList([fits.PrimaryHDU(rng.standard_normal((64, 300)).astype(np.float32), h), times]).writeto(
        path, overwrite=True
    )
    out["dynspec"] = (path, "rows", 4)

    raw = rng.integers(-3000, 3000, (6, 20, 24)).astype(np.int16)
    raw[0, 0, :3] = -32768
    scaled = {
        "BSCALE": 0.5,
        "BZERO": 2.0,
        "BLANK": -32768,
        "CTYPE3": "FREQ",
        "CRPIX3": 1.0,
        "CRVAL3": 1e8,
        "CDELT3": 1e6,
        **{k: v for k, v in sky.items() if not k.startswith("CUNIT")},
    }
    path = _raw_image(root / "blank.fits", raw, 16, {**scaled, "EXTEND": True})
    fits.append(path, np.zeros((4, 4), np.float32), fits.Header({"EXTNAME": "BEAM"}))  # an extra HDU
    out["blank"] = (path, "channel", 3)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m skyplug.synthetic.fits [OUT]``: write the test FITS files into OUT."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "out", nargs="?", default="fits-data", help="folder to write into (default %(default)s)"
    )
    for name, path in make_all(Path(parser.parse_args(argv).out)).items():
        print(name, path)


if __name__ == "__main__":
    main()
