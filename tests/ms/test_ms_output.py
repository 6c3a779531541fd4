"""``--as ms`` writes a standalone, valid MS; ``--as npz`` the arrays; nothing else is left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.load import fetch_partition
from tests.ms.conftest import all_rows, assert_equal_columns, reference


def temp_mirrors() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("skyplug-ms-*")}


def assert_written(out: Path, ms: Path, rows: np.ndarray) -> None:
    """Row i of the written MS ``out`` equals row ``rows[i]`` of ``ms`` (per DATA_DESC_ID, as
    cell shapes may differ between windows; undefined cells must stay undefined)."""
    from casacore import tables

    with tables.table(str(out), ack=False) as tab:
        assert tab.nrows() == len(rows)
        ddid = tab.getcol("DATA_DESC_ID")
    for d in np.unique(ddid):
        at = np.flatnonzero(ddid == d)
        assert_equal_columns(reference(out, at), reference(ms, rows[at]))


@pytest.mark.parametrize(
    "layout", ["tcsm", "chansplit", "tssm", "dysco", "ssm", "twospw", "unsorted", "casa", "casavla", "bda4"]
)
def test_as_ms_is_exact_and_complete(ms_factory, tmp_path: Path, layout: str) -> None:
    from casacore import tables

    ms = ms_factory(layout)
    before = temp_mirrors()
    parts = skyplug.open(str(ms)).plan("time", 3)
    p = parts[1]
    report = fetch_partition(p, tmp_path, as_="ms")
    out = Path(report["outputs"][0])
    assert out == tmp_path / "part-0001.ms"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["part-0001.ms"]
    assert temp_mirrors() <= before
    rows = all_rows(p.load())
    assert_written(out, ms, rows)
    with tables.table(str(ms), ack=False) as src, tables.table(str(out), ack=False) as dst:
        subs = [
            k
            for k in src.keywordnames()
            if isinstance(src.getkeyword(k), str) and src.getkeyword(k).startswith("Table:")
        ]
        assert subs and set(subs) <= set(dst.keywordnames())
        for name in subs:
            with tables.table(str(ms / name), ack=False) as a, tables.table(str(out / name), ack=False) as b:
                assert a.nrows() == b.nrows(), name
                assert sorted(a.colnames()) == sorted(b.colnames()), name
        assert dst.nrows() == len(rows)


def test_as_ms_from_zip(ms_factory, tmp_path: Path) -> None:
    ms = ms_factory("chansplit")
    p = skyplug.open(str(ms_factory("chansplit", zip="stored"))).plan("time", 4)[2]
    out = Path(fetch_partition(p, tmp_path, as_="ms")["outputs"][0])
    assert_written(out, ms, p.load()["ROWID"])


def test_as_ms_replaces_previous_output(ms_factory, tmp_path: Path) -> None:
    ms = ms_factory("tcsm")
    parts = skyplug.open(str(ms)).plan("time", 2)
    fetch_partition(parts[0], tmp_path, as_="ms")
    fetch_partition(parts[0], tmp_path, as_="ms")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["part-0000.ms"]
    assert_written(tmp_path / "part-0000.ms", ms, parts[0].load()["ROWID"])


def test_as_npz(ms_factory, tmp_path: Path) -> None:
    ms = ms_factory("chansplit")
    p = skyplug.open(str(ms)).plan("chan", 2)[1]
    path = Path(fetch_partition(p, tmp_path, as_="npz")["outputs"][0])
    assert path.name == "part-0001.npz"
    with np.load(path) as npz:
        got = {k: npz[k] for k in npz.files}
    assert {
        "DATA",
        "FLAG",
        "WEIGHT_SPECTRUM",
        "UVW",
        "TIME",
        "ANTENNA1",
        "ANTENNA2",
        "CHAN_FREQ",
        "ANTENNA_NAME",
        "ANTENNA_POSITION",
    } <= set(got)
    assert_equal_columns(got, reference(ms, got["ROWID"], p.selection["chan"]))
