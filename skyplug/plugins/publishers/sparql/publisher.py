"""The SPARQL publisher: catalogue records and provenance runs as named graphs in an RDF store.

Stores: embedded ``pyoxigraph`` (the default, no server; in memory or in a folder), an Oxigraph
server (``oxigraph serve``: Graph Store protocol at ``/store``) and Virtuoso (batched SPARQL
updates on ``/sparql-auth`` or the Graph Store protocol on ``/sparql-graph-crud-auth``, HTTP Digest).
One named graph per record and per run, replaced on re-publish: publishing twice leaves the same
triples. Requests stay below Virtuoso's size limits (``batch_triples``) and transient failures
(502/503/504, connection resets) are retried a bounded number of times.

This module imports no RDF library at startup: rdflib, SPARQLWrapper and pyoxigraph load on first use.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from skyplug.core.errors import ConfigError, PluginError, SkyplugError
from skyplug.core.logs import redact_url
from skyplug.core.publisher import Publisher, Rows
from skyplug.plugins.publishers.sparql import INSTALL

log = logging.getLogger("skyplug.publishers.sparql")

PASSWORD_ENV = "SKYPLUG_SPARQL_PASSWORD"
TRANSIENT = frozenset({502, 503, 504})
# Virtuoso 7.2.5 compiles INSERT DATA in time growing faster than its size (measured: 200 triples
# 0.07 s, 400 0.36 s, 1 000 2.1 s) and refuses 2 000 short triples (400, SP030 memory exhausted)
DEFAULT_BATCH = 200


class PublishError(SkyplugError, OSError):
    """The store refused or could not be reached; the message names the endpoint, never a password."""


# --- values in queries -------------------------------------------------------------------------


def sparql_term(value: Any) -> str:
    """A value as one line of SPARQL / N-Triples text: rdflib's ``n3()`` of its term, line breaks
    escaped (n3 writes a long triple-quoted string, which N-Triples lacks) and non-ASCII written as
    ``\\u`` escapes (servers differ in how they decode request bytes; escapes read the same)."""
    from rdflib import Literal, URIRef
    from rdflib.term import Node

    term = value if isinstance(value, Node) else Literal(value)
    if isinstance(term, URIRef):
        return f"<{term}>"
    text = term.n3()
    if text.startswith('"""'):
        body = str(term).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        text = '"' + body + '"' + text[text.rindex('"""') + 3 :]
    return _ascii(text)


def _ascii(text: str) -> str:
    if text.isascii():
        return text
    return "".join(
        c if ord(c) < 128 else (f"\\u{ord(c):04X}" if ord(c) < 0x10000 else f"\\U{ord(c):08X}") for c in text
    )


_WHERE = re.compile(r"\bWHERE\s*\{", re.IGNORECASE)


def bound(query: str, values: Mapping[str, Any] | None = None) -> str:
    """``query`` with ``VALUES (?name ...) { (term ...) }`` opening its first WHERE block: values
    are bound as rdflib terms, never pasted as text."""
    if not values:
        return query
    match = _WHERE.search(query)
    if match is None:
        raise ValueError("the query has no WHERE { ... } to bind values in")
    names = " ".join(f"?{k}" for k in values)
    row = " ".join(sparql_term(v) for v in values.values())
    return f"{query[: match.end()]}\n  VALUES ({names}) {{ ({row}) }}{query[match.end() :]}"


# --- endpoints ---------------------------------------------------------------------------------


def _kind(endpoint: str | None) -> str:
    """``memory``, ``embedded`` (a folder), ``gsp`` (Graph Store protocol) or ``update`` (SPARQL)."""
    if not endpoint or endpoint == "memory":
        return "memory"
    scheme = urlsplit(endpoint).scheme
    if scheme not in ("http", "https"):
        return "embedded"
    path = urlsplit(endpoint).path
    return "gsp" if path.endswith("/store") or "graph-crud" in path else "update"


def query_url(endpoint: str) -> str:
    """Where to send queries for an update or Graph Store endpoint (Oxigraph ``/query``, Virtuoso
    ``/sparql`` or ``/sparql-auth``)."""
    parts = urlsplit(endpoint)
    path = parts.path
    for old, new in (
        ("/store", "/query"),
        ("/update", "/query"),
        ("/sparql-graph-crud-auth", "/sparql-auth"),
        ("/sparql-graph-crud", "/sparql"),
    ):
        if path.endswith(old):
            path = path[: -len(old)] + new
            break
    return urlunsplit(parts._replace(path=path))


