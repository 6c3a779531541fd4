"""The SPARQL publisher (catalogue records and provenance runs as named graphs in an RDF store),
in ``publisher.py``.

Only the hook implementations live here: building the plugin manager imports no publisher.
"""

from __future__ import annotations

from typing import Any

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec, implemented_in

INSTALL = "pip install 'skyplug[sparql]' (rdflib, SPARQLWrapper, pyoxigraph)"

__getattr__ = implemented_in("skyplug.plugins.publishers.sparql.publisher")


@hookimpl
def skyplug_register_publishers(config: Any) -> list[Any]:
    return [Spec("sparql", "skyplug.plugins.publishers.sparql:SparqlPublisher", err=INSTALL, keys=("rdf",))]


@hookimpl
def skyplug_catalog_added(config: Any, records: list[dict[str, Any]], url: str) -> None:
    """Publish added records to every configured ``[publishers.NAME]``; a failure only warns."""
    if not (config.raw.get("publishers") or {}):
        return
    from skyplug.plugins.publishers.sparql.publisher import publish_added

    publish_added(config, records)
