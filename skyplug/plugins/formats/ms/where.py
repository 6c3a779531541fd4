"""A safe row predicate over an MS's scalar columns: ``ANTENNA1 < 10 AND SCAN_NUMBER IN (3, 4)``.

Parsed by a small tokenizer and a recursive-descent parser, never by ``eval``: the only names are
the allow-listed scalar columns (:data:`COLUMNS`), the only literals numbers (and TRUE/FALSE), the
only operators ``= == != <> < <= > >=``, ``AND OR NOT``, ``[NOT] IN (n, ...)``,
``[NOT] BETWEEN lo AND hi`` (inclusive) and parentheses. The text is bounded
(:data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` nestings); every error is one line naming the
offending token. Keywords and column names are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from skyplug.core.errors import PluginError

COLUMNS = (
    "TIME",
    "ANTENNA1",
    "ANTENNA2",
    "FIELD_ID",
    "SCAN_NUMBER",
    "STATE_ID",
    "OBSERVATION_ID",
    "DATA_DESC_ID",
    "ARRAY_ID",
    "PROCESSOR_ID",
    "FEED1",
    "FEED2",
    "FLAG_ROW",
    "INTERVAL",
    "EXPOSURE",
)
MAX_LENGTH = 4096
MAX_DEPTH = 32
KEYWORDS = ("AND", "OR", "NOT", "IN", "BETWEEN", "TRUE", "FALSE")
OPS = {"=": "==", "==": "==", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))(?![A-Za-z0-9_.])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|==|!=|<>|=|<|>)|(?P<punct>[(),]))",
    re.ASCII,
)

Node = tuple[Any, ...]  # ("cmp", col, op, x) | ("in", col, values) | ("between", col, lo, hi)
# | ("and", a, b, ...) | ("or", a, b, ...) | ("not", a): AND/OR chains are flat, so only
# parentheses and NOT nest (at most MAX_DEPTH), whatever the length


class WhereError(PluginError):
    """A ``where`` predicate that is not in the grammar, or names a column the MS cannot offer."""


@dataclass(frozen=True)
class Token:
    kind: str  # num, name, kw, op, punct, end
    text: str
    pos: int


def tokenize(text: str, obj: str = "where") -> list[Token]:
    """The tokens of ``text``; anything else is an error naming the character and its position."""
    if not isinstance(text, str):
        raise WhereError(f"{obj}: the predicate must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise WhereError(f"{obj}: the predicate is {len(text)} characters long (at most {MAX_LENGTH})")
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            start = len(text) - len(text[pos:].lstrip())
            bad = re.match(r"[A-Za-z0-9_.]+|\S", text[start:])
            token = bad.group(0) if bad else text[start]
            why = "strings are not allowed" if token in ("'", '"') else "not allowed here"
            raise WhereError(f"{obj}: unexpected {token!r} at position {start} ({why})")
        kind = m.lastgroup or ""
        value = m.group(kind)
        start = m.start(kind)
        if kind == "name" and value.upper() in KEYWORDS:
            kind, value = "kw", value.upper()
        out.append(Token(kind, value, start))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str, columns: tuple[str, ...], obj: str) -> None:
        self.obj, self.columns = obj, columns
        self.tokens = tokenize(text, obj)
        self.i, self.depth = 0, 0

    def fail(self, tok: Token, why: str) -> WhereError:
        shown = f"{tok.text!r}" if tok.kind != "end" else "end of predicate"
        return WhereError(f"{self.obj}: unexpected {shown} at position {tok.pos} ({why})")

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, text: str, why: str) -> None:
        if not self.accept(kind, text):
            raise self.fail(self.peek(), why)

    def parse(self) -> Node:
        node = self.or_()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "expected AND, OR or the end")
        return node

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(self.peek(), f"nested deeper than {MAX_DEPTH}")

    def or_(self) -> Node:
        terms = [self.and_()]
        while self.accept("kw", "OR"):
            terms.append(self.and_())
        return ("or", *terms) if len(terms) > 1 else terms[0]

    def and_(self) -> Node:
        terms = [self.not_()]
        while self.accept("kw", "AND"):
            terms.append(self.not_())
        return ("and", *terms) if len(terms) > 1 else terms[0]

    def not_(self) -> Node:
        if self.accept("kw", "NOT"):
            self.nest()
            node = ("not", self.not_())
            self.depth -= 1
            return node
        if self.accept("punct", "("):
            self.nest()
            node = self.or_()
            self.expect("punct", ")", "expected ')'")
            self.depth -= 1
            return node
        return self.comparison()

    def number(self) -> float:
        tok = self.take()
        if tok.kind == "num":
            return float(tok.text)
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE"):
            return 1.0 if tok.text == "TRUE" else 0.0
        raise self.fail(tok, "expected a number")

    def comparison(self) -> Node:
        tok = self.take()
        if tok.kind != "name":
            raise self.fail(tok, "expected a column name or '('")
        col = tok.text.upper()
        if col not in self.columns:
            raise self.fail(tok, f"not a column here; columns: {', '.join(self.columns)}")
        negate = self.accept("kw", "NOT")
        nxt = self.peek()
        if self.accept("kw", "IN"):
            self.expect("punct", "(", "expected '(' after IN")
            values = [self.number()]
            while self.accept("punct", ","):
                values.append(self.number())
            self.expect("punct", ")", "expected ',' or ')'")
            node: Node = ("in", col, tuple(values))
        elif self.accept("kw", "BETWEEN"):
            lo = self.number()
            self.expect("kw", "AND", "expected AND in BETWEEN lo AND hi")
            node = ("between", col, lo, self.number())
        elif not negate and nxt.kind == "op":
            self.take()
            node = ("cmp", col, OPS[nxt.text], self.number())
        else:
            raise self.fail(nxt, "expected a comparison, IN or BETWEEN")
        return ("not", node) if negate else node


def parse(text: str, columns: tuple[str, ...] = COLUMNS, obj: str = "where") -> Node:
    """The syntax tree of ``text``; ``columns`` are the names it may use (a subset of COLUMNS)."""
    return _Parser(text, tuple(c for c in columns if c in COLUMNS), obj).parse()


def used(node: Node) -> set[str]:
    """The columns a parsed predicate reads."""
    if node[0] in ("and", "or", "not"):
        return set().union(*(used(term) for term in node[1:]))
    return {node[1]}


_CMP: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def evaluate(node: Node, column: Callable[[str], np.ndarray]) -> np.ndarray:
    """The boolean row mask of a parsed predicate; ``column(name)`` gives a column's values."""
    kind = node[0]
    if kind in ("and", "or"):
        masks = [evaluate(term, column) for term in node[1:]]
        return np.logical_and.reduce(masks) if kind == "and" else np.logical_or.reduce(masks)
    if kind == "not":
        return ~evaluate(node[1], column)
    values = np.asarray(column(node[1]))
    if values.dtype == bool:
        values = values.astype(np.int8)
    if kind == "in":
        return np.isin(values, np.asarray(node[2]))
    if kind == "between":
        return (values >= node[2]) & (values <= node[3])
    return np.asarray(_CMP[node[2]](values, node[3]), bool)
