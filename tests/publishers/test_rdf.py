"""Graphs of records and provenance runs: vocabulary, SHACL shapes, DCAT terms, hostile values."""

from __future__ import annotations

import pyshacl
import pytest
import rdflib.namespace as ns
from rdflib import RDF, BNode, Graph, Literal, URIRef
from rdflib.compare import isomorphic

from skyplug.plugins.publishers import rdf
from tests.publishers.conftest import HOSTILE, Pipeline, hostile_name, hostile_records, subbands


def conforms(g: Graph) -> None:
    ok, _, text = pyshacl.validate(g, shacl_graph=rdf.shapes(), ont_graph=rdf.ontology(), inference="rdfs")
    assert ok, text


def test_committed_vocabulary_is_the_generated_one() -> None:
    assert isomorphic(rdf.ontology(), rdf.vocabulary())


def test_every_column_has_a_property_with_its_unit() -> None:
    vocab = rdf.ontology()
    for col in rdf.columns():
        prop = rdf.SKY[col.name]
        assert (prop, RDF.type, rdf.OWL.DatatypeProperty) in vocab
        if col.unit:
            assert vocab.value(prop, rdf.SKY.unit) == Literal(col.unit)
        if col.utype:
            assert vocab.value(prop, rdf.SKY.utype) == Literal(col.utype)
    assert vocab.value(rdf.SKY.s_ra, rdf.QUDT.hasUnit) == rdf.UNIT.DEG
    assert vocab.value(rdf.SKY.em_min, rdf.QUDT.hasUnit) == rdf.UNIT.M


def test_record_is_a_dcat_dataset_with_a_distribution() -> None:
    rec = subbands(n=1)[0]
    g = rdf.record_graph(rec)
    ds = rdf.dataset_iri(rec["obs_publisher_did"])
    assert (ds, RDF.type, ns.DCAT.Dataset) in g
    assert g.value(ds, ns.DCTERMS.identifier) == Literal(rec["obs_publisher_did"])
    dist = g.value(ds, ns.DCAT.distribution)
    assert g.value(dist, ns.DCAT.accessURL) == URIRef(rec["access_url"])
    assert g.value(dist, ns.DCAT.mediaType) == URIRef(rdf.IANA + "application/x-casa-ms")
    assert g.value(dist, ns.DCAT.byteSize) == Literal(1_000_000_000, datatype=ns.XSD.nonNegativeInteger)
    checksum = g.value(dist, rdf.SPDX.checksum)
    assert g.value(checksum, rdf.SPDX.algorithm) == rdf.SPDX.checksumAlgorithm_sha256
    assert g.value(checksum, rdf.SPDX.checksumValue) == Literal("0" * 64)
    assert g.value(ds, rdf.SKY.em_min) == Literal(rec["em_min"], datatype=ns.XSD.double)
    assert g.value(ds, rdf.SKY.calib_level) == Literal(1, datatype=ns.XSD.integer)
    assert not any(isinstance(t, BNode) for triple in g for t in triple)
    conforms(g)


def test_plain_path_access_url_is_a_file_iri() -> None:
    rec = hostile_records()[2]  # a '#' in the file name must not become a fragment
    g = rdf.record_graph(rec)
    url = g.value(g.value(rdf.dataset_iri(rec["obs_publisher_did"]), ns.DCAT.distribution), ns.DCAT.accessURL)
    assert url.startswith("file:///data/hostile/2/") and "#" not in url and " " not in url


def test_derived_record_points_at_its_parent(pipeline: Pipeline) -> None:
    cal = pipeline.records[2]
    g = rdf.record_graph(cal)
    parent = rdf.dataset_iri(pipeline.records[0]["obs_publisher_did"])
    assert (rdf.dataset_iri(cal["obs_publisher_did"]), ns.PROV.wasDerivedFrom, parent) in g


def test_provenance_run_is_prov_o_without_blank_nodes(pipeline: Pipeline) -> None:
    g = rdf.run_graph(pipeline.run, *pipeline.rows)
    assert not any(isinstance(t, BNode) for triple in g for t in triple)
    assert len(set(g.subjects(RDF.type, ns.PROV.Activity))) == 2
    raw = rdf.SKYPROV["e-" + rdf.pv.content_id(pipeline.raw, "v1")]
    cal = rdf.SKYPROV["e-" + rdf.pv.content_id(pipeline.calibrated, "v1")]
    assert (cal, ns.PROV.wasDerivedFrom, raw) in g
    assert (
        cal,
        ns.PROV.wasGeneratedBy,
        g.value(g.value(cal, ns.PROV.qualifiedGeneration), ns.PROV.activity),
    ) in g
    assert (
        len(list(g.subject_objects(ns.PROV.used)))
        == len(list(g.subject_objects(ns.PROV.qualifiedUsage)))
        == 3
    )
    assert g.value(raw, ns.PROV.atLocation) == Literal(pipeline.raw)  # plain, not ^^xsd:string
    again = rdf.run_graph(pipeline.run, *pipeline.rows)
    assert set(again) == set(g)  # the same IRIs every time: a replaced graph stays the same
    conforms(g)


def test_every_graph_passes_the_shapes(pipeline: Pipeline) -> None:
    whole = Graph()
    for rec in [*pipeline.records, *subbands(), *hostile_records()]:
        whole += rdf.record_graph(rec)
    whole += rdf.run_graph(pipeline.run, *pipeline.rows)
    conforms(whole)


def test_shapes_reject_a_broken_record() -> None:
    rec = subbands(n=1)[0] | {"s_dec": 91.0}
    g = rdf.record_graph(rec)
    ds = rdf.dataset_iri(rec["obs_publisher_did"])
    g.remove((g.value(ds, ns.DCAT.distribution), ns.DCAT.accessURL, None))
    ok, _, text = pyshacl.validate(g, shacl_graph=rdf.shapes())
    assert not ok and "accessURL" in text and "s_dec" in text


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_are_literals(value: str) -> None:
    rec = next(r for r in hostile_records() if r["obs_title"] == value)
    g = rdf.record_graph(rec)
    ds = rdf.dataset_iri(rec["obs_publisher_did"])
    assert g.value(ds, ns.DCTERMS.title) == Literal(value)
    assert g.value(ds, rdf.SKY.fileName) == Literal(hostile_name(HOSTILE.index(value)))
    assert g.value(ds, rdf.SKY.target_name) == Literal(value)
    parsed = Graph().parse(data=g.serialize(format="nt"), format="nt")
    assert isomorphic(parsed, g)
