"""Parse and validate ADQL: one SELECT of ADQL 2.0 syntax and functions, through sqlglot's T-SQL
reader (which knows ``TOP``); everything sqlglot accepts beyond ADQL is refused here, before any
rewriting. Also the small readers of parsed nodes the later stages share.
"""

from __future__ import annotations

import math
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from skyplug.catalog.adql import guard
from skyplug.catalog.adql.errors import ADQLError

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

INT64 = 2**63

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


def parse(adql: str) -> exp.Expression:
    """Parse one ADQL query; raise ADQLError for anything but a single bounded SELECT of ADQL."""
    guard.check_text(adql)
    try:
        trees = [t for t in sqlglot.parse(adql, read="tsql") if t is not None]
    except SqlglotError as exc:
        raise ADQLError(f"ADQL syntax error: {first_line(exc)}") from exc
    except RecursionError:
        raise ADQLError(f"the query nests too deeply (at most {guard.MAX_NESTING} levels)") from None
    if len(trees) != 1:
        raise ADQLError("exactly one ADQL query is allowed")
    guard.check_shape(trees[0])
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
                literal_value(node)  # numbers out of range are refused here, not by the database
        if isinstance(node, exp.Anonymous):
            _check_geometry_arity(node)
    guard.check_literals(literals)
    return tree


_ARITY = {"POINT": (2, 2), "CIRCLE": (2, 3), "BOX": (4, 4), "COORD1": (1, 1), "COORD2": (1, 1)}


def _check_geometry_arity(node: exp.Anonymous) -> None:
    """POLYGON needs at least three vertices; POINT, CIRCLE and BOX their fixed arguments."""
    name = str(node.this).upper()
    if name == "POLYGON":
        n = len(geo_args(node))
        if n < 6 or n % 2:
            raise ADQLError(f"POLYGON needs at least three vertices (pairs of coordinates), got {n} numbers")
    elif name in _ARITY:
        lo, hi = _ARITY[name]
        n = len(geo_args(node)) if name not in ("COORD1", "COORD2") else len(node.expressions)
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} or {hi}"
            raise ADQLError(f"{name} needs {want} arguments after the coordinate system, got {n}")


def _normalise(node: exp.Expression) -> exp.Expression:
    """Typed nodes sqlglot makes of ADQL geometry functions back to plain function calls."""
    if isinstance(node, exp.Contains):
        return exp.Anonymous(this="CONTAINS", expressions=[node.this, node.expression])
    return node


def first_line(exc: Exception) -> str:
    """The first line of an error message (sqlglot adds context lines)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def fname(node: exp.Expression) -> str:
    """The upper-case name of an ADQL function call (geometry, LOG10, ...), else ''."""
    return str(node.this).upper() if isinstance(node, exp.Anonymous) else ""


def geo_args(node: exp.Anonymous) -> list[exp.Expression]:
    """Arguments without the leading coordinate-system string."""
    args = list(node.expressions)
    if args and isinstance(args[0], exp.Literal) and args[0].is_string:
        args = args[1:]
    return args


def number(node: exp.Expression) -> float | None:
    """The value of a numeric constant (with sign or parentheses), else None."""
    if isinstance(node, exp.Neg):
        v = number(node.this)
        return None if v is None else -v
    if isinstance(node, exp.Paren):
        return number(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.this)
    return None


def literal_value(lit: exp.Literal) -> Any:
    """The Python value of a literal; numbers out of 64-bit or float range are refused."""
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
