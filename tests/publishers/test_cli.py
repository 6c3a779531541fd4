"""``skyplug catalog publish`` and ``[publishers.NAME]`` end to end: a real FITS file named
``we"ird>name}.fits`` catalogued, published, and found as a dcat:Dataset on both servers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skyplug.cli import cli
from skyplug.core import config
from skyplug.plugins.publishers.sparql import PASSWORD_ENV, QUERIES, SparqlPublisher
from skyplug.synthetic.fits import make_all

WEIRD = 'we"ird>name}.fits'


@pytest.fixture
def weird_catalog(tmp_path: Path) -> str:
    """A catalogue holding one FITS cube named ``we"ird>name}.fits``."""
    files = make_all(tmp_path / "data")
    weird = tmp_path / "data" / WEIRD
    shutil.copy(files["cube4"], weird)
    db = f"sqlite:///{tmp_path / 'cat.db'}"
    res = CliRunner().invoke(cli, ["catalog", "add", str(weird), "--db", db])
    assert res.exit_code == 0, res.output
    return db


def find_weird(pub: SparqlPublisher) -> list[dict[str, Any]]:
    return pub.query(QUERIES["by_name"], {"name": WEIRD})


def test_publish_to_each_server_then_find_the_weird_name(
    rdf_server: Any, weird_catalog: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = rdf_server.update if rdf_server.kind == "virtuoso" else rdf_server.store
    args = ["catalog", "publish", "--to", "sparql", "--endpoint", endpoint, "--graph-prefix", "urn:cli:"]
    if rdf_server.user:
        args += ["--user", rdf_server.user]
        monkeypatch.setenv(PASSWORD_ENV, rdf_server.password)
    runner = CliRunner()
    res = runner.invoke(cli, [*args, "--db", weird_catalog, "--json"])
    assert res.exit_code == 0, res.output
    first = json.loads(res.output)
    assert first["records"] == 1 and first["triples"] > 20
    pub = SparqlPublisher(endpoint, graph_prefix="urn:cli:", user=rdf_server.user)
    n = pub.triples()
    again = runner.invoke(cli, [*args, "--db", weird_catalog, "--json"])
    assert again.exit_code == 0, again.output
    assert pub.triples() == n  # re-publishing changes nothing
    rows = find_weird(pub)
    assert len(rows) == 1 and str(rows[0]["title"])
    assert str(rows[0]["access"]).endswith("/we%22ird%3Ename%7D.fits")
    pub.drop()


def test_publish_without_endpoint_uses_the_embedded_store(weird_catalog: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["catalog", "publish", "--db", weird_catalog])
    assert res.exit_code == 0, res.output
    assert "1 records" in res.output
    store = config.data_dir() / "sparql-store"
    assert len(find_weird(SparqlPublisher(f"oxigraph:{store}"))) == 1


def test_wrong_password_is_one_line(
    virtuoso: Any, weird_catalog: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong-secret-77")
    args = [
        "catalog",
        "publish",
        "--endpoint",
        virtuoso.update,
        "--user",
        virtuoso.user,
        "--db",
        weird_catalog,
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and virtuoso.update in lines[0] and "authentication failed" in lines[0]
    assert "wrong-secret-77" not in res.output and "Traceback" not in res.output


def test_configured_publisher_publishes_after_catalog_add(oxigraph_server: Any, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'auto.db'}"
    store = tmp_path / "auto-store"
    raw = {
        "catalog": {"url": db},
        "publishers": {
            "archive": {"type": "sparql", "endpoint": oxigraph_server.store, "graph_prefix": "urn:auto:"},
            "local": {"type": "sparql", "endpoint": f"oxigraph:{store}"},
        },
    }
    config.set_config(config.Config.from_dict(raw))
    files = make_all(tmp_path / "data")
    weird = tmp_path / "data" / WEIRD
    shutil.copy(files["cube4"], weird)
    res = CliRunner().invoke(cli, ["catalog", "add", str(weird)])
    assert res.exit_code == 0, res.output
    remote = SparqlPublisher(oxigraph_server.store, graph_prefix="urn:auto:")
    assert len(find_weird(remote)) == 1
    assert len(find_weird(SparqlPublisher(f"oxigraph:{store}"))) == 1
    remote.drop()


def test_a_refusing_configured_publisher_only_warns(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'warn.db'}"
    raw = {
        "catalog": {"url": db},
        "publishers": {"sparql": {"endpoint": "http://127.0.0.1:9/update", "retries": 0}},
    }
    config.set_config(config.Config.from_dict(raw))
    files = make_all(tmp_path / "data")
    res = CliRunner().invoke(cli, ["catalog", "add", str(files["cube4"])])
    assert res.exit_code == 0, res.output
    warning = [ln for ln in res.output.splitlines() if "publisher sparql" in ln]
    assert len(warning) == 1 and "http://127.0.0.1:9/update: unreachable" in warning[0]
    assert "added" in res.output  # the record is catalogued all the same
