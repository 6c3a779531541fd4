"""ADQL -> backend SQL: parse, resolve the tables, rewrite geometry, cap the rows and bind every
literal as a parameter, then generate the backend's SQL with sqlglot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from skyplug.catalog.adql import geometry
from skyplug.catalog.adql.errors import ADQLError
from skyplug.catalog.adql.parse import first_line, literal_value, parse
from skyplug.catalog.adql.scope import Derived, OutColumn, Scope, expand, resolve_tables


@dataclass
class Translation:
    """Backend SQL with its parameters and the result columns (None = names from the cursor)."""

    sql: str
    params: dict[str, Any]
    columns: list[OutColumn] | None
    limit: int | None


def translate(adql: str, dialect: str, maxrec: int | None = None) -> Translation:
    """Translate for ``dialect`` ("sqlite" or "postgres"); cap the rows at ``maxrec + 1``."""
    try:
        return _translate(adql, dialect, maxrec)
    except RecursionError:  # bounded above; a last guard so a request never drops its connection
        raise ADQLError("the query is too deeply nested to translate") from None


def _translate(adql: str, dialect: str, maxrec: int | None) -> Translation:
    tree = parse(adql)
    selects = list(tree.find_all(exp.Select))  # outer before inner
    scopes: dict[int, Scope] = {}
    for select in selects:
        outer = select.parent.find_ancestor(exp.Select) if select.parent else None
        scopes[id(select)] = resolve_tables(select, dialect, scopes.get(id(outer)) if outer else None)
    outs: dict[int, list[OutColumn] | None] = {}
    expanded: list[tuple[exp.Select, list[exp.Expression]]] = []
    for select in reversed(selects):  # inner first, so derived tables are known
        scope = scopes[id(select)]
        for alias, query in scope.derived.items():
            first = query if isinstance(query, exp.Select) else next(query.find_all(exp.Select))
            cols = outs.get(id(first))
            if cols is not None:
                scope.tables[alias] = Derived({c.name.lower(): c for c in cols})
        outs[id(select)] = expand(select, scope, expanded)
    columns = outs[id(selects[0])]
    geometry.rewrite(tree, dialect, scopes)
    limit = _limit_of(tree)
    if maxrec is not None:
        cap = maxrec + 1
        if limit is None or limit > cap:
            if isinstance(tree, exp.Select):
                tree.set("limit", exp.Limit(expression=exp.Literal.number(cap)))
            else:
                tree = exp.select("*").from_(tree.subquery("u")).limit(cap)
    for ordered in tree.find_all(exp.Ordered):  # keep the backend's own NULL ordering (ADQL leaves it open)
        desc = bool(ordered.args.get("desc"))
        ordered.set("nulls_first", desc if dialect == "postgres" else not desc)
    params: dict[str, Any] = {}
    _parametrise(tree, params)
    for select, projections in expanded:  # stars last: their many columns hold nothing to rewrite
        select.set("expressions", projections)
    try:
        sql = tree.sql(dialect=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE, copy=False)
    except SqlglotError as exc:
        raise ADQLError(f"cannot translate the query: {first_line(exc)}") from exc
    if dialect == "postgres":
        sql = re.sub(r"%(?!\(p\d+\)s)", "%%", sql)
    return Translation(sql, params, columns, limit)


def _limit_of(tree: exp.Expression) -> int | None:
    lim = tree.args.get("limit")
    node = lim.expression if isinstance(lim, exp.Limit) else None
    if isinstance(node, exp.Literal) and not node.is_string:
        return int(node.this)
    return None


# --- parameters ----------------------------------------------------------------------------


def _parametrise(tree: exp.Expression, params: dict[str, Any]) -> None:
    """Replace literals by named placeholders and collect their values (linear: see _swap)."""
    for node in list(tree.walk()):
        if not isinstance(node, exp.Literal):
            continue
        if (
            not node.is_string
            and node.find_ancestor(exp.Order, exp.Group) is not None
            and isinstance(node.parent, exp.Ordered | exp.Group)
        ):
            continue  # positional ORDER BY / GROUP BY: integers the parser validated
        name = f"p{len(params)}"
        params[name] = literal_value(node)
        _swap(node, exp.Placeholder(this=name))


def _swap(node: exp.Expression, new: exp.Expression) -> None:
    """``node.replace(new)`` in O(1): sqlglot re-parents a whole argument list on every replace,
    which made an IN list of n literals cost O(n^2)."""
    parent, key, index = node.parent, node.arg_key, node.index
    if parent is None:
        return
    up: exp.Expression | None = parent
    while up is not None and up._hash is not None:  # what Expression.set does
        up._hash = None
        up = up.parent
    if index is None:
        parent.args[key] = new
    else:
        parent.args[key][index] = new
    new.parent, new.arg_key, new.index = parent, key, index
    node.parent = None
