"""``skyplug catalog add/query/plot`` end to end with a real FITS cube, and automatic records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


# --- PostgreSQL DSNs: passwords never shown; an unreachable server is one line --------------------
PG_CANARY = "pw-CANARY-51c2e0"


def _with_password(url: str) -> str:
    """``url`` with a password added (the test cluster trusts local connections, so it is ignored)."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PG_CANARY}@{host}"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skyplug: error:"), result.stderr
    assert "Traceback" not in result.output and PG_CANARY not in result.output
    return lines[0]


@pytest.mark.pg
def test_catalog_add_and_serve_never_print_the_password(pg_url: str, tmp_path: Path) -> None:
    files = make_all(tmp_path / "data")
    url = _with_password(pg_url)
    try:
        _add_and_serve(files["cube4"], url, pg_url, tmp_path)
    finally:  # the session's PostgreSQL catalogue is shared: leave it with its synthetic records only
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            uri = str(files["cube4"])
            conn.execute(
                "DELETE FROM ivoa.obscore_radio WHERE obs_publisher_did IN "
                "(SELECT obs_publisher_did FROM ivoa.obscore WHERE skyplug_uri = %s)",
                (uri,),
            )
            conn.execute("DELETE FROM ivoa.obscore WHERE skyplug_uri = %s", (uri,))


def _add_and_serve(cube: Path, url: str, pg_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    res = CliRunner().invoke(cli, ["catalog", "add", str(cube), "--db", url, "--json"])
    assert res.exit_code == 0, res.output
    assert PG_CANARY not in res.output and json.loads(res.stdout)["db"].endswith(pg_url.split("@", 1)[1])
    res = CliRunner().invoke(cli, ["catalog", "add", str(cube), "--db", url])
    assert res.exit_code == 0 and PG_CANARY not in res.output
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyplug.cli", "catalog", "serve", "--port", "0", "--db", url,
         "--jobs", str(tmp_path / "jobs")],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        line = proc.stderr.readline() if proc.stderr else ""
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "skyplug TAP service at http://127.0.0.1:" in line and ":***@" in line
    assert PG_CANARY not in line


def test_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    files = make_all(tmp_path / "data")
    url = f"postgresql://skyplug:{PG_CANARY}@127.0.0.1:{_closed_port()}/skyplug"
    runner = CliRunner()
    for args in (
        ["catalog", "add", str(files["cube4"]), "--db", url],
        ["catalog", "query", "SELECT TOP 1 obs_id FROM ivoa.obscore", "--db", url],
        ["catalog", "serve", "--port", "0", "--db", url, "--jobs", str(tmp_path / "jobs")],
    ):
        line = _one_error_line(runner.invoke(cli, args))
        assert "cannot connect" in line and "127.0.0.1" in line and ":***@" in line


def test_unreachable_postgresql_location_db_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "skyplug.toml"
    cfg.write_text(
        f'[sites.disk]\ntype = "local"\npath = "{tmp_path / "disk"}"\n'
        f'[multisite]\ndb = "postgresql://skyplug@127.0.0.1:{_closed_port()}/skyplug"\n'
    )
    res = CliRunner().invoke(cli, ["--config", str(cfg), "replicas", "sky://b/k", "--json"])
    line = _one_error_line(res)
    assert "[multisite] db" in line and "cannot connect" in line
