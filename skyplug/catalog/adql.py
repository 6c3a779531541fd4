"""ADQL 2.0 -> SQLite or PostgreSQL/pgSphere SQL, through sqlglot's parser.

The query is parsed (sqlglot's T-SQL reader knows ``TOP``), checked (one SELECT, known tables,
ADQL functions only), rewritten (table names, ``*`` expanded, geometry functions, row limit) and
generated for the backend with every literal turned into a bound parameter: no user value is
pasted into SQL. The result also carries the metadata of each output column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from skyplug.catalog import sphere
from skyplug.catalog.model import SCHEMA, Column, Table, physical_name
from skyplug.core.errors import SkyplugError

GEOMETRY_FUNCTIONS = (  # in the order TAPRegExt lists them
    "POINT",
    "CIRCLE",
    "BOX",
    "POLYGON",
    "CONTAINS",
    "INTERSECTS",
    "DISTANCE",
    "COORD1",
    "COORD2",
    "AREA",
    "COORDSYS",
)
GEOMETRY = set(GEOMETRY_FUNCTIONS)
ANONYMOUS_OK = GEOMETRY | {"LOG10", "TRUNCATE", "MOD", "RAND"}
FUNCS_OK: tuple[type[exp.Expression], ...] = (
    exp.Count,
    exp.Min,
    exp.Max,
    exp.Sum,
    exp.Avg,
    exp.Abs,
    exp.Ceil,
    exp.Floor,
    exp.Exp,
    exp.Ln,
    exp.Log,
    exp.Pow,
    exp.Sqrt,
    exp.Round,
    exp.Rand,
    exp.Sin,
    exp.Cos,
    exp.Tan,
    exp.Cot,
    exp.Asin,
    exp.Acos,
    exp.Atan,
    exp.Atan2,
    exp.Degrees,
    exp.Radians,
    exp.Pi,
    exp.Upper,
    exp.Lower,
    exp.Coalesce,
    exp.Cast,
    exp.Trunc,
    exp.Case,
    exp.If,
    exp.Exists,
)
FORBIDDEN: tuple[type[exp.Expression], ...] = (
    exp.Into,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Create,
    exp.Drop,
    exp.Command,
    exp.With,
    exp.Lock,
    exp.Pragma,
    exp.Set,
    exp.Alter,
    exp.Merge,
    exp.TruncateTable,
    exp.Use,
    exp.Transaction,
)

# Every other node type is refused: what sqlglot accepts beyond ADQL 2.0 (GLOB, REGEXP, JSON
# operators, LATERAL, ...) never reaches the database.
SYNTAX_OK: tuple[type[exp.Expression], ...] = (
    exp.Select,
    exp.Union,
    exp.Intersect,
    exp.Except,
    exp.From,
    exp.Join,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Distinct,
    exp.Subquery,
    exp.Table,
    exp.TableAlias,
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Star,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.DPipe,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Is,
    exp.DataType,
    exp.Anonymous,
    *FUNCS_OK,
)

# Bounds that keep parsing and translation cheap whatever the input (measured in docs/catalog.md):
MAX_QUERY_BYTES = 32_768  # of the ADQL text
MAX_LITERALS = 1_000  # numbers and strings (an IN list, a POLYGON's coordinates)
MAX_NESTING = 24  # parentheses, so subqueries and function calls
MAX_NODES = 10_000  # of the parsed tree
MAX_DEPTH = 200  # of the parsed tree (a long OR chain is a deep one)
INT64 = 2**63
_CONNECTIVE = re.compile(r"\b(?:AND|OR)\b", re.I)
_PAREN_OR_STRING = re.compile(r"'(?:[^']|'')*'|[()]")

CAST_TYPES = frozenset(
    {
        exp.DataType.Type.SMALLINT,
        exp.DataType.Type.INT,
        exp.DataType.Type.BIGINT,
        exp.DataType.Type.FLOAT,
        exp.DataType.Type.DOUBLE,
        exp.DataType.Type.CHAR,
        exp.DataType.Type.VARCHAR,
        exp.DataType.Type.NCHAR,
        exp.DataType.Type.NVARCHAR,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.DATETIME,
    }
)


class ADQLError(SkyplugError):
    """The ADQL query is invalid or not allowed; the message says why."""


@dataclass(frozen=True)
class OutColumn:
    """Metadata of one result column; ``column`` is the catalogue column it comes from, if any."""

    name: str
    column: Column | None = None
    datatype: str | None = None  # inferred from the values when None and no column
    region: bool = False


@dataclass
class Translation:
    """Backend SQL with its parameters and the result columns (None = names from the cursor)."""

    sql: str
    params: dict[str, Any]
    columns: list[OutColumn] | None
    limit: int | None


@dataclass
class _Derived:
    """A subquery in FROM: its output columns by lower-case name, in order."""

    columns: dict[str, OutColumn]


@dataclass
class _Scope:
    """Tables of one SELECT by alias: a Table, a _Derived, or None while a subquery is unknown."""

    tables: dict[str, Table | _Derived | None]
    shared: set[str]
    parent: _Scope | None = None
    derived: dict[str, exp.Expression] = field(default_factory=dict)

    def chain(self) -> list[_Scope]:
        out, scope = [], self
        while scope is not None:
            out.append(scope)
            scope = scope.parent
        return out


def parse(adql: str) -> exp.Expression:
    """Parse one ADQL query; raise ADQLError for anything but a single bounded SELECT of ADQL."""
    _check_text(adql)
    try:
        trees = [t for t in sqlglot.parse(adql, read="tsql") if t is not None]
    except SqlglotError as exc:
        raise ADQLError(f"ADQL syntax error: {_first_line(exc)}") from exc
    except RecursionError:
        raise ADQLError(f"the query nests too deeply (at most {MAX_NESTING} levels)") from None
    if len(trees) != 1:
        raise ADQLError("exactly one ADQL query is allowed")
    _check_shape(trees[0])
    tree = trees[0].transform(_normalise, copy=False)
    if not isinstance(tree, exp.Select | exp.Union | exp.Intersect | exp.Except):
        raise ADQLError(f"only SELECT queries are allowed (got {tree.key.upper()})")
    literals = 0
    for node in tree.walk():
        if isinstance(node, FORBIDDEN):
            raise ADQLError(f"{node.key.upper()} is not allowed in a query")
        if isinstance(node, exp.Anonymous) and str(node.this).upper() not in ANONYMOUS_OK:
            raise ADQLError(f"unknown function {node.this}")
        if isinstance(node, exp.Cast) and node.to.this not in CAST_TYPES:
            raise ADQLError(f"CAST to {node.to.sql()} is not allowed")
        if not isinstance(node, SYNTAX_OK):
            what = f"function {node.sql_name()}" if isinstance(node, exp.Func) else node.key.upper()
            raise ADQLError(f"{what} is not part of ADQL")
        if isinstance(node, exp.Literal):
            literals += 1
            if not node.is_string:
                _value(node)  # numbers out of range are refused here, not by the database
        if isinstance(node, exp.Anonymous):
            _check_geometry_arity(node)
    if literals > MAX_LITERALS:
        raise ADQLError(f"the query has {literals} constants; at most {MAX_LITERALS} are allowed")
    return tree


def _check_text(adql: str) -> None:
    """Size, AND/OR count and parenthesis nesting, in linear passes before any parsing."""
    size = len(adql.encode("utf-8", "replace"))
    if size > MAX_QUERY_BYTES:
        raise ADQLError(f"the query is {size} bytes; at most {MAX_QUERY_BYTES} are allowed")
    connectives = len(_CONNECTIVE.findall(adql))  # each AND / OR is one more level of the tree
    if connectives > MAX_DEPTH:
        raise ADQLError(f"the query has {connectives} AND/OR; at most {MAX_DEPTH} are allowed")
    if adql.count("(") <= MAX_NESTING:
        return  # cannot nest deeper than that
    depth = deepest = 0
    for match in _PAREN_OR_STRING.finditer(adql):  # string literals skipped whole
        token = match.group()
        if token == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif token == ")":
            depth -= 1
    if deepest > MAX_NESTING:
        raise ADQLError(f"the query nests {deepest} parentheses deep; at most {MAX_NESTING} are allowed")


def _check_shape(tree: exp.Expression) -> None:
    """Node count and depth, without recursion (sqlglot's generator recurses per level)."""
    count, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ADQLError(f"the query is too large (more than {MAX_NODES} syntax nodes)")
        if depth > MAX_DEPTH:
            raise ADQLError(f"the query is too deeply nested (more than {MAX_DEPTH} levels of operators)")
        stack.extend((child, depth + 1) for child in node.iter_expressions())


_ARITY = {"POINT": (2, 2), "CIRCLE": (2, 3), "BOX": (4, 4), "COORD1": (1, 1), "COORD2": (1, 1)}


def _check_geometry_arity(node: exp.Anonymous) -> None:
    """POLYGON needs at least three vertices; POINT, CIRCLE and BOX their fixed arguments."""
    name = str(node.this).upper()
    if name == "POLYGON":
        n = len(_args(node))
        if n < 6 or n % 2:
            raise ADQLError(f"POLYGON needs at least three vertices (pairs of coordinates), got {n} numbers")
    elif name in _ARITY:
        lo, hi = _ARITY[name]
        n = len(_args(node)) if name not in ("COORD1", "COORD2") else len(node.expressions)
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} or {hi}"
            raise ADQLError(f"{name} needs {want} arguments after the coordinate system, got {n}")


