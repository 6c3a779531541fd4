"""ADQL 2.0 -> SQLite or PostgreSQL/pgSphere SQL, through sqlglot's parser.

The query is parsed and checked (:mod:`.parse`: one SELECT, ADQL syntax and functions only, within
the bounds of :mod:`.guard`), its tables and columns resolved (:mod:`.scope`: known tables, ``*``
expanded, output metadata), its geometry rewritten for the backend (:mod:`.geometry`) and the SQL
generated with every literal turned into a bound parameter (:mod:`.translate`): no user value is
pasted into SQL. The result also carries the metadata of each output column.
"""

from __future__ import annotations

from skyplug.catalog.adql.errors import ADQLError
from skyplug.catalog.adql.geometry import spoly_text
from skyplug.catalog.adql.guard import (
    MAX_DEPTH,
    MAX_LITERALS,
    MAX_NESTING,
    MAX_NODES,
    MAX_QUERY_BYTES,
)
from skyplug.catalog.adql.parse import GEOMETRY_FUNCTIONS, parse
from skyplug.catalog.adql.scope import OutColumn
from skyplug.catalog.adql.translate import Translation, translate

__all__ = [
    "GEOMETRY_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LITERALS",
    "MAX_NESTING",
    "MAX_NODES",
    "MAX_QUERY_BYTES",
    "ADQLError",
    "OutColumn",
    "Translation",
    "parse",
    "spoly_text",
    "translate",
]
