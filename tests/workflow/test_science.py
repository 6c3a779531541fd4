"""TASKA's science with the real tools: DP3 flags, rebins, calibrates and applies, WSClean images.

Four synthetic NenuFAR-like subbands (skyplug.synthetic.taska) go through DP3 6.6 (``DP3.py``) and
WSClean; the checks must recover the injected gains (1%), the target's positions and fluxes (2%,
per subband and in the multi-frequency image) and flag the RFI, and must FAIL on wrong inputs
(another subband's solutions, data left uncalibrated, an unflagged MS).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casacore import tables

from skyplug.core.errors import FormatError, NotFound
from skyplug.synthetic.taska import TaskaTruth, make_subbands, point_sources
from skyplug.workflow import parsets
from skyplug.workflow.science import CheckFailed, check_flags, check_gains, check_image

pytestmark = pytest.mark.slow


def tool(name: str) -> str:
    """A tool beside this interpreter (the venv's DP3.py) or on PATH; CI installs both, so none fails."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is required (dp3 comes from PyPI, wsclean from Debian)"
    return found


def run(cmd: list[str], cwd: Path) -> None:
    """Run a tool; a non-zero exit fails with the tail of its output."""
    env = {**os.environ, **parsets.dp3_environment()}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"{Path(cmd[0]).name} exit {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}"
    )


def dp3(parset: Mapping[str, Any], cwd: Path) -> None:
    run([tool("DP3.py"), *parsets.dp3_arguments(parset)], cwd)


def wsclean(args: list[str], cwd: Path) -> None:
    run([tool("wsclean"), *args], cwd)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> tuple[TaskaTruth, Path]:
    """The workflow over 4 subbands: flag+rebin, gaincal (calibrator), applycal (target), images."""
    work = tmp_path_factory.mktemp("taska")
    truth = make_subbands(work / "raw", 4)
    strategy = parsets.nenufar_strategy()
    (work / "cal.skymodel").write_text(truth.skymodel)
    (work / "img").mkdir()  # WSClean does not create the folder of -name
    for sb in truth.subbands:
        for kind in ("cal", "target"):
            with zipfile.ZipFile(work / "raw" / getattr(sb, kind)) as zf:
                zf.extractall(work / kind)
            dp3(parsets.flag_rebin(strategy, f"{kind}/{sb.name}.ms", f"{kind}/{sb.name}.avg.ms"), work)
        dp3(parsets.gaincal("cal.skymodel", f"{sb.name}.h5", f"cal/{sb.name}.avg.ms"), work)
        dp3(parsets.applycal(f"{sb.name}.h5", f"target/{sb.name}.avg.ms"), work)
        wsclean(parsets.wsclean_args(f"img/{sb.name}", [f"target/{sb.name}.avg.ms"]), work)
    targets = [f"target/{sb.name}.avg.ms" for sb in truth.subbands]
    wsclean(parsets.wsclean_args("img/all", targets, channels_out=len(targets)), work)
    return truth, work


def test_generator_agrees_with_dp3_predict(products: tuple[TaskaTruth, Path]) -> None:
    """The synthetic visibilities' sign and geometry are DP3's: its predict gives the same model."""
    truth, work = products
    shutil.copytree(work / "target/SB226.avg.ms", work / "pred.ms")
    (work / "target.skymodel").write_text(truth.target_skymodel())
    dp3(
        {"msin": "pred.ms", "msout": ".", "msout.datacolumn": "MODEL_DATA", "steps": ["p"],
         "p.type": "predict", "p.sourcedb": "target.skymodel"},
        work,
    )  # fmt: skip
    with tables.table(str(work / "pred.ms"), ack=False) as tab:
        predicted, uvw = tab.getcol("MODEL_DATA"), tab.getcol("UVW")
    with tables.table(str(work / "pred.ms/SPECTRAL_WINDOW"), ack=False) as spw:
        freqs = spw.getcell("CHAN_FREQ", 0)
    centre = (np.radians(truth.target_centre["ra"]), np.radians(truth.target_centre["dec"]))
    sources = [(np.radians(s["ra"]), np.radians(s["dec"]), s["flux"]) for s in truth.target_sources]
    ours = point_sources(uvw, freqs, centre, sources)
    for corr in (0, 3):  # XX, YY; a conjugated (mirrored) sky would differ by up to twice the flux
        assert np.abs(predicted[:, :, corr] - ours).max() < 1e-4 * sum(s[2] for s in sources)


def test_gains_recovered(products: tuple[TaskaTruth, Path]) -> None:
    truth, work = products
    for sb in truth.subbands:
        report = check_gains(work / f"{sb.name}.h5", truth, sb.name, tol=0.01)
        assert report["soltabs"] == ["amplitude000", "phase000"]
        assert report["n_solutions"] == 20 * 10 * 2 and report["flagged_solutions"] == 0
        print(sb.name, {k: round(v, 5) for k, v in report.items() if k.startswith(("max", "rms"))})


