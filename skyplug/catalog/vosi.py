"""VOSI and DALI documents of the TAP service: capabilities, availability, tables, examples.

Kept apart from the protocol (tap.py) and the job store (uws.py) because they only describe the
service: each is a pure function of the service's settings and the ObsCore model.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from skyplug.catalog import adql
from skyplug.catalog.model import KEYS, SCHEMAS, TABLES, Table
from skyplug.catalog.tap import XSI, TapError, TapService
from skyplug.catalog.uws import RETENTION
from skyplug.core.errors import SkyplugError

GEO_FEATURES = adql.GEOMETRY_FUNCTIONS

EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "cone",
        "Cone search: observations within 1 degree of a position",
        "SELECT TOP 100 obs_id, s_ra, s_dec, t_min, em_min FROM ivoa.obscore\n"
        "WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 120.5, -30.2, 1.0))",
    ),
    (
        "radio",
        "Radio extension: visibilities with their channel width (NATURAL JOIN)",
        "SELECT TOP 100 obs_id, facility_name, f_resolution, uv_distance_max\n"
        "FROM ivoa.obscore NATURAL JOIN ivoa.obscore_radio WHERE dataproduct_type = 'visibility'",
    ),
    (
        "footprint",
        "Footprints overlapping a region",
        "SELECT TOP 100 obs_id, s_region FROM ivoa.obscore\n"
        "WHERE 1 = INTERSECTS(s_region, POLYGON('ICRS', 10.0, 10.0, 12.0, 10.0, 12.0, 12.0))",
    ),
    (
        "time",
        "Observations started on a given night (MJD)",
        "SELECT TOP 100 obs_id, t_min, t_max FROM ivoa.obscore WHERE t_min BETWEEN 58000.0 AND 58001.0",
    ),
    (
        "count",
        "Holdings per facility",
        "SELECT facility_name, COUNT(*) AS n FROM ivoa.obscore GROUP BY facility_name ORDER BY n DESC",
    ),
)


def capabilities(service: TapService, base: str) -> str:
    """VOSI capabilities with TAPRegExt: data model, ADQL features, formats and limits."""
    feats = "".join(f"<feature><form>{f}</form></feature>" for f in GEO_FEATURES)
    formats = (
        '<outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-binary2">'
        "<mime>application/x-votable+xml;serialization=BINARY2</mime><alias>votable/b2</alias>"
        "</outputFormat>"
        '<outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">'
        "<mime>application/x-votable+xml;serialization=TABLEDATA</mime><alias>votable/td</alias>"
        "</outputFormat>"
        "<outputFormat><mime>application/x-votable+xml</mime><alias>votable</alias></outputFormat>"
        "<outputFormat><mime>text/csv</mime><alias>csv</alias></outputFormat>"
        "<outputFormat><mime>application/json</mime><alias>json</alias></outputFormat>"
    )

    def vosi(std: str, path: str, kind: str = "vs:ParamHTTP") -> str:
        return (
            f'<capability standardID="{std}"><interface xsi:type="{kind}">'
            f'<accessURL use="full">{escape(base)}/{path}</accessURL></interface></capability>'
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" {XSI} '
        'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">'
        '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        '<interface xsi:type="vs:ParamHTTP" role="std" version="1.1">'
        f'<accessURL use="base">{escape(base)}</accessURL></interface>'
        '<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>'
        '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        "<description>ADQL 2.0 translated by sqlglot to the catalogue's SQL</description>"
        f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{feats}'
        "</languageFeatures></language>"
        f"{formats}"
        f"<retentionPeriod><default>{RETENTION}</default></retentionPeriod>"
        f"<executionDuration><default>{service.execution_duration}</default>"
        f"<hard>{service.execution_duration}</hard></executionDuration>"
        f'<outputLimit><default unit="row">{service.maxrec}</default>'
        f'<hard unit="row">{service.catalog.hard_maxrec}</hard></outputLimit>'
        "</capability>"
        + vosi("ivo://ivoa.net/std/VOSI#capabilities", "capabilities")
        + vosi("ivo://ivoa.net/std/VOSI#availability", "availability")
        + vosi("ivo://ivoa.net/std/VOSI#tables-1.1", "tables")
        + vosi("ivo://ivoa.net/std/DALI#examples", "examples", "vr:WebBrowser")
        + "</vosi:capabilities>\n"
    )


def _table_xml(t: Table, detail: bool) -> str:
    """A table's name, description and, with ``detail``, its columns and foreign keys."""
    parts = [f"<name>{escape(t.name)}</name><description>{escape(t.description)}</description>"]
    if t.utype:
        parts.append(f"<utype>{escape(t.utype)}</utype>")
    if detail:
        for c in t.columns:
            flags = "".join(
                f"<flag>{f}</flag>"
                for f, on in (("indexed", c.indexed), ("principal", c.principal), ("std", c.std))
                if on
            )
            size = f' arraysize="{c.arraysize}"' if c.arraysize else ""
            xt = f' extendedType="{c.xtype}"' if c.xtype else ""
            parts.append(
                f"<column><name>{escape(c.adql_name)}</name><description>{escape(c.description)}</description>"
                + (f"<unit>{escape(c.unit)}</unit>" if c.unit else "")
                + (f"<ucd>{escape(c.ucd)}</ucd>" if c.ucd else "")
                + (f"<utype>{escape(c.utype)}</utype>" if c.utype else "")
                + f'<dataType xsi:type="vs:VOTableType"{size}{xt}>{c.datatype}</dataType>{flags}</column>'
            )
        for key_id, src, dst, scol, dcol in KEYS:
            if src == t.name:
                parts.append(
                    f"<foreignKey><targetTable>{dst}</targetTable><fkColumn><fromColumn>{scol}"
                    f"</fromColumn><targetColumn>{dcol}</targetColumn></fkColumn>"
                    f"<description>{key_id}</description></foreignKey>"
                )
    return "".join(parts)