def _normalise(node: exp.Expression) -> exp.Expression:
    """Typed nodes sqlglot makes of ADQL geometry functions back to plain function calls."""
    if isinstance(node, exp.Contains):
        return exp.Anonymous(this="CONTAINS", expressions=[node.this, node.expression])
    return node


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def translate(adql: str, dialect: str, maxrec: int | None = None) -> Translation:
    """Translate for ``dialect`` ("sqlite" or "postgres"); cap the rows at ``maxrec + 1``."""
    try:
        return _translate(adql, dialect, maxrec)
    except RecursionError:  # bounded above; a last guard so a request never drops its connection
        raise ADQLError("the query is too deeply nested to translate") from None


def _translate(adql: str, dialect: str, maxrec: int | None) -> Translation:
    tree = parse(adql)
    selects = list(tree.find_all(exp.Select))  # outer before inner
    scopes: dict[int, _Scope] = {}
    for select in selects:
        outer = select.parent.find_ancestor(exp.Select) if select.parent else None
        scopes[id(select)] = _resolve_tables(select, dialect, scopes.get(id(outer)) if outer else None)
    outs: dict[int, list[OutColumn] | None] = {}
    expanded: list[tuple[exp.Select, list[exp.Expression]]] = []
    for select in reversed(selects):  # inner first, so derived tables are known
        scope = scopes[id(select)]
        for alias, query in scope.derived.items():
            first = query if isinstance(query, exp.Select) else next(query.find_all(exp.Select))
            cols = outs.get(id(first))
            if cols is not None:
                scope.tables[alias] = _Derived({c.name.lower(): c for c in cols})
        outs[id(select)] = _expand(select, scope, expanded)
    columns = outs[id(selects[0])]
    _geometry(tree, dialect, scopes)
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
        raise ADQLError(f"cannot translate the query: {_first_line(exc)}") from exc
    if dialect == "postgres":
        sql = re.sub(r"%(?!\(p\d+\)s)", "%%", sql)
    return Translation(sql, params, columns, limit)