def _store_path(endpoint: str) -> str:
    return endpoint.removeprefix("oxigraph://").removeprefix("oxigraph:")


# --- what archivists ask (docs/sparql.md shows each; tests run each on every store) -----------

PREFIXES = """PREFIX dcat: <http://www.w3.org/ns/dcat#>
PREFIX dcterms: <http://purl.org/dc/terms/>
PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX sky: <https://skyplug.readthedocs.io/ns#>
"""

QUERIES: dict[str, str] = {
    # every subband (visibility dataset) of an observation, by frequency; binds ?obs_id
    "subbands": PREFIXES
    + """SELECT ?dataset ?name ?em_min ?em_max WHERE {
  ?dataset a dcat:Dataset ; sky:obs_id ?obs_id ; sky:dataproduct_type "visibility" ;
           sky:fileName ?name ; sky:em_min ?em_min ; sky:em_max ?em_max .
}
ORDER BY DESC(?em_max)""",
    # every image derived, through any number of steps, from a raw MS; binds ?raw_uri
    "derived_images": PREFIXES
    + """SELECT DISTINCT ?image ?name WHERE {
  ?image a dcat:Dataset ; sky:dataproduct_type "image" ; sky:fileName ?name ; sky:uri ?loc .
  {
    ?raw a dcat:Dataset ; sky:uri ?raw_uri .
    ?image prov:wasDerivedFrom+ ?raw .
  } UNION {
    ?rawEntity prov:atLocation ?raw_uri .
    ?entity prov:atLocation ?loc ; prov:wasDerivedFrom+ ?rawEntity .
  }
}
ORDER BY ?name""",
    # every product of an activity that used an h5parm, and what was made from them; binds ?h5parm_uri
    "calibrated_with": PREFIXES
    + """SELECT DISTINCT ?product ?name WHERE {
  ?solutions prov:atLocation ?h5parm_uri .
  ?calibration prov:used ?solutions .
  ?output prov:wasGeneratedBy ?calibration ; ^prov:wasDerivedFrom* ?entity .
  ?entity prov:atLocation ?loc .
  ?product a dcat:Dataset ; sky:uri ?loc ; sky:fileName ?name .
}
ORDER BY ?name""",
    # datasets in a box of the sky (deg) overlapping a frequency range (Hz); binds ?ra_min ?ra_max
    # ?dec_min ?dec_max ?f_min ?f_max (ObsCore gives wavelengths in m: f = c / lambda)
    "region_frequency": PREFIXES
    + """SELECT ?dataset ?name ?ra ?dec WHERE {
  ?dataset a dcat:Dataset ; sky:fileName ?name ; sky:s_ra ?ra ; sky:s_dec ?dec ;
           sky:em_min ?em_min ; sky:em_max ?em_max .
  FILTER(?ra >= ?ra_min && ?ra <= ?ra_max && ?dec >= ?dec_min && ?dec <= ?dec_max)
  FILTER(?em_min <= 299792458.0 / ?f_min && ?em_max >= 299792458.0 / ?f_max)
}
ORDER BY ?name""",
    # the dataset with a given file name, and where to get it; binds ?name
    "by_name": PREFIXES
    + """SELECT ?dataset ?title ?access WHERE {
  ?dataset a dcat:Dataset ; sky:fileName ?name ; dcterms:title ?title ;
           dcat:distribution/dcat:accessURL ?access .
}""",
}


# every triple of the named graphs whose IRI starts with ?prefix
_IN_PREFIX = "GRAPH ?g { ?s ?p ?o } FILTER(STRSTARTS(STR(?g), STR(?prefix)))"


# --- the publisher -----------------------------------------------------------------------------


