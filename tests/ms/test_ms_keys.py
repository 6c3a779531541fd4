"""Partitions by metadata keys (field, scan, state, intent, observation, antenna1) and the bytes
they and ``columns=`` fetch."""

from __future__ import annotations

import base64
import json
import lzma
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.dataset import bytes_read, open_target
from skyplug.core.errors import PluginError
from skyplug.core.load import load_partition
from skyplug.core.source import Source
from skyplug.plugins.formats.ms.plan import KEYS
from skyplug.synthetic.ms import make_ms

from .conftest import all_rows, assert_equal_columns, reference

INTENTS = ("CALIBRATE_BANDPASS#ON_SOURCE", "OBSERVE_TARGET#ON_SOURCE", "OBSERVE_TARGET#ON_SOURCE")


def rekey(ms: Path) -> Path:
    """Give ``ms`` 3 scans (by time), 2 fields, 3 states (2 of one intent) and 2 observations."""
    from casacore import tables

    with tables.table(str(ms), readonly=False, ack=False) as t:
        time = t.getcol("TIME")
        tidx = np.searchsorted(np.unique(time), time)
        ntime = int(tidx.max()) + 1
        t.putcol("SCAN_NUMBER", (1 + tidx * 3 // ntime).astype(np.int32))
        t.putcol("FIELD_ID", (tidx % 2).astype(np.int32))
        t.putcol("STATE_ID", (tidx % 3).astype(np.int32))
        t.putcol("OBSERVATION_ID", (tidx >= ntime // 2).astype(np.int32))
    with tables.table(str(ms / "STATE"), readonly=False, ack=False) as s:
        s.addrows(len(INTENTS) - s.nrows())
        s.putcol("OBS_MODE", list(INTENTS))
    with tables.table(str(ms / "FIELD"), readonly=False, ack=False) as f:
        f.copyrows(f, startrowin=0, nrow=1)  # a second row like the first
    with tables.table(str(ms / "OBSERVATION"), readonly=False, ack=False) as o:
        o.copyrows(o, startrowin=0, nrow=1)  # a second row like the first
    return ms


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    """``keyed(layout)``: a re-keyed MS of that layout (tcsm: tiles of 16 rows, 21 baselines)."""
    root = tmp_path_factory.mktemp("keys")
    made: dict[str, Path] = {}

    def get(layout: str) -> Path:
        if layout not in made:
            made[layout] = rekey(make_ms(root / f"{layout}.ms", layout))
        return made[layout]

    return get


def taql_rows(ms: Path, text: str) -> np.ndarray:
    from casacore import tables

    with tables.taql(f"SELECT ROWID() AS R FROM $ms WHERE {text}", locals={"ms": str(ms)}) as t:
        return np.asarray(t.getcol("R") if t.nrows() else [], np.int64)


def plan(ds: skyplug.Dataset, by: str, n: int, **opts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ds.plan(by, n, **opts)


@pytest.mark.parametrize("layout", ["tcsm", "twospw", "dysco"])
@pytest.mark.parametrize("by", list(KEYS))
def test_one_partition_per_key_value(keyed, layout: str, by: str) -> None:
    ms = keyed(layout)
    ds = skyplug.open(str(ms))
    parts = plan(ds, by, 100, columns=["TIME"])
    col = KEYS[by]
    distinct = np.unique(_column(ms, col))
    if by == "intent":  # STATE_IDs 1 and 2 share an intent
        assert [p.selection["values"] for p in parts] == [[0], [1, 2]]
        assert [p.meta["intents"] for p in parts] == [[INTENTS[0]], [INTENTS[1]]]
        assert "2 distinct intents" in parts[0].meta["note"]
    else:
        assert [p.selection["values"] for p in parts] == [[int(v)] for v in distinct]
    seen = []
    for p in parts:
        got = all_rows(load_partition(p))
        want = taql_rows(ms, f"{col} IN [{', '.join(map(str, p.selection['values']))}]")
        assert np.array_equal(got, want), (by, p.selection["values"])
        seen.append(got)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(ds.index()["nrow"]))


def _column(ms: Path, col: str) -> np.ndarray:
    from casacore import tables

    with tables.table(str(ms), ack=False) as t:
        return t.getcol(col)


def test_key_values_grouped_into_n_whole_balanced_parts(keyed) -> None:
    ds = skyplug.open(str(keyed("tcsm")))
    parts = plan(ds, "antenna1", 2)
    values = [p.selection["values"] for p in parts]
    assert sorted(v for vs in values for v in vs) == list(range(6))  # each value whole, in one part
    rows = [p.selection["nrows"] for p in parts]  # ANTENNA1 0..5 hold 6, 5, ..., 1 baselines
    assert sum(rows) == ds.index()["nrow"] and abs(rows[0] - rows[1]) <= 6 * 12
    assert values == [[0, 1], [2, 3, 4, 5]]
    three = plan(ds, "scan", 2)
    assert [p.selection["values"] for p in three] in ([[1], [2, 3]], [[1, 2], [3]])


def test_key_partition_loads_every_column_like_casacore(keyed) -> None:
    ms = keyed("twospw")
    ds = skyplug.open(str(ms))
    for p in plan(ds, "field", 5, where="ANTENNA1 < 3"):
        got = load_partition(p)
        rows = taql_rows(ms, f"FIELD_ID IN [{p.selection['values'][0]}] AND ANTENNA1 < 3")
        assert np.array_equal(all_rows(got), rows)
        from skyplug.plugins.formats.ms.load import groups

        for g in groups(got).values():
            assert_equal_columns(g, reference(ms, g["ROWID"]))


def bulk_read(target, p) -> int:
    """Bytes the partition's load read from ``target``."""
    before = bytes_read(target)
    load_partition(p, target=target)
    return bytes_read(target) - before


def test_key_partition_fetches_only_its_tiles(keyed) -> None:
    """A scan (a third of the rows, contiguous) reads about a third of the tiles; with
    columns=["DATA"] exactly DATA's tiles that hold its rows: 16 rows x 16 chan x 4 corr x 8 bytes."""
    ms = keyed("tcsm")
    ds = skyplug.open(str(ms))
    whole = plan(ds, "rows", 1)[0].expected_bytes
    scans = plan(ds, "scan", 3)
    assert sum(p.expected_bytes for p in scans) < 1.2 * whole
    for p in scans:
        rows = all_rows(load_partition(p, target=(t := open_target(p.uri, version=p.version))))
        assert bytes_read(t) == p.expected_bytes
        data = plan(ds, "scan", 3, columns=["DATA"])[p.index]
        target = open_target(p.uri, version=p.version)
        got = load_partition(data, target=target)
        assert set(k for k in got if k not in ("ROWID", "CHAN_FREQ", "ANTENNA_NAME", "ANTENNA_POSITION")) == {
            "DATA",
            "DATA_DESC_ID",
        }
        tiles = len(np.unique(rows // 16))
        assert bytes_read(target) == data.expected_bytes == tiles * 16 * 16 * 4 * 8


def test_scattered_key_fetches_only_tiles_holding_its_rows(keyed, monkeypatch) -> None:
    """ANTENNA1 = 5 is one row per time slot: with no gap joining (max_gap 0), only the 12 tiles
    holding those rows are read, not the 3 tiles between them."""
    monkeypatch.setattr(Source, "max_gap", 0)
    ms = keyed("tcsm")
    antenna = plan(skyplug.open(str(ms)), "antenna1", 6, columns=["DATA"])[5]
    assert antenna.selection["values"] == [5] and antenna.selection["nrows"] == 12
    tiles = np.unique(taql_rows(ms, "ANTENNA1 = 5") // 16)
    assert len(tiles) == 12 and tiles[-1] - tiles[0] + 1 == 15
    target = open_target(antenna.uri, version=antenna.version)
    got = load_partition(antenna, target=target)
    assert bytes_read(target) == antenna.expected_bytes == len(tiles) * 8192
    assert np.array_equal(got["DATA"], reference(ms, got["ROWID"])["DATA"])


def test_index_carries_keys_and_intents(keyed) -> None:
    ds = skyplug.open(str(keyed("tcsm")))
    index = ds.index()
    assert ds.format.version >= 5 and index["format_version"] == ds.format.version  # v4 caches rebuild
    assert {"ANTENNA1", "ANTENNA2", "FIELD_ID", "SCAN_NUMBER", "STATE_ID", "OBSERVATION_ID"} <= set(
        index["keys"]
    )
    assert index["states"] == list(INTENTS)
    assert ds.format.summary(index)["key_values"] == (
        "field 2, scan 3, state 3, intent 2, observation 2, antenna1 6"
    )
    assert len(json.dumps(index["keys"])) < 8000  # a few bytes per run of equal values


def test_index_without_keys_asks_for_a_rebuild(keyed) -> None:
    ds = skyplug.open(str(keyed("tcsm")))
    index = {k: v for k, v in ds.index().items() if k != "keys"}
    with pytest.raises(PluginError, match="rebuild it"):
        ds.format.plan(index, "scan", 2)


def test_cli_partition_by_scan_with_where(keyed) -> None:
    ms = keyed("tcsm")
    cmd = [str(Path(sys.executable).parent / "skyplug"), "partition", str(ms), "--by", "scan", "-n", "3"]
    res = subprocess.run(
        [*cmd, "--where", "ANTENNA1 < 2", "--json"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    parts = json.loads(res.stdout)
    assert [p["selection"]["values"] for p in parts] == [[1], [2], [3]]
    assert all(p["selection"]["where"] == "ANTENNA1 < 2" for p in parts)
    assert sum(p["selection"]["nrows"] for p in parts) == len(taql_rows(ms, "ANTENNA1 < 2"))


def test_cli_without_n_gives_one_partition_per_value(keyed) -> None:
    ms = keyed("tcsm")
    exe = str(Path(sys.executable).parent / "skyplug")
    res = subprocess.run(
        [exe, "partition", str(ms), "--by", "antenna1", "--json"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "not" not in res.stderr, res.stderr  # no "fewer partitions" warning
    assert [p["selection"]["values"] for p in json.loads(res.stdout)] == [[a] for a in range(6)]
    res = subprocess.run(
        [exe, "partition", str(ms), "--by", "time"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and "-n is required for --by time" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_columns_leaving_out_dysco_fetch_only_its_header(keyed) -> None:
    """columns= without the Dysco columns: the Dysco file's header alone (casacore needs it to open
    the MS), plus the tiles of the columns asked for."""
    ms = keyed("dysco")
    ds = skyplug.open(str(ms))
    dm = next(d for d in ds.index()["managers"] if d["type"] == "DyscoStMan")
    p = plan(ds, "scan", 3, columns=["TIME"])[1]
    assert p.expected_bytes == dm["header_size"]
    target = open_target(p.uri, version=p.version)
    got = load_partition(p, target=target)
    assert bytes_read(target) == p.expected_bytes
    assert np.array_equal(got["TIME"], reference(ms, got["ROWID"])["TIME"])
    uvw = plan(ds, "scan", 3, columns=["UVW"])[1]
    target = open_target(uvw.uri, version=uvw.version)
    got = load_partition(uvw, target=target)
    assert bytes_read(target) == uvw.expected_bytes < plan(ds, "scan", 3)[1].expected_bytes / 4
    assert np.array_equal(got["UVW"], reference(ms, got["ROWID"])["UVW"])


@pytest.mark.parametrize(
    "values",
    [
        np.array([3, 3, 3], np.int32),
        np.array([0, 1, 2, 0, 1, 2, 5, 70000, -3], np.int32),
        np.array([False, True, True], bool),
        np.array([10.0, 10.0, 9.5]),
        np.array([], np.int32),
        np.array([2**40, 0, -(2**40)], np.int64),
    ],
)
def test_pack_round_trips(values: np.ndarray) -> None:
    from skyplug.plugins.formats.ms.index import pack, unpack

    packed = json.loads(json.dumps(pack(values)))
    got = unpack(packed)
    assert got.dtype == values.dtype and np.array_equal(got, values)


def test_corrupt_packed_keys_are_one_line(keyed) -> None:
    from skyplug.plugins.formats.ms.index import pack

    ds = skyplug.open(str(keyed("tcsm")))
    index = ds.index()
    bomb = pack(np.zeros(10, np.int32) + np.arange(10))
    bomb["xz"] = base64.b64encode(lzma.compress(bytes(50_000_000))).decode()
    for bad in (bomb, {"dtype": "<i4", "n": 3}, {**bomb, "xz": "!!"}):
        broken = {**index, "keys": {**index["keys"], "SCAN_NUMBER": bad}}
        with pytest.raises(PluginError, match="SCAN_NUMBER") as info:
            ds.format.plan(broken, "scan", 2)
        assert "\n" not in str(info.value)


def test_fetch_as_ms_writes_the_rows_of_key_and_where(keyed, tmp_path: Path) -> None:
    """``--as ms`` of a scan partition with --where: a valid MS of exactly TaQL's rows."""
    from casacore import tables

    ms = keyed("tcsm")
    exe = str(Path(sys.executable).parent / "skyplug")
    args = ["fetch", str(ms), "--by", "scan", "--where", "ANTENNA2 IN (1, 4)", "--only", "1"]
    res = subprocess.run(
        [exe, *args, "--out", str(tmp_path / "o"), "--as", "ms", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    text = "SCAN_NUMBER = 2 AND ANTENNA2 IN (1, 4)"
    with (
        tables.taql(f"SELECT FROM $ms WHERE {text}", locals={"ms": str(ms)}) as want,
        tables.table(str(tmp_path / "o" / "part-0001.ms"), ack=False) as got,
    ):
        assert got.nrows() == want.nrows() > 0
        for col in ("TIME", "ANTENNA1", "ANTENNA2", "DATA", "FLAG", "UVW"):
            assert np.array_equal(got.getcol(col), want.getcol(col), equal_nan=col != "FLAG"), col