def _limit_of(tree: exp.Expression) -> int | None:
    lim = tree.args.get("limit")
    node = lim.expression if isinstance(lim, exp.Limit) else None
    if isinstance(node, exp.Literal) and not node.is_string:
        return int(node.this)
    return None


# --- tables and columns --------------------------------------------------------------------


def _table_of(node: exp.Table) -> Table:
    name = ".".join(p for p in (node.db, node.name) if p)
    table = SCHEMA.table(name)
    if table is None and not node.db:
        matches = [t for t in SCHEMA.tables.values() if t.name.split(".", 1)[1].lower() == name.lower()]
        table = matches[0] if len(matches) == 1 else None
    if table is None:
        raise ADQLError(f"unknown table {name!r}")
    return table


def _own(node: exp.Expression, select: exp.Select) -> bool:
    """True when ``node`` belongs to ``select`` itself, not to a nested query."""
    return node.find_ancestor(exp.Select) is select


def _resolve_tables(select: exp.Select, dialect: str, parent: _Scope | None) -> _Scope:
    """Check and rename the tables of one SELECT; qualify ``schema.table.column`` by alias."""
    scope = _Scope({}, set(), parent)
    sources: list[exp.Expression] = []
    if select.args.get("from_"):
        sources.append(select.args["from_"].this)
    for join in select.args.get("joins") or ():
        sources.append(join.this)
    for src in sources:
        if isinstance(src, exp.Table):
            table = _table_of(src)
            alias = src.alias or table.name.split(".", 1)[1]
            scope.tables[alias.lower()] = table
            short = table.name.split(".", 1)[1].lower()
            src.set("this", exp.to_identifier(physical_name(table) if dialect == "sqlite" else short))
            src.set("db", None if dialect == "sqlite" else exp.to_identifier(table.schema.lower()))
            src.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        elif isinstance(src, exp.Subquery) and src.alias:
            scope.tables[src.alias.lower()] = None
            scope.derived[src.alias.lower()] = src.this
        else:
            raise ADQLError("a subquery in FROM needs an alias")
    for join in select.args.get("joins") or ():
        if join.method.upper() == "NATURAL":
            left = {c.name for t in scope.tables.values() if isinstance(t, Table) for c in t.columns}
            if isinstance(join.this, exp.Table):
                right = _table_of_alias(scope, join.this.alias)
                scope.shared.update(left & {c.name for c in right.columns})
        for ident in join.args.get("using") or ():
            scope.shared.add(ident.name.lower())
    for col in select.find_all(exp.Column):
        if not _own(col, select) or not (col.args.get("db") or col.table):
            continue
        if col.args.get("db") or not any(col.table.lower() in sc.tables for sc in scope.chain()):
            col.set("table", exp.to_identifier(_alias_for(col, scope)))
            col.set("db", None)
            col.set("catalog", None)
    return scope