class SparqlPublisher(Publisher):
    """Publishes records (``dcat:Dataset``) and provenance runs (PROV-O) to one store.

    ``endpoint``: ``None``/``"memory"`` (embedded, in memory), ``oxigraph:DIR`` or a folder
    (embedded, on disk), or an ``http(s)://`` URL: a Graph Store endpoint (path ending ``/store``
    or containing ``graph-crud``) or a SPARQL update endpoint (anything else). ``user`` and
    ``password`` (default ``$SKYPLUG_SPARQL_PASSWORD``) sign requests with HTTP Digest.
    """

    name = "sparql"

    def __init__(
        self,
        endpoint: str | None = None,
        graph_prefix: str | None = None,
        user: str | None = None,
        password: str | None = None,
        batch_triples: int = DEFAULT_BATCH,
        retries: int = 4,
        timeout: float = 120.0,
        query_endpoint: str | None = None,
    ) -> None:
        try:
            import rdflib  # noqa: F401
        except ImportError as exc:
            raise PluginError(f"plugin 'sparql' needs a missing dependency: {exc} ({INSTALL})") from exc
        from skyplug.plugins.publishers import rdf

        self.endpoint = endpoint or "memory"
        self.kind = _kind(endpoint)
        self.prefix = graph_prefix or rdf.DEFAULT_PREFIX
        self.user = user
        self.password = password if password is not None else os.environ.get(PASSWORD_ENV)
        self.batch = max(1, int(batch_triples))
        self.retries = max(0, int(retries))
        self.timeout = timeout
        self.query_endpoint = query_endpoint or (
            query_url(self.endpoint) if self.kind in ("gsp", "update") else None
        )
        self.requests = 0
        self._store: Any = None
        self._session: Any = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SparqlPublisher:
        """A publisher from ``[publishers.NAME]`` in skyplug.toml (the password only from the env)."""
        known = {
            "type",
            "endpoint",
            "graph_prefix",
            "user",
            "batch_triples",
            "retries",
            "timeout",
            "query_endpoint",
        }
        if "password" in options:
            raise ConfigError(f"[publishers] sparql: no password in skyplug.toml; set ${PASSWORD_ENV}")
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"[publishers] sparql: unknown option(s) {', '.join(unknown)}")
        return cls(**{k: v for k, v in options.items() if k != "type"})

    def __repr__(self) -> str:
        return f"SparqlPublisher({redact_url(self.endpoint)!r}, graph_prefix={self.prefix!r})"

    # publishing

    def graphs(
        self, records: Iterable[Mapping[str, Any]], provenance: Mapping[str, Rows] | None = None
    ) -> list[Any]:
        """The rdflib graphs of records and of runs (``run id -> (nodes, relations)``)."""
        from skyplug.plugins.publishers import rdf

        out = [rdf.record_graph(rec, self.prefix) for rec in records]
        return out + [
            rdf.run_graph(run, *rows, prefix=self.prefix) for run, rows in (provenance or {}).items()
        ]

    def publish(
        self, records: Iterable[Mapping[str, Any]], provenance: Mapping[str, Rows] | None = None
    ) -> dict[str, Any]:
        """Replace the named graph of each record and of each run (``run id -> (nodes, relations)``);
        return counts (records, runs, graphs, triples, requests, seconds)."""
        return self.send(self.graphs(records, provenance))

    def send(self, graphs: list[Any]) -> dict[str, Any]:
        """Replace these named graphs in the store; return counts."""
        from rdflib import RDF

        from skyplug.plugins.publishers import rdf

        t0, before = time.perf_counter(), self.requests
        runs = sum(1 for g in graphs if (g.identifier, RDF.type, rdf.SKY.ProvenanceRun) in g)
        triples = sum(len(g) for g in graphs)
        if self.kind in ("memory", "embedded"):
            self._publish_embedded(graphs)
        elif self.kind == "gsp":
            self._publish_gsp(graphs)
        else:
            self._publish_update(graphs)
        return {
            "endpoint": redact_url(self.endpoint),
            "records": len(graphs) - runs,
            "runs": runs,
            "graphs": len(graphs),
            "triples": triples,
            "requests": self.requests - before,
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def _publish_embedded(self, graphs: list[Any]) -> None:
        import pyoxigraph as ox

        store = self.store()
        for g in graphs:
            name = ox.NamedNode(str(g.identifier))
            store.remove_graph(name)
            store.extend(ox.Quad(_ox(s), _ox(p), _ox(o), name) for s, p, o in g)

    def _publish_gsp(self, graphs: list[Any]) -> None:
        for g in graphs:
            # short lines first: Virtuoso guesses the type from the body's start, and a 10 kB literal
            # there makes it "text/plain" whatever Content-Type says
            lines = sorted((f"{_nt(s)} {_nt(p)} {_nt(o)} .\n" for s, p, o in g), key=lambda t: (len(t), t))
            for i in range(0, max(len(lines), 1), self.batch):
                body = "".join(lines[i : i + self.batch])
                self._send(
                    "PUT" if i == 0 else "POST",
                    self.endpoint,
                    params={"graph": str(g.identifier)},
                    data=body.encode("ascii"),
                    headers={"Content-Type": "text/turtle; charset=utf-8"},
                )

    def _publish_update(self, graphs: list[Any]) -> None:
        """``DROP SILENT GRAPH`` + ``INSERT DATA`` per graph, packed into requests of at most
        ``batch_triples`` triples (a bigger graph is split; operations keep their order)."""
        ops: list[tuple[str, int]] = []
        for g in graphs:
            gid, triples = f"<{g.identifier}>", list(g)
            ops.append((f"DROP SILENT GRAPH {gid}", 0))
            for i in range(0, len(triples), self.batch):
                chunk = triples[i : i + self.batch]
                body = "\n".join(f"{_nt(s)} {_nt(p)} {_nt(o)} ." for s, p, o in chunk)
                ops.append((f"INSERT DATA {{ GRAPH {gid} {{\n{body}\n}} }}", len(chunk)))
        pending: list[str] = []
        size = 0
        for text, n in ops:
            if pending and size + n > self.batch:
                self._update(pending)
                pending, size = [], 0
            pending.append(text)
            size += n
        self._update(pending)

    def _update(self, ops: list[str]) -> None:
        if ops:
            self._send("POST", self.endpoint, data={"update": " ;\n".join(ops)})

    # reading

    def store(self) -> Any:
        """The embedded pyoxigraph ``Store`` (memory or folder), opened on first use."""
        if self.kind not in ("memory", "embedded"):
            raise PublishError(f"{redact_url(self.endpoint)}: not an embedded store")
        if self._store is None:
            import pyoxigraph as ox

            self._store = ox.Store() if self.kind == "memory" else ox.Store(_store_path(self.endpoint))
        return self._store

    def query(self, text: str, values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a SELECT (``values`` bound with VALUES) as ``{variable: rdflib term}``; over HTTP
        through SPARQLWrapper (Virtuoso's ``typed-literal`` JSON read like a ``literal``)."""
        text = bound(text, values)
        if self.kind in ("memory", "embedded"):
            solutions = self.store().query(text, use_default_graph_as_union=True)
            names = [v.value for v in solutions.variables]
            return [{n: _rdflib(s[n]) for n in names if s[n] is not None} for s in solutions]
        from SPARQLWrapper import DIGEST, JSON, POST, SPARQLWrapper
        from SPARQLWrapper.SPARQLExceptions import SPARQLWrapperException

        assert self.query_endpoint is not None
        wrapper = SPARQLWrapper(self.query_endpoint)
        wrapper.setMethod(POST)
        wrapper.setReturnFormat(JSON)
        wrapper.setTimeout(int(self.timeout))
        if self.user and self.password is not None and self.query_endpoint.endswith("-auth"):
            wrapper.setHTTPAuth(DIGEST)
            wrapper.setCredentials(self.user, self.password)
        wrapper.setQuery(text)
        self.requests += 1
        try:
            result = wrapper.queryAndConvert()
        except SPARQLWrapperException as exc:
            raise PublishError(
                f"{redact_url(self.query_endpoint)}: query refused: {_first_line(str(exc))}"
            ) from None
        except OSError as exc:
            raise PublishError(f"{redact_url(self.query_endpoint)}: {_first_line(str(exc))}") from None
        return [{k: _binding(v) for k, v in row.items()} for row in result["results"]["bindings"]]

    def triples(self) -> int:
        """Triples in the named graphs under this publisher's graph prefix."""
        rows = self.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ {_IN_PREFIX} }}", {"prefix": self.prefix})
        return int(rows[0]["n"]) if rows else 0

    def drop(self) -> int:
        """Remove every named graph under this publisher's graph prefix; return how many there were."""
        if self.kind in ("memory", "embedded"):
            store = self.store()
            gone = [g for g in store.named_graphs() if g.value.startswith(self.prefix)]
            for g in gone:
                store.remove_graph(g)
            return len(gone)
        rows = self.query(f"SELECT DISTINCT ?g WHERE {{ {_IN_PREFIX} }}", {"prefix": self.prefix})
        graphs = [str(r["g"]) for r in rows]
        if self.kind == "gsp":
            for g in graphs:
                self._send("DELETE", self.endpoint, params={"graph": g})
        else:
            for i in range(0, len(graphs), 100):
                self._update([f"DROP SILENT GRAPH <{g}>" for g in graphs[i : i + 100]])
        return len(graphs)

    def close(self) -> None:
        """Close the HTTP session and the embedded store (data in a folder stays)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        self._store = None

    # HTTP

    def _send(self, method: str, url: str, **kw: Any) -> Any:
        import requests
        from requests.auth import HTTPDigestAuth

        if self._session is None:
            self._session = requests.Session()
            if self.user:
                self._session.auth = HTTPDigestAuth(self.user, self.password or "")
        where = redact_url(url)
        delay = 0.2
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                resp = self._session.request(method, url, timeout=self.timeout, **kw)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.retries:
                    raise PublishError(
                        f"{where}: unreachable after {attempt + 1} attempts: {_first_line(str(exc))}"
                    ) from None
            else:
                if resp.status_code < 400:
                    return resp
                if resp.status_code in (401, 403):
                    who = f" as {self.user!r}" if self.user else " (no user given)"
                    raise PublishError(f"{where}: authentication failed{who} (HTTP {resp.status_code})")
                if resp.status_code not in TRANSIENT or attempt == self.retries:
                    raise PublishError(f"{where}: HTTP {resp.status_code}: {_first_line(resp.text)}")
            log.info(
                "%s: transient failure, retry %d of %d in %.1f s", where, attempt + 1, self.retries, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[0] if lines else "no message")[:300]


def _nt(term: Any) -> str:
    """An N-Triples / SPARQL term of an rdflib term (IRIs are already %-encoded)."""
    from rdflib import URIRef

    return f"<{term}>" if isinstance(term, URIRef) else sparql_term(term)


def _ox(term: Any) -> Any:
    import pyoxigraph as ox
    from rdflib import URIRef

    if isinstance(term, URIRef):
        return ox.NamedNode(str(term))
    if term.language:
        return ox.Literal(str(term), language=term.language)
    if term.datatype is not None:
        return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)))
    return ox.Literal(str(term))


def _rdflib(term: Any) -> Any:
    import pyoxigraph as ox
    from rdflib import BNode, Literal, URIRef

    if isinstance(term, ox.NamedNode):
        return URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    if term.language:
        return Literal(term.value, lang=term.language)
    dt = term.datatype.value
    return Literal(term.value, datatype=None if dt.endswith("#string") else dt)


def _binding(b: Mapping[str, str]) -> Any:
    from rdflib import BNode, Literal, URIRef

    if b["type"] == "uri":
        return URIRef(b["value"])
    if b["type"] == "bnode":
        return BNode(b["value"])
    dt = b.get("datatype")
    if dt and dt.endswith("#string"):
        dt = None
    return Literal(b["value"], lang=b.get("xml:lang"), datatype=dt)


# --- configuration and hooks -------------------------------------------------------------------


def configured(config: Any) -> dict[str, SparqlPublisher]:
    """``[publishers.NAME]`` tables of type ``sparql`` (the default type of one named ``sparql``)."""
    out = {}
    for name, options in (config.raw.get("publishers", {}) or {}).items():
        if isinstance(options, Mapping) and options.get("type", name) == "sparql":
            out[name] = SparqlPublisher.from_options(options)
    return out


def publish_added(config: Any, records: list[dict[str, Any]]) -> None:
    """Publish added records to every configured ``[publishers.NAME]``; a failure only warns."""
    from skyplug.core.publisher import auto_publishes

    for name, pub in configured(config).items():
        if not auto_publishes(name):
            pub.close()
            continue
        try:
            counts = pub.publish(records)
            log.info("published %d records to %s (%s)", counts["records"], name, counts["endpoint"])
        except SkyplugError as exc:
            log.warning("publisher %s: %s", name, exc)
        finally:
            pub.close()