def test_ddecal_solutions_per_channel_checked(products: tuple[TaskaTruth, Path]) -> None:
    """ddecal's h5parm (a dir axis, one solution per channel) is read the same way."""
    truth, work = products
    dd = {"msin": "cal/SB326.avg.ms", "msout": ".", "steps": ["dd"], "dd.type": "ddecal",
          "dd.mode": "diagonal", "dd.sourcedb": "cal.skymodel", "dd.h5parm": "dd.h5", "dd.solint": 1,
          "dd.nchan": 1}  # fmt: skip
    dp3(dd, work)
    report = check_gains(work / "dd.h5", truth, "SB326")
    assert report["n_solutions"] == 20 * 10 * 2 * 4  # time x ant x pol x channel
    print("ddecal", {k: round(v, 5) for k, v in report.items() if k.startswith("max")})


def test_gains_of_another_subband_fail(products: tuple[TaskaTruth, Path]) -> None:
    truth, work = products
    with pytest.raises(CheckFailed, match=r"SB276\.h5:amplitude000: amplitude of MR\d+ .* SB226's injected"):
        check_gains(work / "SB276.h5", truth, "SB226")


def test_images_recover_the_sources(products: tuple[TaskaTruth, Path]) -> None:
    truth, work = products
    images = [work / "img" / f"{sb.name}-image.fits" for sb in truth.subbands] + [
        work / "img/all-MFS-image.fits"
    ]
    for fits in images:
        report = check_image(fits, truth, tol=0.02)
        assert [s["peak_pixel"] for s in report["sources"]] == [
            [round(c) for c in s["expected_pixel"]] for s in report["sources"]
        ]
        print(
            fits.name,
            [(s["name"], round(s["peak"], 3), f"{s['flux_error']:+.2%}") for s in report["sources"]],
        )


def test_image_with_another_subbands_solutions_fails(products: tuple[TaskaTruth, Path]) -> None:
    truth, work = products
    shutil.copytree(work / "target/SB226.avg.ms", work / "wrong.ms")
    dp3(parsets.applycal("SB276.h5", "wrong.ms"), work)
    wsclean(parsets.wsclean_args("img/wrong", ["wrong.ms"]), work)
    with pytest.raises(CheckFailed, match=r"wrong-image\.fits: Src"):
        check_image(work / "img/wrong-image.fits", truth)


def test_bad_inputs_are_named(products: tuple[TaskaTruth, Path], tmp_path: Path) -> None:
    truth, _ = products
    with pytest.raises(NotFound, match=r"h5parm .*nope\.h5: no such file"):
        check_gains(tmp_path / "nope.h5", truth, "SB226")
    (tmp_path / "junk.fits").write_bytes(b"not a FITS file")
    with pytest.raises(FormatError, match=r"junk\.fits: not a FITS image"):
        check_image(tmp_path / "junk.fits", truth)
    with pytest.raises(NotFound, match="no subband 'SB999'"):
        check_gains(tmp_path / "nope.h5", truth, "SB999")


def test_uncalibrated_image_fails(products: tuple[TaskaTruth, Path]) -> None:
    truth, work = products
    wsclean(parsets.wsclean_args("img/raw", ["target/SB226.avg.ms"], data_column="DATA"), work)
    with pytest.raises(CheckFailed, match=r"raw-image\.fits: SrcA"):
        check_image(work / "img/raw-image.fits", truth)


def test_rfi_flagged(products: tuple[TaskaTruth, Path]) -> None:
    truth, work = products
    sb = truth.subbands[0]
    with pytest.raises(CheckFailed, match=r"RFI channels .* only 0% flagged"):
        check_flags(work / f"target/{sb.name}.ms", truth, sb.name)  # the raw MS: nothing flagged yet
    full = parsets.flag_rebin(
        parsets.nenufar_strategy(), f"target/{sb.name}.ms", "flagged.ms", timestep=1, freqstep=1
    )
    dp3(full, work)
    report = check_flags(work / "flagged.ms", truth, sb.name)
    assert report["rfi_flagged"] == 1.0 and report["burst_flagged"] == 1.0
    assert report["clean_flagged"] < 0.1
    print(report)


def test_rfi_flagged_in_a_time_partition(products: tuple[TaskaTruth, Path]) -> None:
    """A quarter of the observation (as a time-partitioned workflow flags it) still flags the RFI."""
    truth, work = products
    sb = truth.subbands[0]
    burst = sb.rfi_burst["times"]
    quarter = len(sb.times) // 4
    first = burst[0] // quarter * quarter  # the quarter that holds the burst's start
    lo, hi = sb.times[first], sb.times[min(first + quarter, len(sb.times)) - 1]
    with tables.table(str(work / f"target/{sb.name}.ms"), ack=False) as tab:
        part = tab.query(f"TIME >= {lo - 1} && TIME <= {hi + 1}")
        part.copy(str(work / "quarter.ms"), deep=True)
        part.close()
    dp3(
        parsets.flag_rebin(parsets.nenufar_strategy(), "quarter.ms", "quarter.fl.ms", timestep=1, freqstep=1),
        work,
    )
    report = check_flags(work / "quarter.fl.ms", truth, sb.name)
    assert report["rfi_flagged"] == 1.0 and report["burst_flagged"] == 1.0 and report["clean_flagged"] < 0.1