def _table_of_alias(scope: _Scope, alias: str) -> Table:
    table = scope.tables[alias.lower()]
    assert isinstance(table, Table)
    return table


def _alias_for(col: exp.Column, scope: _Scope) -> str:
    full = ".".join(p for p in (col.args.get("db") and col.args["db"].name, col.table) if p).lower()
    for sc in scope.chain():
        for alias, table in sc.tables.items():
            if isinstance(table, Table) and full in (table.name.lower(), table.name.split(".", 1)[1].lower()):
                return alias
    raise ADQLError(f"unknown table {full!r} in column {col.sql()}")


_UNKNOWN = object()


def _lookup(col: exp.Column, scope: _Scope) -> Column | None:
    """The catalogue column a reference names (None when it has no metadata); raise if unknown."""
    name = col.name
    if col.table:
        for sc in scope.chain():
            if col.table.lower() in sc.tables:
                return _column_in(sc.tables[col.table.lower()], name, col.table)
        raise ADQLError(f"unknown table {col.table!r}")
    for sc in scope.chain():
        hits = [_column_in(t, name, None) for t in sc.tables.values() if _has(t, name)]
        if hits:
            return hits[0]
        if any(t is None for t in sc.tables.values()):
            return None  # a subquery we could not describe may have it
    raise ADQLError(f"unknown column {name!r}")


def _has(table: Table | _Derived | None, name: str) -> bool:
    if isinstance(table, Table):
        return table.column(name) is not None
    return isinstance(table, _Derived) and name.lower() in table.columns


def _column_in(table: Table | _Derived | None, name: str, alias: str | None) -> Column | None:
    if table is None:
        return None
    if isinstance(table, _Derived):
        out = table.columns.get(name.lower())
        if out is None:
            raise ADQLError(f"no column {name!r} in subquery {alias or ''}".rstrip())
        return out.column
    found = table.column(name)
    if found is None:
        raise ADQLError(f"no column {name!r} in {table.name}")
    return found


