"""Quick-looks (``skyplug show``): each picture holds the partition's values as the reference
readers give them (casacore, h5py, astropy), and costs only the partition's bytes, also from S3."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import matplotlib
import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

import skyplug
from skyplug.cli import cli
from skyplug.core.errors import FormatError, PluginError
from skyplug.quicklook import QuickLook, show
from skyplug.synthetic import fits as synth_fits
from skyplug.synthetic import h5parm as synth_h5
from skyplug.synthetic.ms import make_ms, zip_ms

matplotlib.use("Agg")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quicklook")
    out = {"ms": make_ms(root / "vis.ms", nant=6, ntime=12, nchan=8)}
    out["zip"] = zip_ms(out["ms"], root / "SB001.ms.zip")
    out.update(synth_fits.make_all(root / "fits"))
    out.update(synth_h5.make_all(root / "h5"))
    return out


def meshes(look: QuickLook) -> dict[str, np.ndarray]:
    """Waterfall arrays by panel title."""
    found = {}
    for ax in look.figure.axes:
        for coll in ax.collections:
            if isinstance(coll, matplotlib.collections.QuadMesh):
                found[ax.get_title()] = np.ma.filled(coll.get_array().astype(float), np.nan)
    return found


def reference_amplitudes(ms: Path, start: int, stop: int) -> dict[str, np.ndarray]:
    """Mean |(XX+YY)/2| per time and channel over each baseline-length tercile, from casacore."""
    from casacore.tables import table

    with table(str(ms), ack=False) as t:
        cols = {
            c: t.getcol(c, startrow=start, nrow=stop - start)
            for c in ("TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "FLAG")
        }
    cross = cols["ANTENNA1"] != cols["ANTENNA2"]
    pairs = sorted(
        {(int(a), int(b)) for a, b in zip(cols["ANTENNA1"][cross], cols["ANTENNA2"][cross], strict=True)}
    )
    length = {}
    for a, b in pairs:
        rows = cross & (cols["ANTENNA1"] == a) & (cols["ANTENNA2"] == b)
        length[(a, b)] = float(np.mean(np.hypot(cols["UVW"][rows, 0], cols["UVW"][rows, 1])))
    cuts = np.quantile(list(length.values()), [1 / 3, 2 / 3])
    times = np.unique(cols["TIME"])
    out = {}
    for g, name in enumerate(("short", "medium", "long")):
        members = [p for p in pairs if np.searchsorted(cuts, length[p], side="right") == g]
        grid = np.full((len(times), cols["DATA"].shape[1]), np.nan)
        for i, t in enumerate(times):
            values = [[] for _ in range(grid.shape[1])]
            for r in np.flatnonzero(cross & (cols["TIME"] == t)):
                if (int(cols["ANTENNA1"][r]), int(cols["ANTENNA2"][r])) not in members:
                    continue
                for c in range(grid.shape[1]):
                    hands = [cols["DATA"][r, c, h] for h in (0, -1) if not cols["FLAG"][r, c, h]]
                    if hands:
                        values[c].append(abs(np.mean(hands)))
            grid[i] = [np.mean(v) if v else np.nan for v in values]
        out[name] = grid
    return out


def test_ms_waterfalls_hold_casacores_amplitudes(files: dict[str, Path]) -> None:
    look = show(str(files["ms"]), partition=1, n=3)
    start, stop = look.partition.selection["span"]
    ref = reference_amplitudes(files["ms"], start, stop)
    drawn = meshes(look)
    for name, grid in ref.items():
        title = next(t for t in drawn if t.startswith(f"{name}:"))
        np.testing.assert_allclose(drawn[title], grid, rtol=1e-5, equal_nan=True)
    assert sum(t.startswith("phase of ") for t in drawn) == 3
    uv = next(ax for ax in look.figure.axes if ax.get_title().startswith("uv coverage"))
    assert uv.get_xlabel() == "u (kλ)"
    assert look.bytes_read == look.partition.fetch_bytes  # only the columns drawn, of its rows only
    whole = skyplug.open(str(files["ms"])).plan("time", 3)[1]
    assert look.bytes_read < whole.fetch_bytes
    look.close()


def test_ms_from_s3_zip_reads_only_the_partition(files: dict[str, Path], s3env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri = s3env.upload(files["zip"], "SB001.ms.zip")
    out = tmp_path / "q.png"
    result = CliRunner().invoke(cli, ["show", uri, "-n", "4", "--partition", "3", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["bytes_read"] == report["partition_bytes"] > 0
    assert out.read_bytes().startswith(PNG)


def test_h5parm_lines_are_h5py_values(files: dict[str, Path]) -> None:
    look = show(str(files["dp3"]))
    with h5py.File(files["dp3"]) as f:
        tab = f["sol000/amplitude000"]
        axes = tab["val"].attrs["AXES"].decode().split(",")
        val = np.where(tab["weight"][()] == 0, np.nan, tab["val"][()])
        index = tuple(
            slice(None) if a in ("time", "ant") else (n // 2 if a == "freq" else 0)
            for a, n in zip(axes, val.shape, strict=True)
        )
        cut = val[index]
        if axes.index("time") > axes.index("ant"):
            cut = cut.T
        names = [a.decode() for a in tab["ant"][()]]
    ax = next(a for a in look.figure.axes if a.get_title().startswith("sol000/amplitude000 vs time"))
    lines = {ln.get_label(): ln.get_ydata() for ln in ax.lines}
    assert set(lines) <= set(names) and len(lines) == min(len(names), 12)
    for name, ydata in lines.items():
        np.testing.assert_array_equal(ydata, cut[:, names.index(name)])
    phase = next(a for a in look.figure.axes if a.get_title().startswith("sol000/phase000 vs freq"))
    assert phase.get_ylabel() == "phase000 (deg)"
    assert all(np.nanmax(np.abs(ln.get_ydata())) <= 180 for ln in phase.lines)
    look.close()


def test_fits_image_is_astropys_plane_on_wcs_axes(files: dict[str, Path]) -> None:
    look = show(str(files["cube4"]), by="channel", n=3, partition=1)
    a, _ = look.partition.selection["range"]
    with fits.open(files["cube4"]) as hdul:
        plane = hdul[0].data[0, a].astype(float)  # numpy order: (stokes, channel, y, x)
        freq = hdul[0].header["CRVAL3"] + a * hdul[0].header["CDELT3"]
    ax = look.figure.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), plane)
    assert [ax.coords[i].get_axislabel() for i in (0, 1)] == ["RA (FK5)", "Dec (FK5)"]
    assert f"FREQ={freq / 1e6:.4f} MHz" in ax.get_title() and "STOKES=I" in ax.get_title()
    assert look._repr_png_().startswith(PNG)  # the notebook shows the same picture
    look.close()


def test_cli_writes_png_and_names_bad_requests(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "img.png"
    ok = runner.invoke(cli, ["show", str(files["dp3"]), "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert out.read_bytes().startswith(PNG)
    with pytest.raises(PluginError, match="no partition 5 \\(the plan has 2"):
        show(str(files["ms"]), n=2, partition=5)
    with pytest.raises(FormatError, match="is a table: no quick-look"):
        show(str(files["multi"]), hdu="2")
    bad = runner.invoke(cli, ["show", str(files["ms"]), "--partition", "7"])
    assert bad.exit_code != 0 and "no partition 7" in bad.output and "Traceback" not in bad.output


def test_catalog_coverage(files: dict[str, Path], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["catalog", "add", str(files["ms"]), str(files["cube4"]), "--db", url]).exit_code
        == 0
    )
    out = tmp_path / "sky.png"
    result = runner.invoke(cli, ["show", "--catalog", url, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == 2 and out.read_bytes().startswith(PNG)
