"""where=: the safe predicate parser, hostile input, and rows equal to casacore's TaQL."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.errors import PluginError, SkyplugError
from skyplug.core.load import load_partition
from skyplug.plugins.formats.ms import where
from skyplug.synthetic.ms import LAYOUTS

COLS = {
    "ANTENNA1": np.array([0, 0, 1, 2, 3, 4]),
    "ANTENNA2": np.array([0, 1, 2, 3, 4, 4]),
    "SCAN_NUMBER": np.array([1, 1, 2, 2, 3, 3]),
    "FLAG_ROW": np.array([False, True, False, False, True, False]),
    "TIME": np.array([10.0, 10.0, 20.5, 20.5, 31.0, 31.0]),
}


def mask(text: str) -> list[bool]:
    return where.evaluate(where.parse(text), COLS.__getitem__).tolist()


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ANTENNA1 < 2", [1, 1, 1, 0, 0, 0]),
        ("antenna1 >= 3", [0, 0, 0, 0, 1, 1]),
        ("ANTENNA1 == 0", [1, 1, 0, 0, 0, 0]),
        ("SCAN_NUMBER != 2 AND ANTENNA1 <> 0", [0, 0, 0, 0, 1, 1]),
        ("SCAN_NUMBER IN (1, 3)", [1, 1, 0, 0, 1, 1]),
        ("SCAN_NUMBER NOT IN (1, 3)", [0, 0, 1, 1, 0, 0]),
        ("ANTENNA2 BETWEEN 1 AND 3", [0, 1, 1, 1, 0, 0]),
        ("ANTENNA2 NOT BETWEEN 1 AND 3", [1, 0, 0, 0, 1, 1]),
        ("NOT (SCAN_NUMBER = 2 OR FLAG_ROW = TRUE)", [1, 0, 0, 0, 0, 1]),
        ("FLAG_ROW = FALSE AND TIME > 2.05e1", [0, 0, 0, 0, 0, 1]),
        ("FLAG_ROW = FALSE AND TIME >= 2.05e1", [0, 0, 1, 1, 0, 1]),
        ("ANTENNA1 = 0 OR ANTENNA1 = 4 AND SCAN_NUMBER = 3", [1, 1, 0, 0, 0, 1]),  # AND binds tighter
        ("(ANTENNA1 = 0 OR ANTENNA1 = 4) AND SCAN_NUMBER = 3", [0, 0, 0, 0, 0, 1]),
        ("TIME <= 20.5 AND NOT NOT ANTENNA1 > -1", [1, 1, 1, 1, 0, 0]),
        ("ANTENNA1 < 1.5", [1, 1, 1, 0, 0, 0]),
    ],
)
def test_grammar(text: str, want: list[int]) -> None:
    assert mask(text) == [bool(x) for x in want]


def test_long_and_chains_are_flat() -> None:
    """A chain of many ANDs is one node: evaluating it recurses no deeper than its parentheses."""
    text = " AND ".join(["ANTENNA1 >= 0"] * 200)
    node = where.parse(text)
    assert node[0] == "and" and len(node) == 201
    assert mask(text) == [True] * 6
    assert where.used(where.parse("ANTENNA1 < 1 OR (TIME > 3 AND NOT SCAN_NUMBER = 2)")) == {
        "ANTENNA1",
        "TIME",
        "SCAN_NUMBER",
    }


HOSTILE = {
    "100 KB": ("ANTENNA1 < 1 OR " * 7000)[:100_000],
    "10k nested parens": "(" * 10_000 + "ANTENNA1 < 1" + ")" * 10_000,
    "40 nested parens": "(" * 40 + "ANTENNA1 < 1" + ")" * 40,
    "40 NOTs": "NOT " * 40 + "ANTENNA1 < 1",
    "unknown column": "DATA > 0",
    "sql injection": "ANTENNA1 = 1; DROP TABLE main",
    "sql comment": "ANTENNA1 = 1 -- AND 1",
    "python": "__import__('os').system('true')",
    "dunder": "ANTENNA1.__class__ > 0",
    "string": "ANTENNA1 = '1'",
    "column on the right": "ANTENNA1 = ANTENNA2",
    "function": "sqrt(ANTENNA1) < 2",
    "empty": "   ",
    "dangling": "ANTENNA1 <",
    "unclosed": "(ANTENNA1 < 1",
    "extra close": "ANTENNA1 < 1)",
    "empty IN": "ANTENNA1 IN ()",
    "bare number": "1",
    "unicode digit": "ANTENNA1 < \u0663",
    "nan word": "TIME > nan",
    "double dot": "TIME > 1.2.3",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_predicates_are_one_clear_line(name: str) -> None:
    text = HOSTILE[name]
    with pytest.raises(where.WhereError) as info:
        where.parse(text, obj="x.ms: where")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("x.ms: where: ")
    assert len(msg) < 400  # never echoes the whole input back
    if len(text) <= where.MAX_LENGTH:
        assert "position" in msg, msg
    else:
        assert f"at most {where.MAX_LENGTH}" in msg


def test_error_names_the_position() -> None:
    with pytest.raises(where.WhereError, match=r"';' at position 12"):
        where.parse("ANTENNA1 = 1; DROP")
    with pytest.raises(where.WhereError, match=r"'__import__' at position 2 \(not a column"):
        where.parse("( __import__ < 1)")
    with pytest.raises(where.WhereError, match=r"at position 11 \(strings are not allowed"):
        where.parse("__import__('os')")
    with pytest.raises(where.WhereError, match=r"nested deeper than 32"):
        where.parse(HOSTILE["40 nested parens"])
    with pytest.raises(where.WhereError, match=r"end of predicate at position 10"):
        where.parse("ANTENNA1 <")
    with pytest.raises(where.WhereError, match="strings are not allowed"):
        where.parse("ANTENNA1 = '1'")
    with pytest.raises(where.WhereError, match="must be a string"):
        where.parse(3)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tcsm(ms_factory):
    return skyplug.open(str(ms_factory("tcsm")))


def test_plan_rejects_bad_where_in_one_line(tcsm) -> None:
    for text in (HOSTILE["sql injection"], HOSTILE["100 KB"], "DATA > 0"):
        with pytest.raises(PluginError) as info:
            tcsm.plan("rows", 2, where=text)
        assert "\n" not in str(info.value) and "where" in str(info.value)
    with pytest.raises(PluginError, match="no row matches where"):
        tcsm.plan("rows", 2, where="ANTENNA1 > 1000")


def test_cli_bad_where_is_one_line_no_traceback(ms_factory) -> None:
    uri = str(ms_factory("tcsm"))
    for text in ("ANTENNA1 = 1; DROP", "(" * 10_000):
        res = subprocess.run(
            [
                str(Path(sys.executable).parent / "skyplug"),
                "partition",
                uri,
                "--by",
                "rows",
                "-n",
                "2",
                "--where",
                text,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode != 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "where" in lines[0] and "Traceback" not in res.stderr, res.stderr


def taql_rows(ms: str, text: str) -> np.ndarray:
    """casacore's row numbers for ``SELECT FROM ms WHERE text``."""
    from casacore import tables

    with tables.taql(f"SELECT ROWID() AS R FROM $ms WHERE {text}", locals={"ms": ms}) as t:
        return np.asarray(t.getcol("R") if t.nrows() else [], np.int64)


