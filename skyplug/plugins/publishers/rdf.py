"""RDF graphs of catalogue records (DCAT + ObsCore terms) and provenance runs (PROV-O), with rdflib.

Kept apart from the SPARQL transport so the same graphs go to an embedded store, an Oxigraph
server or Virtuoso. Every value becomes an rdflib ``Literal`` or a percent-encoded ``URIRef``; text
is never pasted into SPARQL or Turtle. Graphs hold no blank nodes (checksums and PROV qualified
relations are skolemised to IRIs below the graph's own IRI), so a graph re-sent in several batches,
or replaced, stays identical: Virtuoso would duplicate blank nodes on re-insert.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

from rdflib import RDF, RDFS, XSD, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, OWL, PROV, SKOS

from skyplug.catalog import model
from skyplug.core import provenance as pv

SKY = Namespace("https://skyplug.readthedocs.io/ns#")
"""skyplug's vocabulary (skyplug/ontologies/skyplug.ttl): one property per catalogue column."""
SKYPROV = Namespace(pv.SKY_URI)
VOPROV = Namespace(pv.VOPROV_URI)
SPDX = Namespace("http://spdx.org/rdf/terms#")
QUDT = Namespace("http://qudt.org/schema/qudt/")
UNIT = Namespace("http://qudt.org/vocab/unit/")
IANA = "https://www.iana.org/assignments/media-types/"
OBSCORE_DOC = URIRef("https://www.ivoa.net/documents/ObsCore/")
RADIO_DOC = URIRef("https://www.ivoa.net/documents/ObsCoreRadio/")
DEFAULT_PREFIX = "urn:skyplug:"

PREFIXES = {
    "sky": SKY,
    "skyprov": SKYPROV,
    "voprov": VOPROV,
    "dcat": DCAT,
    "dcterms": DCTERMS,
    "prov": PROV,
    "spdx": SPDX,
    "qudt": QUDT,
    "unit": UNIT,
    "xsd": XSD,
    "rdfs": RDFS,
    "owl": OWL,
    "skos": SKOS,
}

# VOUnits of the catalogue columns as QUDT units
_QUDT_UNITS = {
    "deg": UNIT.DEG,
    "arcsec": UNIT.ARCSEC,
    "m": UNIT.M,
    "s": UNIT.SEC,
    "d": UNIT.DAY,
    "kbyte": UNIT.KiloBYTE,
    "kHz": UNIT.KiloHZ,
    "Hz": UNIT.HZ,
    "MHz": UNIT.MegaHZ,
}
_XSD = {"char": XSD.string, "int": XSD.integer, "long": XSD.integer, "double": XSD.double}
# a column also stated with a standard term of DCAT / Dublin Core
_STANDARD = {"obs_publisher_did": DCTERMS.identifier, "obs_title": DCTERMS.title}
# characters that may stay as they are in an IRI (RFC 3987 minus what N-Triples/SPARQL forbid)
_IRI_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
_HEX = re.compile(r"[0-9a-fA-F]+")


def iri(text: str) -> URIRef:
    """An IRI of arbitrary text: characters IRIs forbid (``"<>{}|\\^`` and spaces) are %-encoded."""
    return URIRef(quote(text, safe=_IRI_SAFE))


def columns() -> tuple[model.Column, ...]:
    """Every catalogue column once (ObsCore first, then radio; the join key only once)."""
    seen: set[str] = set()
    out = []
    for col in (*model.OBSCORE.columns, *model.OBSCORE_RADIO.columns):
        if col.name not in seen:
            seen.add(col.name)
            out.append(col)
    return tuple(out)


_RADIO = frozenset(c.name for c in model.OBSCORE_RADIO.columns) - {"obs_publisher_did"}


