"""``skyplug catalog add/query/plot`` end to end with a real FITS cube, and automatic records."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from skyplug.cli import cli
from skyplug.synthetic.fits import make_all


def test_add_query_plot(tmp_path: Path) -> None:
    files = make_all(tmp_path / "data")
    db = f"sqlite:///{tmp_path / 'cat.db'}"
    runner = CliRunner()
    res = runner.invoke(cli, ["catalog", "add", str(files["cube4"]), "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["records"][0]["status"] == "added"
    again = runner.invoke(cli, ["catalog", "add", str(files["cube4"]), "--db", db, "--json"])
    assert json.loads(again.output)["records"][0]["status"] == "unchanged"
    q = (
        "SELECT obs_id, target_name, facility_name, em_min, em_max, skyplug_format, s_region "
        "FROM ivoa.obscore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', s_ra, s_dec, 1.0))"
    )
    res = runner.invoke(
        cli,
        [
            "catalog",
            "query",
            "SELECT target_name, facility_name, em_min, em_max, skyplug_format FROM ivoa.obscore",
            "--db",
            db,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)["rows"][0]
    assert (
        row["target_name"] == "M101" and row["facility_name"] == "NenuFAR" and row["skyplug_format"] == "fits"
    )
    assert 6.0 < row["em_min"] < row["em_max"] < 7.0  # ~44-46 MHz in metres
    res = runner.invoke(cli, ["catalog", "query", q, "--db", db])
    assert res.exit_code == 0 and "M101" in res.output
    bad = runner.invoke(cli, ["catalog", "query", "DROP TABLE ivoa.obscore", "--db", db])
    assert bad.exit_code == 1 and "only SELECT" in bad.output
    png = tmp_path / "cov.png"
    res = runner.invoke(cli, ["catalog", "plot", "--db", db, "-o", str(png)])
    assert res.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_object_written_adds_a_record(tmp_path: Path) -> None:
    from skyplug.catalog.db import open_catalog
    from skyplug.core import config, plugins

    files = make_all(tmp_path / "data")
    url = f"sqlite:///{tmp_path / 'auto.db'}"
    config.set_config(config.Config.from_dict({"catalog": {"url": url}}))
    plugins.get_plugin_manager().hook.skyplug_object_written(
        config=config.get_config(), path=str(files["cube4"]), source=None, kind="fits"
    )
    with open_catalog(url) as cat:
        assert cat.query("SELECT target_name FROM ivoa.obscore").rows == [("M101",)]
