"""CIMI query parameters as Nuvla's api-server reads them, for the Nuvla stand-in.

Nuvla's server cannot run here (reference/catalog_standards.md 1.1), so its query language is
re-implemented: a recursive-descent filter parser (no ``eval``) that keeps Nuvla's quirks
(non-negative integers only, no decimals or exponents), plus ``orderby``, ``select`` and
``aggregation`` over plain dicts. Full-text ``==`` is approximated as word containment;
the geo operators are not implemented (a filter using them is a 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

Pred = Callable[[dict], bool]
_MISSING = object()


class CimiError(ValueError):
    """A CIMI parameter Nuvla would reject with 400; ``str()`` is the message it sends."""


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))?)(?![\w.:])
  | (?P<int>\d+)(?![\w.])
  | (?P<op>==|!=|<=|>=|\^=|=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<name>[A-Za-z][\w-]*(?::[\w-]+)?(?:/[A-Za-z][\w-]*(?::[\w-]+)?)*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """Split a filter into (kind, text, column) tokens; anything else is a parse error."""
    out, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CimiError(f"Invalid CIMI filter. Parse error at column {pos + 1}: {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


def _date(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _Parser:
    """filter := or; or := and ('or' and)*; and := term ('and' term)*; term := '(' or ')' | cmp."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def fail(self, what: str) -> CimiError:
        col = self.toks[self.i][2] if self.i < len(self.toks) else "end"
        return CimiError(f"Invalid CIMI filter. Parse error at column {col}: expected {what}")

    def peek(self, kind: str, text: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, t, _ = self.toks[self.i]
        return k == kind and (text is None or t == text)

    def take(self, kind: str, what: str) -> str:
        if not self.peek(kind):
            raise self.fail(what)
        self.i += 1
        return self.toks[self.i - 1][1]

    def parse(self) -> Pred:
        pred = self.or_()
        if self.i != len(self.toks):
            raise self.fail("'and', 'or' or end of filter")
        return pred

    def or_(self) -> Pred:
        preds = [self.and_()]
        while self.peek("name", "or"):
            self.i += 1
            preds.append(self.and_())
        return preds[0] if len(preds) == 1 else (lambda doc: any(p(doc) for p in preds))

    def and_(self) -> Pred:
        preds = [self.term()]
        while self.peek("name", "and"):
            self.i += 1
            preds.append(self.term())
        return preds[0] if len(preds) == 1 else (lambda doc: all(p(doc) for p in preds))

    def term(self) -> Pred:
        if self.peek("punct", "("):
            self.i += 1
            pred = self.or_()
            self.take("punct", "')'")
            if self.toks[self.i - 1][1] != ")":
                raise self.fail("')'")
            return pred
        attr = self.take("name", "an attribute name or '('")
        op = self.take("op", "an operator")
        return _compare(attr.split("/"), op, self.value())

    def value(self) -> Any:
        if self.peek("punct", "["):
            self.i += 1
            items = [self.value()]
            while self.peek("punct", ","):
                self.i += 1
                items.append(self.value())
            if not self.peek("punct", "]"):
                raise self.fail("']'")
            self.i += 1
            return items
        if self.i >= len(self.toks):
            raise self.fail("a value")
        kind, text, _ = self.toks[self.i]
        self.i += 1
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "int":
            return int(text)
        if kind == "date":
            return _date(text)
        if kind == "name" and text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        self.i -= 1
        raise self.fail("a string, non-negative integer, date, true, false or null")


def lookup(doc: Any, path: list[str]) -> Any:
    """Value at ``a/b`` in nested dicts, or ``_MISSING``."""
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def _match(stored: Any, op: str, value: Any) -> bool:
    """One stored scalar against one filter value (type mismatches never match)."""
    if isinstance(value, datetime):
        if not isinstance(stored, str):
            return False
        try:
            stored = _date(stored)
        except ValueError:
            return False
    elif isinstance(value, bool) or isinstance(stored, bool):
        if type(value) is not type(stored) or op not in ("=", "!="):
            return False
    elif (isinstance(value, int) and not isinstance(stored, (int, float))) or (
        isinstance(value, str) and not isinstance(stored, str)
    ):
        return False
    if op == "^=":
        return isinstance(stored, str) and stored.startswith(value)
    if op == "==":  # full-text, approximated: every word of the value occurs, case-insensitively
        return isinstance(stored, str) and all(w in stored.lower() for w in str(value).lower().split())
    return {
        "=": stored == value,
        "!=": stored != value,
        "<": stored < value,
        "<=": stored <= value,
        ">": stored > value,
        ">=": stored >= value,
    }[op]


def _compare(path: list[str], op: str, value: Any) -> Pred:
    """``attr op value``; lists of values mean any-of, list attributes match on any element."""
    values = value if isinstance(value, list) else [value]

    def pred(doc: dict) -> bool:
        stored = lookup(doc, path)
        if None in values and op in ("=", "!="):
            present = stored is not _MISSING and stored is not None
            return present if op == "!=" else not present
        if stored is _MISSING or stored is None:
            return op == "!="
        items = stored if isinstance(stored, list) else [stored]
        if op == "!=":
            return not any(_match(s, "=", v) for s in items for v in values)
        return any(_match(s, op, v) for s in items for v in values)

    return pred


def parse_filter(text: str) -> Pred:
    """Compile one CIMI filter string into a predicate over resource dicts."""
    return _Parser(text).parse()


def filters(texts: Iterable[str]) -> Pred:
    """Repeated ``filter`` parameters are ANDed; blank ones are ignored."""
    preds = [parse_filter(t) for t in texts if t.strip()]
    return lambda doc: all(p(doc) for p in preds)


def order(docs: list[dict], orderby: Iterable[str]) -> list[dict]:
    """Sort by ``attr[:asc|desc],…`` (the last sort key is applied first; missing values last)."""
    keys = [k.strip() for spec in orderby for k in spec.split(",") if k.strip()]
    for key in reversed(keys):
        attr, _, direction = key.rpartition(":")
        if direction not in ("asc", "desc"):
            attr, direction = key, "asc"
        path = attr.split("/")
        present = [d for d in docs if lookup(d, path) not in (_MISSING, None)]
        absent = [d for d in docs if lookup(d, path) in (_MISSING, None)]
        try:
            present.sort(key=lambda d: lookup(d, path), reverse=direction == "desc")
        except TypeError as exc:
            raise CimiError(f"invalid orderby {key!r}: mixed value types") from exc
        docs = present + absent
    return docs


def select(doc: dict, attrs: Iterable[str]) -> dict:
    """Keep the selected top-level keys plus the ones Nuvla always returns."""
    wanted = {a.strip() for spec in attrs for a in spec.split(",") if a.strip()}
    if not wanted or "*" in wanted:
        return doc
    wanted |= {"id", "resource-type", "acl", "operations"}
    return {k: v for k, v in doc.items() if k in wanted}


def _numbers(values: list[Any]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _terms(values: list[Any]) -> dict:
    counts: dict[Any, int] = {}
    for v in values:
        for item in v if isinstance(v, list) else [v]:
            counts[item] = counts.get(item, 0) + 1
    buckets = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": 0,
        "buckets": [{"key": k, "doc_count": n} for k, n in buckets],
    }


_AGGS: dict[str, Callable[[list[Any], int], dict]] = {
    "count": lambda vs, n: {"value": len(vs)},
    "terms": lambda vs, n: _terms(vs),
    "cardinality": lambda vs, n: {"value": len({repr(v) for v in vs})},
    "missing": lambda vs, n: {"doc_count": n - len(vs)},
    "min": lambda vs, n: {"value": min(_numbers(vs), default=None)},
    "max": lambda vs, n: {"value": max(_numbers(vs), default=None)},
    "sum": lambda vs, n: {"value": float(sum(_numbers(vs)))},
    "avg": lambda vs, n: {"value": (sum(_numbers(vs)) / len(_numbers(vs))) if _numbers(vs) else None},
}


def aggregate(docs: list[dict], specs: Iterable[str]) -> dict:
    """``algo:attr,…`` over the matching documents (before paging), keyed ``algo:attr``."""
    out = {}
    for spec in (s.strip() for text in specs for s in text.split(",") if s.strip()):
        algo, _, attr = spec.partition(":")
        if algo not in _AGGS or not attr:
            raise CimiError(f"invalid aggregation {spec!r}: supported algorithms {sorted(_AGGS)}")
        path = attr.split("/")
        values = [v for v in (lookup(d, path) for d in docs) if v is not _MISSING and v is not None]
        out[spec] = _AGGS[algo](values, len(docs))
    return out