def vocabulary() -> Graph:
    """skyplug's vocabulary: classes, and one datatype property per catalogue column with its unit,
    UCD and ObsCore utype (``skyplug/ontologies/skyplug.ttl`` is this graph, checked by a test)."""
    g = _bind(Graph())
    onto = URIRef(str(SKY).rstrip("#"))
    g.add((onto, RDF.type, OWL.Ontology))
    g.add((onto, RDFS.label, Literal("skyplug catalogue and provenance vocabulary", lang="en")))
    g.add((onto, RDFS.seeAlso, OBSCORE_DOC))
    g.add((onto, RDFS.seeAlso, RADIO_DOC))
    for name, label in (
        ("Record", "A catalogue record of one version of one object (a dcat:Dataset)"),
        ("ProvenanceRun", "The named graph of one provenance run (PROV-O)"),
    ):
        g.add((SKY[name], RDF.type, OWL.Class))
        g.add((SKY[name], RDFS.comment, Literal(label, lang="en")))
    g.add((SKY.Record, RDFS.subClassOf, DCAT.Dataset))
    for name, rng, comment in (
        ("fileName", XSD.string, "Last path segment of the object's URI"),
        ("uri", XSD.string, "The object's skyplug URI as written (path, s3://, sky://)"),
        ("provenance", OWL.Thing, "The PROV entity of this object's bytes (URI + version)"),
    ):
        prop = SKY[name]
        g.add((prop, RDF.type, OWL.DatatypeProperty if rng == XSD.string else OWL.ObjectProperty))
        g.add((prop, RDFS.domain, DCAT.Dataset))
        g.add((prop, RDFS.range, rng))
        g.add((prop, RDFS.comment, Literal(comment, lang="en")))
    for col in columns():
        prop = SKY[col.name]
        g.add((prop, RDF.type, OWL.DatatypeProperty))
        g.add((prop, RDFS.label, Literal(col.name)))
        if col.description:
            g.add((prop, RDFS.comment, Literal(col.description, lang="en")))
        g.add((prop, RDFS.domain, DCAT.Dataset))
        g.add((prop, RDFS.range, _XSD.get(col.datatype, XSD.string)))
        if col.name in _RADIO:
            g.add((prop, RDFS.isDefinedBy, RADIO_DOC))
        elif not col.name.startswith("skyplug_"):
            g.add((prop, RDFS.isDefinedBy, OBSCORE_DOC))
        else:
            g.add((prop, RDFS.isDefinedBy, onto))
        if col.unit:
            g.add((prop, SKY.unit, Literal(col.unit)))
            if col.unit in _QUDT_UNITS:
                g.add((prop, QUDT.hasUnit, _QUDT_UNITS[col.unit]))
        if col.ucd:
            g.add((prop, SKY.ucd, Literal(col.ucd)))
        if col.utype:
            g.add((prop, SKY.utype, Literal(col.utype)))
        if col.name in _STANDARD:
            g.add((prop, RDFS.subPropertyOf, _STANDARD[col.name]))
    for name, comment in (
        ("unit", "VOUnit of the property's values"),
        ("ucd", "IVOA UCD of the property"),
        ("utype", "IVOA ObsCore utype of the column (the ObsCore term)"),
    ):
        g.add((SKY[name], RDF.type, OWL.AnnotationProperty))
        g.add((SKY[name], RDFS.comment, Literal(comment, lang="en")))
    return g


def _bind(g: Graph) -> Graph:
    for prefix, ns in PREFIXES.items():
        g.bind(prefix, ns, override=True)
    return g


@cache
def shapes() -> Graph:
    """The SHACL shapes every published graph satisfies (``skyplug/ontologies/shapes.ttl``)."""
    text = resources.files("skyplug.ontologies").joinpath("shapes.ttl").read_text(encoding="utf-8")
    return Graph().parse(data=text, format="turtle")


def ontology() -> Graph:
    """The committed vocabulary (``skyplug/ontologies/skyplug.ttl``)."""
    text = resources.files("skyplug.ontologies").joinpath("skyplug.ttl").read_text(encoding="utf-8")
    return Graph().parse(data=text, format="turtle")


# --- records ---------------------------------------------------------------------------------


def dataset_iri(did: str) -> URIRef:
    """The ``dcat:Dataset`` of the record with this publisher DID."""
    return iri(f"{DEFAULT_PREFIX}dataset/{quote(did, safe='')}")