def _expand(
    select: exp.Select, scope: _Scope, expanded: list[tuple[exp.Select, list[exp.Expression]]]
) -> list[OutColumn] | None:
    """Check column names; return the output columns' metadata.

    The select list with ``*`` and ``t.*`` expanded is appended to ``expanded`` to be set once the
    other rewrites are done; projections that are not plain columns get an alias here.
    """
    aliases = {p.alias.lower() for p in select.expressions if isinstance(p, exp.Alias)}
    for col in select.find_all(exp.Column):
        if not _own(col, select) or isinstance(col.this, exp.Star):
            continue
        if not col.table and col.name.lower() in aliases and not isinstance(col.parent, exp.Alias):
            continue  # a select-list alias (ORDER BY n, HAVING n > 1)
        _lookup(col, scope)
    new: list[exp.Expression] = []
    out: list[OutColumn] = []
    has_star = False
    for proj in list(select.expressions):
        stars = None
        if isinstance(proj, exp.Star):
            stars = list(scope.tables)
        elif isinstance(proj, exp.Column) and isinstance(proj.this, exp.Star):
            stars = [proj.table.lower()]
        if stars is not None:
            has_star = True
            seen: set[str] = set()
            for alias in stars:
                if alias not in scope.tables:
                    raise ADQLError(f"unknown table {alias!r}")
                table = scope.tables[alias]
                if table is None:
                    return None  # leave the star: names come from the cursor
                cols = (
                    [OutColumn(c.name, c, region=c.name == "s_region") for c in table.columns]
                    if isinstance(table, Table)
                    else list(table.columns.values())
                )
                for oc in cols:
                    if oc.name in scope.shared and oc.name in seen:
                        continue
                    seen.add(oc.name)
                    new.append(exp.column(oc.name, table=alias))
                    out.append(oc)
            continue
        inner = proj.this if isinstance(proj, exp.Alias) else proj
        meta = _lookup(inner, scope) if isinstance(inner, exp.Column) else None
        if isinstance(proj, exp.Alias):
            name = proj.alias
        elif meta is not None:
            name = meta.name  # declared spelling, whatever the case in the query
        elif isinstance(proj, exp.Column):
            name = proj.name
        else:
            name = _default_name(inner, len(out))
            aliased = exp.alias_(proj.copy(), name, copy=False)  # so a surrounding query can refer to it
            proj.replace(aliased)
            proj = aliased
        new.append(proj)
        out.append(OutColumn(name, meta, _infer_type(inner), region=bool(meta and meta.name == "s_region")))
    if has_star:
        expanded.append((select, new))
    names: dict[str, int] = {}
    for i, c in enumerate(out):  # unique names for the VOTable
        key = c.name.lower()
        if key in names:
            names[key] += 1
            out[i] = replace(c, name=f"{c.name}_{names[key]}")
        else:
            names[key] = 0
    return out


def _raise(msg: str) -> Any:
    raise ADQLError(msg)


