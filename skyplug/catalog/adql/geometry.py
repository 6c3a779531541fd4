"""Geometry rewriting per backend: ADQL's POINT, CIRCLE, CONTAINS, DISTANCE, ... become SQLite
functions over STC-S text (plus an R*Tree prefilter for cones) or pgSphere types and operators
(boolean predicates, so its GiST indexes apply). The math SQLite lacks is rewritten here too.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from skyplug.catalog import sphere
from skyplug.catalog.adql.errors import ADQLError
from skyplug.catalog.adql.parse import fname, geo_args, number
from skyplug.catalog.adql.scope import Scope


def _numbers(nodes: list[exp.Expression], what: str) -> list[float]:
    vals = [number(n) for n in nodes]
    if any(v is None for v in vals):
        raise ADQLError(f"{what} needs numeric constants on this backend")
    return [float(v) for v in vals if v is not None]


def _fn(name: str, *args: exp.Expression) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _bottom_up(tree: exp.Expression, fn: Any) -> None:
    """Apply ``fn`` to every node, children before parents, replacing nodes it changes."""
    for node in reversed(list(tree.walk(bfs=False))):
        new = fn(node)
        if new is not node:
            node.replace(new)


def rewrite(tree: exp.Expression, dialect: str, scopes: dict[int, Scope]) -> None:
    """Rewrite geometry, and the math the backend lacks, in place for ``dialect``."""
    if dialect == "sqlite":
        for select in tree.find_all(exp.Select):
            if id(select) in scopes:
                _rtree_prefilter(select, scopes[id(select)])
        _bottom_up(tree, _sqlite_geo)
    else:
        _pg_predicates(tree)
        _bottom_up(tree, _pg_geo)


def _is_bool_geo(node: exp.Expression) -> bool:
    return fname(node) in ("CONTAINS", "INTERSECTS")


def _geo_comparison(node: exp.Expression) -> tuple[exp.Expression, bool] | None:
    """(geometry predicate, wanted truth) of ``1 = CONTAINS(...)`` and friends."""
    if not isinstance(node, exp.EQ | exp.NEQ):
        return None
    for a, b in ((node.this, node.expression), (node.expression, node.this)):
        v = number(a)
        if _is_bool_geo(b) and v in (0.0, 1.0):
            return b, (v == 1.0) == isinstance(node, exp.EQ)
    return None


def _rtree_prefilter(select: exp.Select, scope: Scope) -> None:
    """Add ``alias.rowid IN (R*Tree box)`` next to a cone CONTAINS on obscore's s_ra/s_dec."""
    where = select.args.get("where")
    if where is None:
        return
    conjuncts = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    extra: list[exp.Expression] = []
    for c in conjuncts:
        hit = _geo_comparison(c)
        if not hit or not hit[1] or fname(hit[0]) != "CONTAINS":
            continue
        pt, circ = hit[0].expressions
        if fname(pt) != "POINT" or fname(circ) != "CIRCLE":
            continue
        pargs, cargs = geo_args(pt), geo_args(circ)
        if len(pargs) != 2 or len(cargs) != 3 or not all(isinstance(a, exp.Column) for a in pargs):
            continue
        if [a.name.lower() for a in pargs] != ["s_ra", "s_dec"]:
            continue
        aliases = {a.table.lower() for a in pargs if a.table} or {
            k for k, t in scope.tables.items() if t is not None and t.name == "ivoa.obscore"
        }
        if len(aliases) != 1 or getattr(scope.tables.get(next(iter(aliases))), "name", "") != "ivoa.obscore":
            continue
        alias = next(iter(aliases))
        vals = [number(a) for a in cargs]
        if any(v is None for v in vals):
            continue
        box = sphere.cone_box(*[float(v) for v in vals if v is not None])
        conds: list[exp.Expression] = []
        for k, axis in enumerate("xyz"):  # built as nodes: parsing condition strings costs ~10 ms
            conds.append(exp.GTE(this=exp.column(f"{axis}0"), expression=_literal(box[2 * k])))
            conds.append(exp.LTE(this=exp.column(f"{axis}1"), expression=_literal(box[2 * k + 1])))
        sub = exp.Select(
            expressions=[exp.column("id")],
            from_=exp.From(this=exp.Table(this=exp.to_identifier("ivoa_obscore_pt"))),
            where=exp.Where(this=exp.and_(*conds, copy=False)),
        )
        rowid = exp.column("rowid", table=alias)
        extra.append(exp.In(this=rowid, query=exp.Subquery(this=sub)))
    if extra:
        where.set("this", exp.and_(where.this, *extra, copy=False))


def _literal(value: float) -> exp.Expression:
    lit = exp.Literal.number(abs(value))
    return exp.Neg(this=lit) if value < 0 else lit


_SQLITE_NAMES = {
    "POINT": "sky_point",
    "CIRCLE": "sky_circle",
    "BOX": "sky_box",
    "POLYGON": "sky_polygon",
    "CONTAINS": "sky_contains",
    "INTERSECTS": "sky_intersects",
    "COORD1": "sky_coord1",
    "COORD2": "sky_coord2",
    "AREA": "sky_area",
    "LOG10": "adql_log10",
    "TRUNCATE": "adql_truncate",
    "MOD": "adql_mod",
    "RAND": "adql_rand",
    "COORDSYS": "sky_coordsys",
}


