"""The archivists' queries of docs/sparql.md, with bound values, on the embedded store and on both
servers through SPARQLWrapper; the hostile names found back literally."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from skyplug.plugins.publishers.sparql import QUERIES, SparqlPublisher
from tests.publishers.conftest import HOSTILE, Pipeline, hostile_name, hostile_records, subbands

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sparql.md"
C = 299_792_458.0


@pytest.fixture(params=["embedded", "virtuoso", "oxigraph"])
def published(request: pytest.FixtureRequest, pipeline: Pipeline) -> SparqlPublisher:
    """A store holding the pipeline (records and run), an observation's subbands and hostile records."""
    if request.param == "embedded":
        pub = SparqlPublisher()
    else:
        server = request.getfixturevalue("virtuoso" if request.param == "virtuoso" else "oxigraph_server")
        pub = SparqlPublisher(server.store, user=server.user, password=server.password)
    pub.drop()
    pub.publish(
        [*pipeline.records, *subbands(), *subbands("L999999", 2), *hostile_records()], pipeline.provenance
    )
    yield pub
    pub.close()


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["name"]) for r in rows]


def test_every_query_is_in_the_docs() -> None:
    blocks = re.findall(r"```sparql\n(.*?)```", DOCS.read_text(), re.S)
    for name, text in QUERIES.items():
        body = text.split("\n", 4)[4]  # the docs show the PREFIX lines once
        assert any(body.strip() in b for b in blocks), name


def test_subbands_of_an_observation(published: SparqlPublisher) -> None:
    rows = published.query(QUERIES["subbands"], {"obs_id": "L654321"})
    assert names(rows) == [f"L654321_SB{i:03d}_uv.MS" for i in range(4)]
    assert float(rows[0]["em_max"]) == pytest.approx(C / 30e6)  # a value, whatever its lexical form


def test_images_derived_transitively_from_a_raw_ms(published: SparqlPublisher) -> None:
    rows = published.query(QUERIES["derived_images"], {"raw_uri": Pipeline.raw})
    assert names(rows) == ["image-MFS.fits"]
    assert published.query(QUERIES["derived_images"], {"raw_uri": "s3://nowhere/raw.MS"}) == []


def test_products_calibrated_with_an_h5parm(published: SparqlPublisher) -> None:
    rows = published.query(QUERIES["calibrated_with"], {"h5parm_uri": Pipeline.h5parm})
    assert names(rows) == ["calibrated.MS", "image-MFS.fits"]


def test_datasets_in_a_sky_region_and_frequency_range(published: SparqlPublisher) -> None:
    box = {"ra_min": 120.0, "ra_max": 125.0, "dec_min": 45.0, "dec_max": 50.0}
    rows = published.query(QUERIES["region_frequency"], box | {"f_min": 35e6, "f_max": 37e6})
    assert sorted(names(rows)) == ["L654321_SB001_uv.MS", "L999999_SB001_uv.MS"]  # 34-38 MHz
    assert published.query(QUERIES["region_frequency"], box | {"f_min": 100e6, "f_max": 120e6}) == []


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_name_found_as_a_dcat_dataset(published: SparqlPublisher, i: int) -> None:
    rows = published.query(QUERIES["by_name"], {"name": hostile_name(i)})
    assert len(rows) == 1 and str(rows[0]["title"]) == HOSTILE[i]
    assert str(rows[0]["access"]).startswith("file:///data/hostile/")
