"""ProvSAP (IVOA Note): ``GET /provsap?ID=...&DEPTH=...&DIRECTION=...&MODEL=...&RESPONSEFORMAT=...``.

The HTTP server of ``skyplug catalog serve`` routes ``/provsap`` here; this module only turns the
query into a provenance document and a status, so it is tested without the server too.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl

from skyplug.core import provenance as pv
from skyplug.core.errors import NotFound, SkyplugError

# RESPONSEFORMAT values (ProvSAP names, MIME types and our short names) -> (format, MIME type)
RESPONSE_FORMATS = {
    "PROV-N": ("provn", "text/provenance-notation"),
    "PROV-JSON": ("json", "application/json"),
    "PROV-XML": ("xml", "application/xml"),
    "PROV-TURTLE": ("turtle", "text/turtle"),
    "text/provenance-notation": ("provn", "text/provenance-notation"),
    "application/json": ("json", "application/json"),
    "application/x-prov+json": ("json", "application/json"),
    "application/xml": ("xml", "application/xml"),
    "application/x-prov+xml": ("xml", "application/xml"),
    "text/turtle": ("turtle", "text/turtle"),
}


def respond(query: str, catalog_url: str | None = None) -> tuple[int, str, str]:
    """Status, body and MIME type of a ProvSAP GET; bad input is a 400 naming the parameter."""
    pairs = [(k.upper(), v) for k, v in parse_qsl(query, keep_blank_values=True)]
    ids = [v for k, v in pairs if k == "ID" and v]
    params = {k: v for k, v in pairs}
    if not ids:
        return 400, "ProvSAP: the ID parameter is required (repeat it for several ids)", "text/plain"
    fmt = params.get("RESPONSEFORMAT", "PROV-N")
    chosen = RESPONSE_FORMATS.get(fmt) or RESPONSE_FORMATS.get(fmt.upper())
    if chosen is None:
        known = ", ".join(k for k in RESPONSE_FORMATS if k.startswith("PROV"))
        return 400, f"ProvSAP: RESPONSEFORMAT {fmt[:40]!r} is not offered (choose from {known})", "text/plain"
    from skyplug.plugins.provenance.commands import query as prov_query
    from skyplug.plugins.provenance.store import store_url

    url = os.environ.get(pv.DB_ENV) or pv.settings().get("url") or catalog_url or store_url()
    try:
        doc = prov_query(
            url, ids, params.get("DEPTH", "1"), params.get("DIRECTION", "BACK"), params.get("MODEL", "IVOA")
        )
    except SkyplugError as exc:
        status = 404 if isinstance(exc, NotFound) else 400
        return status, f"ProvSAP: {pv.clean(str(exc))}", "text/plain"
    return 200, pv.serialize(doc, chosen[0]), chosen[1]