def _default_name(node: exp.Expression, i: int) -> str:
    if isinstance(node, exp.Func):
        return (str(node.this) if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
    return f"col{i}"


def _infer_type(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Count):
        return "long"
    if isinstance(node, exp.Anonymous) and str(node.this).upper() in ("CONTAINS", "INTERSECTS"):
        return "int"
    if isinstance(node, exp.Anonymous) and str(node.this).upper() in ("POINT", "CIRCLE", "BOX", "POLYGON"):
        return "char"
    if isinstance(node, exp.Anonymous | exp.Avg | exp.Sqrt | exp.Exp | exp.Ln | exp.Log | exp.Pow | exp.Div):
        return "double"
    return None


# --- geometry ------------------------------------------------------------------------------


def _fname(node: exp.Expression) -> str:
    return str(node.this).upper() if isinstance(node, exp.Anonymous) else ""


def _args(node: exp.Anonymous) -> list[exp.Expression]:
    """Arguments without the leading coordinate-system string."""
    args = list(node.expressions)
    if args and isinstance(args[0], exp.Literal) and args[0].is_string:
        args = args[1:]
    return args


def _number(node: exp.Expression) -> float | None:
    if isinstance(node, exp.Neg):
        v = _number(node.this)
        return None if v is None else -v
    if isinstance(node, exp.Paren):
        return _number(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.this)
    return None


def _numbers(nodes: list[exp.Expression], what: str) -> list[float]:
    vals = [_number(n) for n in nodes]
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


def _geometry(tree: exp.Expression, dialect: str, scopes: dict[int, _Scope]) -> None:
    if dialect == "sqlite":
        for select in tree.find_all(exp.Select):
            if id(select) in scopes:
                _rtree_prefilter(select, scopes[id(select)])
        _bottom_up(tree, _sqlite_geo)
    else:
        _pg_predicates(tree)
        _bottom_up(tree, _pg_geo)


def _is_bool_geo(node: exp.Expression) -> bool:
    return _fname(node) in ("CONTAINS", "INTERSECTS")


def _geo_comparison(node: exp.Expression) -> tuple[exp.Expression, bool] | None:
    """(geometry predicate, wanted truth) of ``1 = CONTAINS(...)`` and friends."""
    if not isinstance(node, exp.EQ | exp.NEQ):
        return None
    for a, b in ((node.this, node.expression), (node.expression, node.this)):
        v = _number(a)
        if _is_bool_geo(b) and v in (0.0, 1.0):
            return b, (v == 1.0) == isinstance(node, exp.EQ)
    return None


def _rtree_prefilter(select: exp.Select, scope: _Scope) -> None:
    """Add ``alias.rowid IN (R*Tree box)`` next to a cone CONTAINS on obscore's s_ra/s_dec."""
    where = select.args.get("where")
    if where is None:
        return
    conjuncts = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    extra: list[exp.Expression] = []
    for c in conjuncts:
        hit = _geo_comparison(c)
        if not hit or not hit[1] or _fname(hit[0]) != "CONTAINS":
            continue
        pt, circ = hit[0].expressions
        if _fname(pt) != "POINT" or _fname(circ) != "CIRCLE":
            continue
        pargs, cargs = _args(pt), _args(circ)
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
        vals = [_number(a) for a in cargs]
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
    name = _fname(node)
    if name == "DISTANCE":
        args = _args(node)
        if len(args) == 4:
            return _fn("sky_distance4", *args)
        return _fn("sky_distance", *args)
    if name in ("POINT", "CIRCLE", "BOX", "POLYGON"):
        args = _args(node)
        if name == "CIRCLE" and len(args) == 2:
            return _fn("sky_circle_p", *args)
        return _fn(_SQLITE_NAMES[name], *args)
    if name == "COORDSYS":
        return exp.Literal.string("ICRS")
    if name in _SQLITE_NAMES:
        return _fn(_SQLITE_NAMES[name], *node.expressions)
    if isinstance(node, exp.Log) and node.expression is not None:
        return _fn("adql_log10", node.expression) if _number(node.this) == 10 else node
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
    if _fname(node) == "INTERSECTS":
        if _fname(b) == "POINT":
            a, b = b, a
        if _fname(a) != "POINT":
            return exp.ArrayOverlaps(this=a, expression=b)
    return exp.ArrayContainedBy(this=a, expression=b)


def _pg_geo(node: exp.Expression) -> exp.Expression:
    name = _fname(node)
    if name == "POINT":
        args = _args(node)
        return _fn("spoint", _rad(args[0]), _rad(args[1]))
    if name == "CIRCLE":
        args = _args(node)
        if len(args) == 2:
            return _fn("scircle", args[0], _rad(args[1]))
        return _fn("scircle", _fn("spoint", _rad(args[0]), _rad(args[1])), _rad(args[2]))
    if name == "BOX":
        return _pg_poly(list(sphere.box_corners(*_numbers(_args(node), "BOX"))))
    if name == "POLYGON":
        coords = _numbers(_args(node), "POLYGON")
        if len(coords) < 6 or len(coords) % 2:
            raise ADQLError("POLYGON needs at least three vertices")
        return _pg_poly(coords)
    if name in ("CONTAINS", "INTERSECTS"):
        return exp.Case(
            ifs=[exp.If(this=_pg_bool(node), true=exp.Literal.number(1))], default=exp.Literal.number(0)
        )
    if name == "DISTANCE":
        args = _args(node)
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
        isinstance(node, exp.Log) and node.expression is not None and _number(node.this) == 10
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
        params[name] = _value(node)
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


def _value(lit: exp.Literal) -> Any:
    if lit.is_string:
        return lit.this
    text = lit.this
    try:
        value = int(text)
    except ValueError:
        pass
    else:
        if not -INT64 < value < INT64:  # magnitude: the minus sign is a separate node
            raise ADQLError(f"integer {text[:30]} is out of range (64-bit integers only)")
        return value
    try:
        v = float(text)
    except ValueError:
        raise ADQLError(f"invalid number {text[:30]}") from None
    else:
        if not math.isfinite(v):
            raise ADQLError(f"invalid number {text[:30]}")
        return v