def record_graph_iri(did: str, prefix: str = DEFAULT_PREFIX) -> URIRef:
    """The named graph holding one record."""
    return iri(f"{prefix}record/{quote(did, safe='')}")


def run_graph_iri(run: str, prefix: str = DEFAULT_PREFIX) -> URIRef:
    """The named graph holding one provenance run."""
    return iri(f"{prefix}prov/{quote(run, safe='')}")


def _access_iri(url: str) -> URIRef:
    """An access URL as an IRI: a plain path becomes a ``file://`` URL (``#`` and ``?`` in it encoded)."""
    if "://" not in url:
        return URIRef("file://" + quote(url if url.startswith("/") else "/" + url, safe="/"))
    return iri(url)


def _checksum(value: str) -> tuple[str, str]:
    """(SPDX algorithm, hex digest) of ``algo:hex`` or a bare hex digest (by its length)."""
    algo, _, digest = value.rpartition(":")
    if not _HEX.fullmatch(digest):
        return "unknown", value
    algo = algo.lower().replace("-", "") or {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}.get(
        len(digest), "unknown"
    )
    return algo, digest.lower()


def _value(col: model.Column, value: Any) -> Literal | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    if col.datatype == "double":
        return Literal(float(value), datatype=XSD.double)
    if col.datatype in ("int", "long"):
        return Literal(int(value), datatype=XSD.integer)
    return Literal(str(value))


def record_graph(rec: Mapping[str, Any], prefix: str = DEFAULT_PREFIX) -> Graph:
    """One record as a ``dcat:Dataset`` with a ``dcat:Distribution`` and its columns as properties.

    Every column with a value is a ``sky:<column>`` literal (xsd:double, xsd:integer or plain
    string: values round-trip as written); DCAT / Dublin Core terms restate what they cover.
    """
    did = str(rec["obs_publisher_did"])
    g = _bind(Graph(identifier=record_graph_iri(did, prefix)))
    ds = dataset_iri(did)
    g.add((ds, RDF.type, DCAT.Dataset))
    g.add((ds, RDF.type, SKY.Record))
    g.add((ds, DCTERMS.identifier, Literal(did)))
    uri = str(rec.get("skyplug_uri") or rec.get("access_url") or did)
    name = uri.rstrip("/").rsplit("/", 1)[-1] or uri  # as provenance names objects
    g.add((ds, SKY.fileName, Literal(name)))
    g.add((ds, SKY.uri, Literal(uri)))
    g.add((ds, DCTERMS.title, Literal(str(rec.get("obs_title") or name))))
    version = str(rec.get("skyplug_version") or "")
    g.add((ds, SKY.provenance, SKYPROV["e-" + pv.content_id(uri, version)]))
    if rec.get("obs_creator_did"):
        g.add((ds, PROV.wasDerivedFrom, dataset_iri(str(rec["obs_creator_did"]))))
    for col in columns():
        lit = _value(col, rec.get(col.name))
        if lit is not None:
            g.add((ds, SKY[col.name], lit))
    dist = URIRef(f"{ds}#distribution")
    g.add((ds, DCAT.distribution, dist))
    g.add((dist, RDF.type, DCAT.Distribution))
    g.add((dist, DCAT.accessURL, _access_iri(str(rec.get("access_url") or uri))))
    fmt = str(rec.get("access_format") or "")
    if re.fullmatch(r"[\w.+-]+/[\w.+-]+", fmt):
        g.add((dist, DCAT.mediaType, URIRef(IANA + fmt)))
    if fmt:
        g.add((dist, DCTERMS["format"], Literal(fmt)))
    size = rec.get("access_estsize")
    if isinstance(size, int | float) and size >= 0:  # ObsCore gives kbyte (10^3 bytes, rounded up)
        g.add((dist, DCAT.byteSize, Literal(int(size) * 1000, datatype=XSD.nonNegativeInteger)))
    if rec.get("skyplug_checksum"):
        algo, digest = _checksum(str(rec["skyplug_checksum"]))
        node = URIRef(f"{ds}#checksum")
        g.add((dist, SPDX.checksum, node))
        g.add((node, RDF.type, SPDX.Checksum))
        g.add((node, SPDX.algorithm, SPDX["checksumAlgorithm_" + algo]))
        g.add((node, SPDX.checksumValue, Literal(digest)))
    return g


