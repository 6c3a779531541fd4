"""The TASKA generator: layout, truth round trip, and visibilities that are the truth through the gains."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from casacore import tables

from skyplug.synthetic.taska import C, TaskaTruth, _lmn, make_subbands


def test_subbands_hold_the_truth(tmp_path: Path) -> None:
    truth = make_subbands(tmp_path / "obs", 2, ntime=8, zip=False)
    assert [s.name for s in truth.subbands] == ["SB226", "SB276"]
    assert TaskaTruth.from_json((tmp_path / "obs" / "truth.json").read_text()) == truth
    assert (tmp_path / "obs" / "calibrator.skymodel").read_text() == truth.skymodel
    sb = truth.subbands[1]
    assert 30e6 < sb.freqs[0] < sb.freqs[-1] < 80e6
    ms = tmp_path / "obs" / sb.target
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        assert np.allclose(spw.getcell("CHAN_FREQ", 0), sb.freqs)
    with tables.table(str(ms), ack=False) as tab:
        data, uvw = tab.getcol("DATA"), tab.getcol("UVW")
        a1, a2, tcol = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2"), tab.getcol("TIME")
    assert data.shape[1:] == (16, 4) and not np.any(a1 == a2)
    # undo the true gains (phases referenced to antenna 0 cancel in the product): the sky remains
    g = sb.gains()[np.searchsorted(sb.times, tcol - 1e-3)]
    rows = np.arange(len(a1))
    corrected = data[:, :, 0] / (g[rows, a1, 0] * np.conj(g[rows, a2, 0]))[:, None]
    ra0, dec0 = np.radians(truth.target_centre["ra"]), np.radians(truth.target_centre["dec"])
    model = 0
    for s in truth.target_sources:
        lmn = np.array(_lmn(np.radians(s["ra"]), np.radians(s["dec"]), ra0, dec0))
        path = uvw @ lmn - uvw[:, 2]  # u l + v m + w (n - 1)
        model = model + s["flux"] * np.exp(2j * np.pi * path[:, None] * np.asarray(sb.freqs) / C)
    clean = [c for c in range(16) if c not in sb.rfi_channels + sb.rfi_burst["channels"]]
    resid = (corrected - model)[:, clean]
    assert np.std(resid) < 3 * truth.noise_jy  # noise only, no systematic error
    assert abs(np.mean(resid)) < 0.05
    assert np.median(np.abs(data[:, sb.rfi_channels, 0])) > 100 * truth.noise_jy  # RFI is there


def test_zipped_layout(tmp_path: Path) -> None:
    truth = make_subbands(tmp_path, 1, ntime=4)
    with zipfile.ZipFile(tmp_path / truth.subbands[0].cal) as zf:
        names = zf.namelist()
    assert truth.subbands[0].cal == "cal/SB226.ms.zip" and "SB226.ms/table.dat" in names
    assert not (tmp_path / "cal" / "SB226.ms").exists()


def test_command_line_and_determinism(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyplug.synthetic.taska",
            str(tmp_path / "a"),
            "--n",
            "1",
            "--ntime",
            "4",
            "--no-zip",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "1 subbands x (cal, target)" in out and "SB226" in out
    again = make_subbands(tmp_path / "b", 1, ntime=4, zip=False)
    assert TaskaTruth.from_json((tmp_path / "a" / "truth.json").read_text()) == again
    cols = []
    for root in ("a", "b"):
        with tables.table(str(tmp_path / root / "target" / "SB226.ms"), ack=False) as tab:
            cols.append(tab.getcol("DATA"))
    assert np.array_equal(*cols)