def _sqlite_geo(node: exp.Expression) -> exp.Expression:
    name = fname(node)
    if name == "DISTANCE":
        args = geo_args(node)
        if len(args) == 4:
            return _fn("sky_distance4", *args)
        return _fn("sky_distance", *args)
    if name in ("POINT", "CIRCLE", "BOX", "POLYGON"):
        args = geo_args(node)
        if name == "CIRCLE" and len(args) == 2:
            return _fn("sky_circle_p", *args)
        return _fn(_SQLITE_NAMES[name], *args)
    if name == "COORDSYS":
        return exp.Literal.string("ICRS")
    if name in _SQLITE_NAMES:
        return _fn(_SQLITE_NAMES[name], *node.expressions)
    if isinstance(node, exp.Log) and node.expression is not None:
        return _fn("adql_log10", node.expression) if number(node.this) == 10 else node
    if isinstance(node, exp.Rand):
        return _fn("adql_rand")
    if isinstance(node, exp.Trunc):
        return _fn(
            "adql_truncate", node.this, *([node.args["decimals"]] if node.args.get("decimals") else [])
        )
    return node


# PostgreSQL + pgSphere


def _rad(node: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this="RADIANS", expressions=[node])


def spoly_text(coords: list[float] | tuple[float, ...]) -> str:
    """pgSphere's text of a polygon (degrees): ``{(ra1d,dec1d),...}``."""
    return "{" + ",".join(f"({coords[i]!r}d,{coords[i + 1]!r}d)" for i in range(0, len(coords), 2)) + "}"


def _pg_poly(coords: list[float]) -> exp.Expression:
    return exp.Cast(this=exp.Literal.string(spoly_text(coords)), to=exp.DataType.build("spoly", udt=True))


def _pg_predicates(tree: exp.Expression) -> None:
    """``1 = CONTAINS(a, b)`` -> ``a <@ b`` (boolean, so the GiST index applies)."""
    for node in list(tree.walk()):
        hit = _geo_comparison(node)
        if hit is not None:
            pred = _pg_bool(hit[0])
            node.replace(pred if hit[1] else exp.Not(this=exp.Paren(this=pred)))


def _pg_bool(node: exp.Expression) -> exp.Expression:
    a, b = node.expressions
    if fname(node) == "INTERSECTS":
        if fname(b) == "POINT":
            a, b = b, a
        if fname(a) != "POINT":
            return exp.ArrayOverlaps(this=a, expression=b)
    return exp.ArrayContainedBy(this=a, expression=b)


def _pg_geo(node: exp.Expression) -> exp.Expression:
    name = fname(node)
    if name == "POINT":
        args = geo_args(node)
        return _fn("spoint", _rad(args[0]), _rad(args[1]))
    if name == "CIRCLE":
        args = geo_args(node)
        if len(args) == 2:
            return _fn("scircle", args[0], _rad(args[1]))
        return _fn("scircle", _fn("spoint", _rad(args[0]), _rad(args[1])), _rad(args[2]))
    if name == "BOX":
        return _pg_poly(list(sphere.box_corners(*_numbers(geo_args(node), "BOX"))))
    if name == "POLYGON":
        coords = _numbers(geo_args(node), "POLYGON")
        if len(coords) < 6 or len(coords) % 2:
            raise ADQLError("POLYGON needs at least three vertices")
        return _pg_poly(coords)
    if name in ("CONTAINS", "INTERSECTS"):
        return exp.Case(
            ifs=[exp.If(this=_pg_bool(node), true=exp.Literal.number(1))], default=exp.Literal.number(0)
        )
    if name == "DISTANCE":
        args = geo_args(node)
        if len(args) == 4:
            args = [_fn("spoint", _rad(args[0]), _rad(args[1])), _fn("spoint", _rad(args[2]), _rad(args[3]))]
        return exp.Degrees(this=exp.Paren(this=exp.Distance(this=args[0], expression=args[1])))
    if name in ("COORD1", "COORD2"):
        return exp.Degrees(this=_fn("long" if name == "COORD1" else "lat", node.expressions[0]))
    if name == "AREA":
        return exp.Degrees(this=exp.Degrees(this=_fn("area", node.expressions[0])))
    if name == "COORDSYS":
        return exp.Literal.string("ICRS")
    if name == "LOG10" or (
        isinstance(node, exp.Log) and node.expression is not None and number(node.this) == 10
    ):
        arg = node.expressions[0] if name else node.expression
        return _fn("LOG", exp.Cast(this=arg, to=exp.DataType.build("double")))
    if name == "TRUNCATE" or isinstance(node, exp.Trunc):
        args = node.expressions if name else [node.this, node.args.get("decimals")]
        args = [a for a in args if a is not None]
        return exp.Cast(
            this=_fn("TRUNC", exp.Cast(this=args[0], to=exp.DataType.build("decimal")), *args[1:]),
            to=exp.DataType.build("double"),
        )
    if isinstance(node, exp.Round) and node.args.get("decimals") is not None:
        return exp.Cast(
            this=exp.Round(
                this=exp.Cast(this=node.this, to=exp.DataType.build("decimal")),
                decimals=node.args["decimals"],
            ),
            to=exp.DataType.build("double"),
        )
    if name == "MOD":
        a, b = node.expressions
        return _fn(
            "MOD",
            exp.Cast(this=a, to=exp.DataType.build("decimal")),
            exp.Cast(this=b, to=exp.DataType.build("decimal")),
        )
    if name == "RAND":
        return exp.Rand()
    return node
