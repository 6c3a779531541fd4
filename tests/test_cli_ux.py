"""The CLI exposes what the API has: plan options, one axis vocabulary, honest plans, safe fetches,
-v fetch lines, one-line usage errors. On real MS / FITS / h5parm files made by skyplug.synthetic."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import skyplug
from skyplug.cli import cli
from skyplug.core.errors import PluginError, SkyplugWarning
from skyplug.core.format import AXIS_ALIASES, canonical_axis
from skyplug.synthetic import fits as synth_fits
from skyplug.synthetic import h5parm as synth_h5
from skyplug.synthetic.ms import make_ms


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ux")
    out = {"ms": make_ms(root / "vis.ms", nant=4, ntime=6, nchan=8)}
    out.update(synth_fits.make_all(root / "fits"))
    out.update(synth_h5.make_all(root / "h5"))
    return out


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if not ln.startswith("skyplug: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("skyplug: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- plan options, from the CLI as from the API ---------------------------------------------------
def test_hdu_option_reaches_the_plan(files: dict[str, Path]) -> None:
    code, out, err = run("partition", str(files["multi"]), "--by", "rows", "-n", "2", "--hdu", "2", "--json")
    assert code == 0, err
    parts = json.loads(out)
    assert {p["selection"]["hdu"] for p in parts} == {2}
    api = skyplug.open(str(files["multi"])).plan("rows", 2, hdu=2)
    assert [p["selection"] for p in parts] == [p.selection for p in api]


def test_soltab_and_dataset_options(files: dict[str, Path]) -> None:
    h5 = str(files["dp3"])
    code, out, err = run("partition", h5, "--by", "time", "-n", "2", "--soltab", "sol000/phase000", "--json")
    assert code == 0, err
    assert all(set(p["selection"]["soltabs"]) == {"sol000/phase000"} for p in json.loads(out))
    code, out, err = run(
        "partition", h5, "--by", "rows", "-n", "3", "--dataset", "sol000/phase000/val", "--json"
    )
    assert code == 0, err
    assert {p["selection"]["dataset"] for p in json.loads(out)} == {"sol000/phase000/val"}


def test_baselines_and_columns_options(files: dict[str, Path], tmp_path: Path) -> None:
    ms = str(files["ms"])
    code, out, err = run("partition", ms, "--by", "time", "-n", "2", "--baselines", "0-1,1&2", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["selection"]["baselines"] == [[0, 1], [1, 2]]
    whole = skyplug.open(ms).plan("time", 2)
    code, out, err = run("partition", ms, "--by", "time", "-n", "2", "--columns", "DATA", "--json")
    assert code == 0, err
    some = json.loads(out)
    assert some[0]["selection"]["columns"] == ["DATA"]
    assert some[0]["expected_bytes"] < whole[0].expected_bytes  # FLAG, WEIGHT... bytes not planned
    code, out, err = run(
        "fetch", ms, "--by", "time", "-n", "2", "--columns", "DATA,FLAG", "--baselines", "0-1",
        "--out", str(tmp_path / "o"), "--as", "npz", "--json", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    with np.load(report["partitions"][0]["outputs"][0]) as z:
        assert {"DATA", "FLAG"} <= set(z.files) and "WEIGHT_SPECTRUM" not in z.files and "UVW" not in z.files
        api = skyplug.open(ms).plan("time", 2, columns=["DATA", "FLAG"], baselines=[[0, 1]])[0].load()
        assert (
            np.array_equal(z["DATA"], api["DATA"], equal_nan=True) and len(z["DATA"]) == 3
        )  # one baseline, 3 times
    code, _, err = run("partition", ms, "--by", "time", "-n", "2", "--baselines", "0:1")
    assert code == 2 and "0:1" in one_error(err) and "--help" in err


@pytest.mark.parametrize(
    ("name", "opts", "valid"),
    [("ms", {"baseline": [[0, 1]]}, "baselines, columns, where"), ("cube4", {"columns": ["DATA"]}, "hdu"),
     ("dp3", {"hdu": 1}, "dataset, solset, soltab")],
)  # fmt: skip
def test_unknown_plan_option_is_one_line_listing_the_valid_ones(
    files: dict[str, Path], name: str, opts: dict, valid: str
) -> None:
    ds = skyplug.open(str(files[name]))
    by = {"ms": "time", "cube4": "channel", "dp3": "time"}[name]
    with pytest.raises(PluginError, match=f"no plan option {next(iter(opts))!r} \\(valid: {valid}\\)"):
        ds.plan(by, 2, **opts)
    if name == "cube4":  # from the CLI: an option the format lacks, the same line
        code, _, err = run("partition", str(files[name]), "--by", by, "-n", "2", "--soltab", "x")
        assert code == 1 and "no plan option 'soltab' (valid: hdu)" in one_error(err)


# --- one axis vocabulary ------------------------------------------------------------------------
def test_every_alias_names_its_canonical_axis() -> None:
    for canon, names in AXIS_ALIASES.items():
        assert canon in names and all(canonical_axis(n.upper()) == canon for n in names)
    seen = [n for names in AXIS_ALIASES.values() for n in names]
    assert len(seen) == len(set(seen))  # no alias in two rows


@pytest.mark.parametrize(
    ("name", "aliases", "native"),
    [("ms", ["chan", "channel", "freq", "frequency"], "chan"),
     ("cube4", ["chan", "channel", "freq", "frequency"], "channel"),
     ("dp3", ["chan", "channel", "freq", "frequency"], "freq"),
     ("dp3", ["polarization"], "pol"),
     ("cube4", ["pol", "corr", "stokes"], "stokes"),
     ("dp3", ["ant", "antenna"], "ant")],
)  # fmt: skip
def test_axis_aliases_plan_like_the_native_name(
    files: dict[str, Path], name: str, aliases: list[str], native: str
) -> None:
    ds = skyplug.open(str(files[name]))
    want = [p.selection for p in ds.plan(native, 2)]
    for alias in aliases:
        code, out, err = run("partition", str(files[name]), "--by", alias, "-n", "2", "--json")
        assert code == 0, (alias, err)
        assert [p["selection"] for p in json.loads(out)] == want, alias


def test_unknown_axis_lists_the_axes_and_aliases(files: dict[str, Path]) -> None:
    code, _, err = run("partition", str(files["cube4"]), "--by", "baseline", "-n", "2")
    line = one_error(err)
    assert code == 1 and "cannot partition by 'baseline'" in line and "channel (or chan" in line


# --- honest plans ----------------------------------------------------------------------------------
def test_fewer_partitions_than_asked_say_so(files: dict[str, Path]) -> None:
    h5 = str(files["dp3"])
    with pytest.warns(SkyplugWarning, match="2 partitions, not 3"):
        parts = skyplug.open(h5).plan("pol", 3)
    assert len(parts) == 2 and all("not 3" in p.meta["note"] for p in parts)
    code, out, err = run("partition", h5, "--by", "pol", "-n", "3", "--json")
    assert code == 0
    assert "skyplug: warning:" in err and "2 partitions, not 3" in err
    assert all(p["meta"]["note"].startswith("2 partitions, not 3") for p in json.loads(out))
    code, out, err = run("partition", h5, "--by", "pol", "-n", "3")
    assert "note: 2 partitions, not 3" in out
    code, out, err = run("partition", h5, "--by", "pol", "-n", "2", "--json")
    assert "warning" not in err and all("note" not in p["meta"] for p in json.loads(out))


def test_plot_says_where_it_wrote(files: dict[str, Path], tmp_path: Path) -> None:
    png = tmp_path / "plan.png"
    code, out, err = run(
        "partition", str(files["ms"]), "--by", "time", "-n", "2", "--plot", str(png), "--json"
    )
    assert code == 0, err
    assert f"plot written to {png}" in err and png.read_bytes().startswith(b"\x89PNG")
    json.loads(out)  # stdout stays JSON


# --- fetch --------------------------------------------------------------------------------------
def test_fetch_refuses_to_overwrite_part_files(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "parts"
    args = ["fetch", str(files["cube4"]), "--by", "chan", "-n", "2", "--out", str(out), "--as", "npz"]
    assert run(*args)[0] == 0
    first = (out / "part-0000.npz").stat().st_mtime_ns
    code, _, err = run(*args)
    line = one_error(err)
    assert code == 1 and "part-0000.npz: already exists (and 1 more)" in line and "--overwrite" in line
    assert (out / "part-0000.npz").stat().st_mtime_ns == first
    code, _, err = run(*args, "--overwrite")
    assert code == 0, err
    assert (out / "part-0000.npz").stat().st_mtime_ns != first
    assert run(*args[:-1], "fits")[0] == 0  # another output kind is another file


def test_verbose_shows_what_is_fetched(files: dict[str, Path], tmp_path: Path) -> None:
    from skyplug.core.logs import setup_logging

    try:
        code, _, err = run(
            "-v",
            "fetch",
            str(files["cube4"]),
            "--by",
            "chan",
            "-n",
            "2",
            "--out",
            str(tmp_path),
            "--as",
            "npz",
        )
        assert code == 0, err
        fetched = [ln for ln in err.splitlines() if "fetch partition" in ln]
        assert len(fetched) == 2 and "from site (local)" in fetched[0] and "bytes " in fetched[0]
        assert "ranges" in fetched[0]
        code, _, err = run(
            "fetch", str(files["cube4"]), "--by", "chan", "-n", "2", "--out", str(tmp_path / "q")
        )
        assert "fetch partition" not in err
    finally:
        setup_logging(0)
        logging.getLogger("skyplug").handlers.clear()


# --- usage errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "hint", "what"),
    [(["partition"], "skyplug partition --help", "URI"),
     (["partition", "x.fits", "-n", "2"], "skyplug partition --help", "--by"),
     (["fetch", "x.fits", "--by", "rows", "-n", "zero", "--out", "o"], "skyplug fetch --help", "-n"),
     (["nosuchcommand"], "skyplug --help", "nosuchcommand"),
     (["catalog", "query"], "skyplug catalog query --help", "ADQL"),
     (["partition", "x.fits", "--by", "rows", "-n", "2", "--bogus"], "skyplug partition --help", "--bogus")],
)  # fmt: skip
def test_usage_errors_are_one_line_with_a_help_hint(args: list[str], hint: str, what: str) -> None:
    result = CliRunner().invoke(cli, args, prog_name="skyplug")
    assert result.exit_code == 2
    line = one_error(result.stderr)
    assert what in line and f"(try '{hint}')" in line and "Usage:" not in result.stderr


def test_help_still_exits_zero() -> None:
    result = CliRunner().invoke(cli, ["partition", "--help"], prog_name="skyplug")
    assert result.exit_code == 0 and "--hdu" in result.stdout and "--columns" in result.stdout
    assert "--overwrite" in CliRunner().invoke(cli, ["fetch", "--help"]).stdout
