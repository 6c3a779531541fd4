"""The cost guard: bounds that keep parsing and translation cheap whatever the input.

Checked in linear passes before and right after sqlglot parses (sqlglot's parser and generator
recurse per level and an IN list used to cost O(n^2)), so a hostile query is refused in
milliseconds; the limits are measured in docs/catalog.md.
"""

from __future__ import annotations

import re

from sqlglot import exp

from skyplug.catalog.adql.errors import ADQLError

# Bounds that keep parsing and translation cheap whatever the input (measured in docs/catalog.md):
MAX_QUERY_BYTES = 32_768  # of the ADQL text
MAX_LITERALS = 1_000  # numbers and strings (an IN list, a POLYGON's coordinates)
MAX_NESTING = 24  # parentheses, so subqueries and function calls
MAX_NODES = 10_000  # of the parsed tree
MAX_DEPTH = 200  # of the parsed tree (a long OR chain is a deep one)
_CONNECTIVE = re.compile(r"\b(?:AND|OR)\b", re.I)
_PAREN_OR_STRING = re.compile(r"'(?:[^']|'')*'|[()]")


def check_text(adql: str) -> None:
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


def check_shape(tree: exp.Expression) -> None:
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


def check_literals(count: int) -> None:
    """At most MAX_LITERALS constants (numbers and strings) in one query."""
    if count > MAX_LITERALS:
        raise ADQLError(f"the query has {count} constants; at most {MAX_LITERALS} are allowed")