def tables(detail: bool = True) -> str:
    """The VOSI 1.1 tableset; ``detail=False`` (``?detail=min``) leaves out the columns."""
    body = []
    for schema, desc in SCHEMAS.items():
        tabs = "".join(
            f'<table type="{t.table_type}">{_table_xml(t, detail)}</table>'
            for t in TABLES
            if t.schema == schema
        )
        body.append(f"<schema><name>{schema}</name><description>{escape(desc)}</description>{tabs}</schema>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" {XSI} '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">' + "".join(body) + "</vosi:tableset>\n"
    )


def table(name: str) -> str:
    """One table's VOSI document (``/tables/<name>``); an unknown name is a 404."""
    t = next((t for t in TABLES if t.name.lower() == name.lower()), None)
    if t is None:
        raise TapError(f"no table {name!r}", 404)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" {XSI} '
        f'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" type="{t.table_type}">'
        f"{_table_xml(t, True)}</vosi:table>\n"
    )


def availability(service: TapService) -> str:
    """VOSI availability: true when a one-row query of TAP_SCHEMA succeeds."""
    try:
        service.catalog.query("SELECT TOP 1 table_name FROM TAP_SCHEMA.tables", maxrec=1)
        ok, note = True, "service is accepting queries"
    except SkyplugError as exc:
        ok, note = False, f"catalogue unavailable: {exc}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
        f"<vosi:available>{'true' if ok else 'false'}</vosi:available>"
        f"<vosi:note>{escape(note)}</vosi:note></vosi:availability>\n"
    )


def examples() -> str:
    """DALI examples as XHTML with RDFa (``property="query"``)."""
    items = "".join(
        f'<div typeof="example" id="{i}" resource="#{i}"><h2 property="name">{escape(t)}</h2>'
        f'<pre property="query">{escape(q)}</pre></div>\n'
        for i, t, q in EXAMPLES
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>skyplug TAP examples</title></head>'
        f'<body vocab="http://www.ivoa.net/rdf/examples#"><h1>skyplug TAP examples</h1>\n{items}'
        "</body></html>\n"
    )
