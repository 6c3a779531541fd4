"""The SPARQL publisher on every store: named graphs replaced (idempotent), batched, retried, and
Virtuoso's refusals as one line naming the endpoint."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from skyplug.core import plugins
from skyplug.plugins.publishers import rdf
from skyplug.plugins.publishers.sparql import PublishError, SparqlPublisher, bound
from tests.publishers.conftest import Pipeline, hostile_records, subbands


def endpoints(server: Any) -> list[tuple[str, dict[str, Any]]]:
    """Both ways of writing to a server: the Graph Store protocol and SPARQL updates."""
    auth = {"user": server.user, "password": server.password} if server.user else {}
    return [(server.store, auth), (server.update, auth)]


def test_registered_as_a_publisher() -> None:
    pub = plugins.find("publishers", "sparql")
    assert isinstance(pub, SparqlPublisher) and pub.kind == "memory"
    assert "sparql" in [p["name"] for p in plugins.describe_plugins()["families"]["publishers"]]


def test_options_never_take_a_password() -> None:
    from skyplug.core.errors import ConfigError

    with pytest.raises(ConfigError, match="SKYPLUG_SPARQL_PASSWORD"):
        SparqlPublisher.from_options({"endpoint": "http://h/sparql-auth", "password": "x"})
    with pytest.raises(ConfigError, match="unknown option"):
        SparqlPublisher.from_options({"endpoint": "memory", "endpont": "typo"})


def test_embedded_publish_is_idempotent(pipeline: Pipeline) -> None:
    pub = SparqlPublisher()
    records = [*pipeline.records, *subbands()]
    first = pub.publish(records, pipeline.provenance)
    n = pub.triples()
    assert first["records"] == len(records) and first["runs"] == 1 and first["triples"] == n
    second = pub.publish(records, pipeline.provenance)
    assert second["triples"] == first["triples"] and pub.triples() == n


def test_republish_replaces_a_changed_record() -> None:
    pub = SparqlPublisher()
    rec = subbands(n=1)[0]
    pub.publish([rec])
    n = pub.triples()
    pub.publish([rec | {"target_name": "3C196", "s_fov": None}])
    rows = pub.query(
        "SELECT ?t ?fov WHERE { ?d <https://skyplug.readthedocs.io/ns#target_name> ?t "
        "OPTIONAL { ?d <https://skyplug.readthedocs.io/ns#s_fov> ?fov } }"
    )
    assert [str(r["t"]) for r in rows] == ["3C196"] and "fov" not in rows[0]
    assert pub.triples() == n  # one property gone, one added


def test_embedded_store_in_a_folder_persists(tmp_path: Any) -> None:
    pub = SparqlPublisher(f"oxigraph:{tmp_path / 'store'}")
    pub.publish(subbands(n=2))
    n = pub.triples()
    pub.close()
    again = SparqlPublisher(f"oxigraph:{tmp_path / 'store'}")
    assert again.triples() == n > 0


def test_values_are_bound_not_pasted() -> None:
    text = bound("SELECT ?d WHERE { ?d ?p ?name }", {"name": 'a" } ; DROP ALL #\n'})
    assert 'VALUES (?name) { ("a\\" } ; DROP ALL #\\n") }' in text


def test_update_requests_stay_below_the_batch_size(oxigraph_server: Any, monkeypatch: Any) -> None:
    sent: list[int] = []
    real = requests.Session.request

    def spy(self: Any, method: str, url: str, **kw: Any) -> Any:
        sent.append(sum(1 for line in kw["data"]["update"].splitlines() if line.endswith(" .")))
        return real(self, method, url, **kw)

    monkeypatch.setattr(requests.Session, "request", spy)
    pub = SparqlPublisher(oxigraph_server.update, graph_prefix="urn:batch:", batch_triples=50)
    counts = pub.publish(subbands(n=10))
    assert counts["requests"] == len(sent) > counts["triples"] // 50
    assert max(sent) <= 50
    assert pub.triples() == counts["triples"]
    pub.drop()


def test_transient_failures_are_retried_a_bounded_number_of_times(
    oxigraph_server: Any, monkeypatch: Any
) -> None:
    real = requests.Session.request
    calls = {"n": 0}

    def flaky(self: Any, method: str, url: str, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise requests.ConnectionError("Connection reset by peer")
        if calls["n"] == 2:
            resp = requests.Response()
            resp.status_code, resp._content = 503, b"busy"
            return resp
        return real(self, method, url, **kw)

    monkeypatch.setattr(requests.Session, "request", flaky)
    monkeypatch.setattr("time.sleep", lambda s: None)
    pub = SparqlPublisher(oxigraph_server.store, graph_prefix="urn:retry:")
    counts = pub.publish(subbands(n=1))
    assert calls["n"] == 3 and counts["requests"] == 3 and pub.triples() == counts["triples"]
    pub.drop()

    def down(self: Any, method: str, url: str, **kw: Any) -> Any:
        resp = requests.Response()
        resp.status_code, resp._content = 503, b"Service Unavailable"
        calls["n"] += 1
        return resp

    monkeypatch.setattr(requests.Session, "request", down)
    calls["n"] = 0
    with pytest.raises(PublishError, match="HTTP 503"):
        SparqlPublisher(oxigraph_server.store, retries=2).publish(subbands(n=1))
    assert calls["n"] == 3


@pytest.mark.parametrize("way", ["gsp", "update"])
def test_publish_twice_to_a_server_changes_nothing(rdf_server: Any, way: str, pipeline: Pipeline) -> None:
    endpoint, auth = dict(zip(("gsp", "update"), endpoints(rdf_server), strict=True))[way]
    prefix = f"urn:idem-{way}:"
    pub = SparqlPublisher(endpoint, graph_prefix=prefix, **auth)
    records = [*pipeline.records, *subbands(), *hostile_records()]
    first = pub.publish(records, pipeline.provenance)
    n = pub.triples()
    assert n == first["triples"]
    pub.publish(records, pipeline.provenance)
    assert pub.triples() == n
    assert pub.drop() == first["graphs"] and pub.triples() == 0
    pub.close()


def test_big_graph_is_split_below_virtuoso_limits(virtuoso: Any) -> None:
    """60 records (over 2 000 triples: Virtuoso refuses that in one INSERT DATA) land whole."""
    many = [
        r | {"obs_publisher_did": f"{r['obs_publisher_did']}-{i}"} for i in range(60) for r in subbands(n=1)
    ]
    for endpoint in (virtuoso.update, virtuoso.store):
        pub = SparqlPublisher(
            endpoint,
            graph_prefix=f"urn:big{len(endpoint)}:",
            user=virtuoso.user,
            password=virtuoso.password,
        )
        counts = pub.publish(many)
        assert counts["triples"] > 2000 and pub.triples() == counts["triples"]
        pub.drop()


def test_published_graph_read_back_passes_the_shapes(rdf_server: Any, pipeline: Pipeline) -> None:
    import pyshacl
    from rdflib import Graph

    auth = endpoints(rdf_server)[0][1]
    pub = SparqlPublisher(rdf_server.store, graph_prefix="urn:shacl:", **auth)
    pub.publish(pipeline.records, pipeline.provenance)
    rows = pub.query(
        "SELECT ?s ?p ?o WHERE { GRAPH ?g { ?s ?p ?o } FILTER(STRSTARTS(STR(?g), STR(?prefix))) }",
        {"prefix": "urn:shacl:"},
    )
    g = Graph()
    for r in rows:
        g.add((r["s"], r["p"], r["o"]))
    assert len(g) == pub.triples()
    pub.drop()
    ok, _, text = pyshacl.validate(g, shacl_graph=rdf.shapes(), ont_graph=rdf.ontology(), inference="rdfs")
    assert ok, text


@pytest.mark.parametrize("which", ["update", "store"])
def test_wrong_password_is_one_line_naming_the_endpoint(virtuoso: Any, which: str) -> None:
    endpoint = getattr(virtuoso, which)
    pub = SparqlPublisher(endpoint, user=virtuoso.user, password="not-the-password-42")
    with pytest.raises(PublishError) as err:
        pub.publish(subbands(n=1))
    msg = str(err.value)
    assert endpoint in msg and "authentication failed" in msg and "\n" not in msg
    assert "not-the-password-42" not in msg and err.value.__cause__ is None
