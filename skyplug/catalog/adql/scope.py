"""Tables and columns of a parsed query: names checked against the ObsCore schema, tables renamed
for the backend, ``*`` expanded, and the metadata (unit, UCD, ...) of every output column.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlglot import exp

from skyplug.catalog.adql.errors import ADQLError
from skyplug.catalog.model import SCHEMA, Column, Table, physical_name


@dataclass(frozen=True)
class OutColumn:
    """Metadata of one result column; ``column`` is the catalogue column it comes from, if any."""

    name: str
    column: Column | None = None
    datatype: str | None = None  # inferred from the values when None and no column
    region: bool = False


@dataclass
class Derived:
    """A subquery in FROM: its output columns by lower-case name, in order."""

    columns: dict[str, OutColumn]


@dataclass
class Scope:
    """Tables of one SELECT by alias: a Table, a Derived, or None while a subquery is unknown."""

    tables: dict[str, Table | Derived | None]
    shared: set[str]
    parent: Scope | None = None
    derived: dict[str, exp.Expression] = field(default_factory=dict)

    def chain(self) -> list[Scope]:
        out, scope = [], self
        while scope is not None:
            out.append(scope)
            scope = scope.parent
        return out


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


def resolve_tables(select: exp.Select, dialect: str, parent: Scope | None) -> Scope:
    """Check and rename the tables of one SELECT; qualify ``schema.table.column`` by alias."""
    scope = Scope({}, set(), parent)
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


def _table_of_alias(scope: Scope, alias: str) -> Table:
    table = scope.tables[alias.lower()]
    assert isinstance(table, Table)
    return table


def _alias_for(col: exp.Column, scope: Scope) -> str:
    full = ".".join(p for p in (col.args.get("db") and col.args["db"].name, col.table) if p).lower()
    for sc in scope.chain():
        for alias, table in sc.tables.items():
            if isinstance(table, Table) and full in (table.name.lower(), table.name.split(".", 1)[1].lower()):
                return alias
    raise ADQLError(f"unknown table {full!r} in column {col.sql()}")


def _lookup(col: exp.Column, scope: Scope) -> Column | None:
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


def _has(table: Table | Derived | None, name: str) -> bool:
    if isinstance(table, Table):
        return table.column(name) is not None
    return isinstance(table, Derived) and name.lower() in table.columns


def _column_in(table: Table | Derived | None, name: str, alias: str | None) -> Column | None:
    if table is None:
        return None
    if isinstance(table, Derived):
        out = table.columns.get(name.lower())
        if out is None:
            raise ADQLError(f"no column {name!r} in subquery {alias or ''}".rstrip())
        return out.column
    found = table.column(name)
    if found is None:
        raise ADQLError(f"no column {name!r} in {table.name}")
    return found


def expand(
    select: exp.Select, scope: Scope, expanded: list[tuple[exp.Select, list[exp.Expression]]]
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