def loaded_rows(ds: skyplug.Dataset, by: str, n: int, text: str) -> np.ndarray:
    """The ROWIDs the partitions of a plan with ``where=text`` load (TIME only: no tile fetched)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = ds.plan(by, n, where=text, columns=["TIME"])
    out = []
    for p in parts:
        got = load_partition(p)
        rows = np.concatenate([v for k, v in got.items() if k.split("@")[0] == "ROWID"])
        assert len(rows) == p.selection["nrows"]
        out.append(rows)
    rows = np.concatenate(out)
    assert len(np.unique(rows)) == len(rows)  # no row in two partitions
    return np.sort(rows)


PREDICATES = (
    "ANTENNA1 < 3 AND ANTENNA2 >= 2",
    "NOT (ANTENNA1 = 0) OR FLAG_ROW = TRUE",
    "ANTENNA2 IN (1, 4, 5) AND DATA_DESC_ID = 0",
    "ANTENNA1 BETWEEN 1 AND 2 OR SCAN_NUMBER <> 1",
    "FIELD_ID = 0 AND (EXPOSURE > 5 OR INTERVAL < 5) AND FEED1 = 0 AND FEED2 <= 0",
)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_equal_taql_on_every_layout(ms_factory, layout: str) -> None:
    ms = str(ms_factory(layout))
    ds = skyplug.open(ms)
    from casacore import tables

    with tables.table(ms, ack=False) as t:
        tmid = float(np.median(t.getcol("TIME")))
    for text in (*PREDICATES, f"TIME >= {tmid!r}", f"TIME < {tmid!r} AND ANTENNA1 = 1"):
        want = taql_rows(ms, text)
        for by, n in (("rows", 3), ("time", 2), ("antenna1", 4)):
            if not len(want):
                with pytest.raises(SkyplugError, match="no row matches"):
                    ds.plan(by, n, where=text)
                continue
            assert np.array_equal(loaded_rows(ds, by, n, text), want), (layout, text, by)


def test_worker_rechecks_the_predicate_it_carries(tcsm) -> None:
    """A descriptor whose predicate was changed after planning fails to load, in one line."""
    import dataclasses

    p = tcsm.plan("rows", 1, where="ANTENNA1 < 2", columns=["TIME"])[0]
    for text, error in (("ANTENNA1 < 3", "were planned"), ("ANTENNA1 = 1; DROP", "position 12")):
        tampered = dataclasses.replace(p, selection={**p.selection, "where": text})
        with pytest.raises(SkyplugError, match=error) as info:
            load_partition(tampered)
        assert "\n" not in str(info.value)
