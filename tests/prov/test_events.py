"""Replica fills and catalogue adds are activities; a derived product's ObsCore record points at its
catalogued parent (``obs_creator_did`` -> the parent's ``obs_publisher_did``)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyplug.cli import cli
from skyplug.core import provenance as pv
from skyplug.plugins.provenance.store import open_store
from skyplug.synthetic.fits import make_all


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'prov.db'}"
    monkeypatch.setenv(pv.DB_ENV, url)
    return url


def _activities(url: str, name: str) -> list[tuple[str, dict, list, dict]]:
    """(id, attrs, relations of its run, nodes of its run) of every activity called ``name``."""
    out = []
    with open_store(url) as store:
        for run in store.runs():
            nodes, rels = store.run_rows(run["run"])
            for nid, (kind, attrs) in nodes.items():
                if kind == "activity" and attrs["name"] == name:
                    out.append((nid, attrs, rels, nodes))
    return out


def test_a_replica_fill_is_an_activity_from_the_source_replica(sky, store_url: str) -> None:
    from skyplug.core.uri import parse_uri
    from skyplug.plugins.locators.multisite.locator import open_sky

    data = os.urandom(200_000)
    obj = sky.put(data, "obs/fill.bin", at="edge")
    assert _activities(store_url, "fill") == []
    assert open_sky(parse_uri(sky.uri("obs/fill.bin")), "lake-a").read(0, 1000) == data[:1000]
    assert sky.states(obj) == {"edge": "ready", "lake-a": "ready"}
    [(aid, _, rels, nodes)] = _activities(store_url, "fill")
    used = {o for k, s, o, _ in rels if k == "used" and s == aid}
    made = {s for k, s, o, _ in rels if k == "wasGeneratedBy" and o == aid}
    assert [nodes[u][1]["site"] for u in used] == ["edge"]
    assert [nodes[m][1]["site"] for m in made] == ["lake-a"]
    (new,) = made
    assert nodes[new][1]["checksum"] == obj.version and nodes[new][1]["location"] == sky.uri("obs/fill.bin")
    assert ("wasDerivedFrom", new, used.pop()) in {(k, s, o) for k, s, o, _ in rels}


def test_a_catalogue_add_is_an_activity_generating_the_record(tmp_path: Path, store_url: str) -> None:
    files = make_all(tmp_path / "data")
    db = f"sqlite:///{tmp_path / 'cat.db'}"
    res = CliRunner().invoke(cli, ["catalog", "add", str(files["cube4"]), "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    did = json.loads(res.output)["records"][0]["obs_publisher_did"]
    [(aid, _, rels, nodes)] = _activities(store_url, "catalog add")
    made = [s for k, s, o, _ in rels if k == "wasGeneratedBy" and o == aid]
    assert [nodes[m][1]["publisher_did"] for m in made] == [did]
    used = [o for k, s, o, _ in rels if k == "used" and s == aid]
    assert [nodes[u][1]["location"] for u in used] == [str(files["cube4"])]
    assert ("wasDerivedFrom", made[0], used[0]) in {(k, s, o) for k, s, o, _ in rels}


JOIN = """SELECT c.obs_id, p.obs_id FROM ivoa_obscore c
  JOIN ivoa_obscore p ON c.obs_creator_did = p.obs_publisher_did ORDER BY c.obs_id"""


def test_a_derived_product_record_points_at_its_catalogued_parent(tmp_path: Path, store_url: str) -> None:
    files = make_all(tmp_path / "data")
    db = f"sqlite:///{tmp_path / 'cat.db'}"
    runner = CliRunner()

    def add(path: Path) -> dict:
        res = runner.invoke(cli, ["catalog", "add", str(path), "--db", db, "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.output)["records"][0]

    parent = add(files["cube4"])
    for name in ("cube4", "cube_u16"):  # cube_u16 is never catalogued
        res = runner.invoke(
            cli,
            [
                "fetch",
                str(files[name]),
                "--by",
                "channel",
                "-n",
                "2",
                "--only",
                "0",
                "--out",
                str(tmp_path / name),
            ],
        )
        assert res.exit_code == 0, res.output
    child = add(next((tmp_path / "cube4").iterdir()))
    orphan = add(next((tmp_path / "cube_u16").iterdir()))
    conn = sqlite3.connect(tmp_path / "cat.db")
    creators = dict(conn.execute("SELECT obs_publisher_did, obs_creator_did FROM ivoa_obscore").fetchall())
    assert creators == {
        parent["obs_publisher_did"]: None,
        child["obs_publisher_did"]: parent["obs_publisher_did"],
        orphan["obs_publisher_did"]: None,
    }
    assert conn.execute(JOIN).fetchall() == [("part-0000.fits", files["cube4"].name)]
    assert add(next((tmp_path / "cube4").iterdir()))["status"] == "unchanged"  # re-adding keeps it
