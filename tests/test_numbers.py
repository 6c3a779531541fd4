"""Numbers people read: what `skyplug index`, `skyplug catalog query` and the demo print, checked
against python-casacore, h5py and astropy reading the same files (made by skyplug.synthetic)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skyplug.cli import cli


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _iso_mjd(mjd: float) -> str:
    from astropy.time import Time

    return f"{Time(mjd, format='mjd', scale='utc').isot} UTC (MJD {mjd!r})"


@pytest.mark.parametrize("layout", ["tcsm", "twospw"])
def test_ms_index_text_shows_time_phase_centre_pols_and_spws(tmp_path: Path, layout: str) -> None:
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from casacore.tables import table

    from skyplug.synthetic.ms import make_ms

    ms = make_ms(tmp_path / f"{layout}.ms", layout)
    text = _run("index", str(ms))
    with table(str(ms), ack=False) as t:
        time, interval = t.getcol("TIME"), t.getcol("INTERVAL")
    start, end = float((time - interval / 2).min() / 86400), float((time + interval / 2).max() / 86400)
    assert f"time_start: {_iso_mjd(start)}" in text
    assert f"time_end: {_iso_mjd(end)}" in text
    assert not re.search(r"\b5\d{9}\.\d", text), "raw casacore seconds in the text"

    with table(f"{ms}/FIELD", ack=False) as f:
        name, (ra, dec) = f.getcell("NAME", 0), f.getcell("PHASE_DIR", 0)[0]
    c = SkyCoord(ra * u.rad, dec * u.rad)
    ra_s = c.ra.to_string(unit=u.hourangle, sep="hms", precision=4, pad=True)
    dec_s = c.dec.to_string(unit=u.deg, sep="dms", precision=3, alwayssign=True, pad=True)
    line = next(ln for ln in text.splitlines() if f"field={name}" in ln)
    assert f"ra={ra_s}" in line and f"dec={dec_s}" in line
    assert re.match(r"\d\dh\d\dm\d\d\.\d{4}s", ra_s) and dec_s[0] in "+-"
    assert f"ra_deg={float(c.ra.deg)!r}" in line and f"dec_deg={float(c.dec.deg)!r}" in line

    with table(f"{ms}/POLARIZATION", ack=False) as p:
        names = [{9: "XX", 10: "XY", 11: "YX", 12: "YY"}[int(x)] for x in p.getcell("CORR_TYPE", 0)]
    assert f"polarisations: {' '.join(names)}" in text

    with table(f"{ms}/SPECTRAL_WINDOW", ack=False) as s:
        spws = [(s.getcell("CHAN_FREQ", i), s.getcell("CHAN_WIDTH", i)) for i in range(s.nrows())]
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("- spw=")]
    assert len(lines) == len(spws) == (2 if layout == "twospw" else 1)
    for i, (line, (freqs, widths)) in enumerate(zip(lines, spws, strict=True)):
        first = f"{freqs[0] / 1e6:.9f}".rstrip("0").rstrip(".")
        last = f"{freqs[-1] / 1e6:.9f}".rstrip("0").rstrip(".")
        assert f"spw={i}, nchan={len(freqs)}, first={first} MHz, last={last} MHz" in line
        width = float(re.search(r"width=([\d.]+) MHz", line).group(1)) * 1e6
        assert width == pytest.approx(widths[0], abs=1e-3)


def test_h5parm_index_text_shows_soltab_axes(tmp_path: Path) -> None:
    import h5py

    from skyplug.synthetic.h5parm import make_all

    path = make_all(tmp_path)["dp3"]
    text = _run("index", str(path))
    with h5py.File(path) as f:
        for name in ("sol000/phase000", "sol000/amplitude000"):
            val = f[f"{name}/val"]
            axes = val.attrs["AXES"].decode().split(",")
            expected = ", ".join(f"{a}={n}" for a, n in zip(axes, val.shape, strict=True))
            block = text.split(f"  {name}:\n", 1)[1]
            assert block.splitlines()[0].strip() == f"axes: {expected}"
            assert f[f"{name}/time"].shape[0] == dict(zip(axes, val.shape, strict=True))["time"]


def test_fits_index_text_names_numpy_and_fits_order(tmp_path: Path) -> None:
    from astropy.io import fits

    from skyplug.synthetic.fits import make_all

    files = make_all(tmp_path)
    text = _run("index", str(files["cube4"]))
    with fits.open(files["cube4"]) as hdul:
        shape, header = hdul[0].data.shape, hdul[0].header
    assert f"shape (numpy order)={list(shape)}" in text
    fits_order = " x ".join(
        f"NAXIS{k}={header[f'NAXIS{k}']} ({header[f'CTYPE{k}']})" for k in range(1, header["NAXIS"] + 1)
    )
    assert f"NAXISn (FITS order)={fits_order}" in text
    assert fits_order.startswith(f"NAXIS1={shape[-1]} ")  # FITS order is numpy's reversed

    table_text = _run("index", str(files["multi"]))
    with fits.open(files["multi"]) as hdul:
        rows, row_bytes = hdul[2].header["NAXIS2"], hdul[2].header["NAXIS1"]
    assert f"NAXIS1={row_bytes} (bytes per row) x NAXIS2={rows} (rows)" in table_text


def test_catalog_query_prints_full_precision_and_iso_times(tmp_path: Path) -> None:
    import skyplug
    from skyplug.synthetic.ms import make_ms

    ms = make_ms(tmp_path / "SB226.ms")
    db = f"sqlite:///{tmp_path / 'cat.db'}"
    _run("catalog", "add", str(ms), "--db", db)
    text = _run("catalog", "query", "SELECT t_min, t_max, em_min, s_ra FROM ivoa.obscore", "--db", db)
    fields = skyplug.open(str(ms)).describe()
    assert _iso_mjd(fields["t_min"]) in text and _iso_mjd(fields["t_max"]) in text
    assert repr(fields["em_min"]) in text and repr(fields["s_ra"]) in text
    printed = [float(x) for x in re.findall(r"\(MJD ([\d.]+)\)", text)]
    assert printed == [fields["t_min"], fields["t_max"]]  # exactly, not rounded to 6 digits


def test_demo_prints_every_column_it_queries() -> None:
    from skyplug.demo import run_demo

    lines: list[str] = []
    report = run_demo(echo=lines.append)
    catalogue = report["catalogue"]
    columns = re.search(r"SELECT (.*?) FROM", catalogue["query"]).group(1).split(", ")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("catalogue "))
    header, *rows = lines[start + 1 : start + 2 + len(catalogue["rows"])]
    assert header.split() == columns
    for row, line in zip(catalogue["rows"], rows, strict=True):
        for name in columns:
            value = row[name]
            if isinstance(value, float) and name.startswith("t_"):
                assert _iso_mjd(value) in line
            elif isinstance(value, float):
                assert repr(value) in line
            elif value is not None:
                assert str(value) in line
    assert np.isfinite([r["em_min"] for r in catalogue["rows"] if r["em_min"] is not None]).all()


def test_partition_text_shows_time_windows_in_utc(tmp_path: Path) -> None:
    """The text plan gives each partition's time window (MS ``time``, h5parm ``interval``) in ISO
    UTC, the first and last timestamps casacore / h5py read; ``--json`` keeps the raw seconds."""
    import casacore.tables as pt
    import h5py
    from astropy.time import Time

    from skyplug.synthetic.h5parm import make_all
    from skyplug.synthetic.ms import make_ms

    def iso(seconds: float) -> str:
        return str(Time(seconds / 86400.0, format="mjd", scale="utc").isot)

    ms = make_ms(tmp_path / "SB1.ms")
    with pt.table(str(ms), ack=False) as t:
        times = np.unique(t.getcol("TIME"))
    half = len(times) // 2
    lines = _run("partition", str(ms), "--by", "time", "-n", "2").splitlines()
    assert f"time=[{iso(times[0])}, {iso(times[half - 1])}] UTC" in lines[0]
    assert f"time=[{iso(times[half])}, {iso(times[-1])}] UTC" in lines[1]
    assert "518" not in lines[0]  # no raw MJD seconds left in the text

    h5 = make_all(tmp_path / "h5")["dp3"]
    with h5py.File(h5) as f:
        t = f["sol000/amplitude000/time"][:]
    first = _run("partition", str(h5), "--by", "time", "-n", "2").splitlines()[0]
    assert f"interval=[{iso(t[0])}, {iso(t[len(t) // 2 - 1])}] UTC" in first
    assert '"time": [' in _run("partition", str(ms), "--by", "time", "-n", "2", "--json")
