"""The ProvSAP query: ID (repeatable), DEPTH, DIRECTION, MODEL, RESPONSEFORMAT; bad input is a 4xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import skyplug
from skyplug.core import provenance as pv
from skyplug.plugins.provenance.provsap import respond
from tests.prov import pipeline_steps as steps


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv(pv.DB_ENV, f"sqlite:///{tmp_path / 'catalog.db'}")
    monkeypatch.delenv(pv.RUN_ENV, raising=False)
    assert steps.pipeline(3, 2) == 6
    return {
        "load": "e-" + pv.value_id([0, 1, 2]),
        "scale": "e-" + pv.value_id([0, 2, 4]),
        "total": "e-" + pv.value_id(6),
    }


def test_back_all_from_the_final_result_reaches_the_first_step(recorded: dict[str, str]) -> None:
    status, body, mime = respond(
        f"ID=sky:{recorded['total']}&DEPTH=ALL&DIRECTION=BACK&RESPONSEFORMAT=PROV-JSON"
    )
    assert status == 200 and mime == "application/json"
    entities = json.loads(body)["entity"]
    assert {f"sky:{e}" for e in recorded.values()} <= set(entities)


def test_depth_forth_repeated_ids_and_w3c_model(recorded: dict[str, str]) -> None:
    status, body, _ = respond(f"ID={recorded['load']}&DEPTH=0&DIRECTION=FORTH")
    assert status == 200 and recorded["load"] in body and recorded["scale"] not in body
    status, body, _ = respond(f"ID={recorded['load']}&DEPTH=1&DIRECTION=FORTH")
    assert recorded["scale"] in body and recorded["total"] not in body  # scale's result derives from it
    status, body, _ = respond(f"ID={recorded['load']}&DEPTH=ALL&DIRECTION=FORTH")
    assert recorded["total"] in body
    status, body, _ = respond(f"ID={recorded['load']}&ID={recorded['total']}&DEPTH=0&MODEL=W3C")
    assert status == 200 and recorded["load"] in body and recorded["total"] in body
    assert "voprov:Entity" not in body
    status, body, mime = respond(f"ID={recorded['load']}&RESPONSEFORMAT=PROV-XML")
    assert status == 200 and mime == "application/xml" and body.startswith("<?xml")


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("DEPTH=1", 400, "ID parameter is required"),
        ("ID=e-x&RESPONSEFORMAT=VOTABLE", 400, "RESPONSEFORMAT 'VOTABLE'"),
        ("ID=e-x&DEPTH=deep", 400, "depth 'deep'"),
        ("ID=e-x&DIRECTION=sideways", 400, "direction 'sideways'"),
        ("ID=e-unknown", 404, "e-unknown"),
    ],
)
def test_bad_queries(recorded: dict[str, str], query: str, status: int, words: str) -> None:
    got, body, mime = respond(query)
    assert (got, mime) == (status, "text/plain") and words in body


def test_activity_api_records_what_a_block_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.setenv(pv.DB_ENV, f"sqlite:///{tmp_path / 'catalog.db'}")
    np.save(tmp_path / "a.npy", np.arange(40.0).reshape(10, 4))
    with skyplug.activity("calibrate", params={"solint": 8}) as act:
        part = skyplug.open(str(tmp_path / "a.npy")).plan("rows", 2)[1]
        part.load()
    status, body, _ = respond(f"ID={act.id}&DEPTH=ALL")
    assert status == 200 and "voprov:byteRanges" in body and 'voprov:name="solint"' in body


def test_catalog_serve_answers_provsap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error
    import urllib.request

    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.server import TapServer
    from skyplug.core import config

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.delenv(pv.DB_ENV, raising=False)
    config.set_config(
        config.Config.from_dict({"catalog": {"url": url}})
    )  # provenance goes with the catalogue
    assert steps.pipeline(3, 2) == 6
    total = "e-" + pv.value_id(6)
    with open_catalog(url) as cat:
        server = TapServer(cat, port=0, jobs_dir=tmp_path / "jobs").start()
        try:
            base = server.url.removesuffix("/tap")
            with urllib.request.urlopen(f"{base}/provsap?ID={total}&DEPTH=ALL&RESPONSEFORMAT=PROV-JSON") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
                assert "sky:" + "e-" + pv.value_id([0, 1, 2]) in json.loads(r.read())["entity"]
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"{base}/provsap?ID=e-nope")
            assert info.value.code == 404 and b"e-nope" in info.value.read()
        finally:
            server.stop()


JOIN = """SELECT DISTINCT o.obs_publisher_did, n.run FROM ivoa_obscore o JOIN prov_nodes n
  ON json_extract(n.attrs, '$.location') = o.skyplug_uri
 AND json_extract(n.attrs, '$.version') = o.skyplug_version"""


def test_provenance_joins_obscore_records_in_the_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    import numpy as np

    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.service import record_for

    db = tmp_path / "catalog.db"
    monkeypatch.setenv(pv.DB_ENV, f"sqlite:///{db}")
    np.save(tmp_path / "a.npy", np.arange(40.0).reshape(10, 4))
    uri = str(tmp_path / "a.npy")
    with open_catalog(f"sqlite:///{db}") as cat:
        did = cat.add([record_for(uri)])[0]["obs_publisher_did"]
    with skyplug.activity("calibrate") as act:
        skyplug.open(uri).plan("rows", 2)[0].load()
    assert sqlite3.connect(db).execute(JOIN).fetchall() == [(did, act.run)]