# --- provenance ------------------------------------------------------------------------------


def run_graph(
    run: str,
    nodes: Mapping[str, tuple[str, dict[str, Any]]],
    relations: Iterable[tuple[str, str, str, dict[str, Any]]],
    prefix: str = DEFAULT_PREFIX,
) -> Graph:
    """One provenance run as PROV-O: the ``prov`` document of its rows (IVOA classes as
    ``prov:type``), its blank nodes given stable IRIs below the run's graph, xsd:string literals as
    plain ones (Virtuoso tells them apart, so joins on locations would miss)."""
    doc = pv.to_document(dict(nodes), list(relations))
    with warnings.catch_warnings():  # prov passes encoding=None, rdflib warns it writes UTF-8
        warnings.simplefilter("ignore", UserWarning)
        text = doc.serialize(format="rdf", rdf_format="nt")
    parsed = Graph().parse(data=text, format="nt")
    gid = run_graph_iri(run, prefix)
    g = _bind(Graph(identifier=gid))
    g.add((gid, RDF.type, SKY.ProvenanceRun))
    g.add((gid, DCTERMS.identifier, Literal(run)))
    labels = _bnode_labels(parsed)
    for triple in parsed:
        g.add(tuple(_skolem(t, gid, labels) for t in triple))  # type: ignore[arg-type]
    # prov writes a relation with attributes (role, time) only in its qualified form: state the
    # unqualified one too, as PROV-O asks, so queries follow prov:used / prov:wasGeneratedBy
    for qualified, target, direct in _QUALIFIED:
        for subject, node in list(g.subject_objects(qualified)):
            for obj in g.objects(node, target):
                g.add((subject, direct, obj))
    return g


_QUALIFIED = (
    (PROV.qualifiedUsage, PROV.entity, PROV.used),
    (PROV.qualifiedGeneration, PROV.activity, PROV.wasGeneratedBy),
    (PROV.qualifiedDerivation, PROV.entity, PROV.wasDerivedFrom),
    (PROV.qualifiedAssociation, PROV.agent, PROV.wasAssociatedWith),
    (PROV.qualifiedAttribution, PROV.agent, PROV.wasAttributedTo),
    (PROV.qualifiedCommunication, PROV.activity, PROV.wasInformedBy),
)


def _bnode_labels(g: Graph) -> dict[Any, str]:
    """A stable label for each blank node: the hash of its own triples. prov's blank nodes are
    qualified relations pointing at IRIs and literals only, so their triples identify them."""
    from rdflib import BNode

    parts: dict[Any, list[str]] = {}
    for s, p, o in g:
        if isinstance(s, BNode):
            parts.setdefault(s, []).append(f"> {p.n3()} {o.n3()}")
        if isinstance(o, BNode):
            parts.setdefault(o, []).append(f"< {s.n3()} {p.n3()}")
    return {b: pv.content_id(sorted(v)) for b, v in parts.items()}


def _skolem(term: Any, gid: URIRef, labels: dict[Any, str]) -> Any:
    if term in labels:
        return URIRef(f"{gid}#{labels[term]}")
    if isinstance(term, Literal) and term.datatype == XSD.string:
        return Literal(str(term))
    return term


VOCABULARY_HEADER = (
    "# skyplug's vocabulary, generated from skyplug/catalog/model.py by\n"
    "# python -m skyplug.plugins.publishers.rdf (a test keeps the two equal)\n"
)

if __name__ == "__main__":
    target = resources.files("skyplug.ontologies").joinpath("skyplug.ttl")
    text = VOCABULARY_HEADER + vocabulary().serialize(format="turtle")
    with resources.as_file(target) as path:
        path.write_text(text, encoding="utf-8")
    print(f"{path}: {len(vocabulary())} triples")
