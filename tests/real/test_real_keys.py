"""where= and key partitions on every MS of the real corpus: the rows are casacore TaQL's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import skyplug
from skyplug.core.errors import SkyplugError
from skyplug.core.load import load_partition
from skyplug.plugins.formats.ms.plan import KEYS

from .conftest import MS


def taql_rows(ms: str, text: str) -> np.ndarray:
    from casacore import tables

    with tables.taql(f"SELECT ROWID() AS R FROM $ms WHERE {text}", locals={"ms": ms}) as t:
        return np.asarray(t.getcol("R") if t.nrows() else [], np.int64)


def loaded_rows(parts) -> list[np.ndarray]:
    out = []
    for p in parts:
        got = load_partition(p)
        rows = np.sort(np.concatenate([v for k, v in got.items() if k.split("@")[0] == "ROWID"]))
        assert len(rows) == p.selection["nrows"]
        out.append(rows)
    return out


def predicates(ms: str) -> list[str]:
    """A few predicates over the columns every MS has, some cut at the MS's own median values."""
    from casacore import tables

    with tables.table(ms, ack=False) as t:
        tmid = float(np.median(t.getcol("TIME")))
        amid = int(np.median(t.getcol("ANTENNA1")))
    return [
        f"ANTENNA1 <= {amid} AND ANTENNA2 > {amid}",
        f"TIME >= {tmid!r} OR (SCAN_NUMBER IN (1, 3, 5) AND NOT FLAG_ROW = TRUE)",
        "FIELD_ID = 0 AND DATA_DESC_ID BETWEEN 0 AND 1 AND EXPOSURE > 0",
        f"NOT (ANTENNA1 = {amid}) AND (INTERVAL < 1e9 OR ARRAY_ID != 0)",
    ]


@pytest.mark.parametrize("key", MS)
def test_where_rows_equal_taql(real_ms, key: str) -> None:
    ms = str(real_ms(key))
    ds = skyplug.open(ms)
    for text in predicates(ms):
        want = taql_rows(ms, text)
        if not len(want):
            with pytest.raises(SkyplugError, match="no row matches"):
                ds.plan("rows", 2, where=text)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts = ds.plan("time", 3, where=text, columns=["TIME"])
        got = np.sort(np.concatenate(loaded_rows(parts)))
        assert np.array_equal(got, want), (key, text)


@pytest.mark.parametrize("key", MS)
def test_key_partitions_equal_taql(real_ms, key: str) -> None:
    ms = str(real_ms(key))
    ds = skyplug.open(ms)
    nrow = ds.index()["nrow"]
    for by, n in (("scan", 64), ("field", 64), ("state", 64), ("antenna1", 8)):  # antennas grouped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts = ds.plan(by, n, columns=["TIME"])
        rows = loaded_rows(parts)
        for p, got in zip(parts, rows, strict=True):
            values = ", ".join(map(str, p.selection["values"]))
            assert np.array_equal(got, taql_rows(ms, f"{KEYS[by]} IN [{values}]")), (key, by, values)
        assert np.array_equal(np.sort(np.concatenate(rows)), np.arange(nrow)), (key, by)


@pytest.mark.parametrize(
    ("key", "by", "n", "text"),
    [
        ("wsrt_tndppp", "scan", 4, None),  # 18 scans in 4 groups
        ("paper_zen", "scan", 8, "NOT (ANTENNA1 = 0)"),
        ("lofar_dysco", "antenna1", 3, "ANTENNA2 < 20 OR FLAG_ROW = TRUE"),
        ("vla_day2", "antenna1", 2, "ANTENNA1 BETWEEN 2 AND 9"),
    ],
)
def test_key_partitions_load_every_column_like_casacore(
    real_ms, ms_reference, key: str, by: str, n: int, text: str | None
) -> None:
    """Whole loads (every column, tiles or Dysco blocks fetched) of key partitions, bit for bit."""
    from tests.real.test_real_ms import check_arrays, groups

    ms = str(real_ms(key))
    ref = ms_reference(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = skyplug.open(ms).plan(by, n, where=text)
    assert 1 < len(parts) <= n
    seen = []
    for p in parts:
        for _, nrows, arrays in groups(p, load_partition(p)):
            assert check_arrays(nrows, None, arrays, ref) == [], (key, p.index)
            seen.append(np.asarray(arrays["ROWID"]))
    want = taql_rows(ms, text or "TRUE")
    assert np.array_equal(np.sort(np.concatenate(seen)), want)
