"""``skyplug.xds_from_ms`` against dask-ms's on the local MS, lazily from S3 (prefix and zip)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import skyplug
from skyplug.core.dataset import Dataset, bytes_read
from skyplug.core.errors import SkyplugError

daskms = pytest.importorskip("daskms")

GROUPINGS = [
    {},
    {"group_cols": ["FIELD_ID", "DATA_DESC_ID", "SCAN_NUMBER"], "index_cols": ["TIME", "ANTENNA2"]},
]


def _value(xda: Any) -> tuple[str, Any]:
    """("ok", computed DataArray) or ("error", None) when computing it fails."""
    try:
        return "ok", xda.compute()
    except Exception as exc:  # dask-ms raises casacore's RuntimeError, skyplug a SkyplugError
        return "error", exc


def casacore_values(ms: str, name: str, rows: np.ndarray) -> np.ndarray:
    from casacore import tables

    with tables.table(ms, ack=False) as t:
        return np.concatenate([t.getcol(name, int(r), 1) for r in rows])


def assert_same(ours: list[Any], theirs: list[Any], ms: str | None = None) -> None:
    """Same datasets: attrs, variables, dims, chunks, dtypes and values. Where dask-ms fails to
    compute a column, skyplug fails in one line too, or (``ms`` given) equals python-casacore."""
    assert len(ours) == len(theirs)
    for x, y in zip(ours, theirs, strict=True):
        assert x.attrs == y.attrs
        assert set(x.data_vars) == set(y.data_vars) and set(x.coords) == set(y.coords) == {"ROWID"}
        assert dict(x.sizes) == dict(y.sizes)
        assert x.ROWID.dtype == y.ROWID.dtype and np.array_equal(x.ROWID.values, y.ROWID.values)
        assert x.ROWID.data.chunks == y.ROWID.data.chunks
        for name in y.data_vars:
            assert x[name].dims == y[name].dims, name
            assert x[name].data.chunks == y[name].data.chunks, name
            (kx, vx), (ky, vy) = _value(x[name]), _value(y[name])
            if ky == "ok":
                assert kx == "ok", (name, vx)
                assert x[name].dtype == y[name].dtype == vx.dtype == vy.dtype, name
                assert np.array_equal(vx.values, vy.values, equal_nan=True), name
            elif kx == "error":
                assert isinstance(vx, SkyplugError) and "\n" not in str(vx), name
            else:  # dask-ms cannot read it (uChar columns): python-casacore's values
                assert ms is not None, (name, vy)
                want = casacore_values(ms, name, x.ROWID.values)
                assert vx.dtype == x[name].dtype == want.dtype and np.array_equal(vx.values, want), name


@pytest.mark.parametrize("layout", ["tcsm", "chansplit", "casa", "bda", "flagged"])
@pytest.mark.parametrize("grouping", GROUPINGS, ids=["default", "scan-time"])
def test_equal_to_daskms_on_the_local_ms(ms_factory, layout: str, grouping: dict[str, Any]) -> None:
    ms = str(ms_factory(layout))
    ours = skyplug.xds_from_ms(ms, chunks={"row": 100}, **grouping)
    theirs = daskms.xds_from_ms(ms, chunks={"row": 100}, **grouping)
    assert all(d.DATA.data.npartitions >= 1 for d in ours)
    assert_same(ours, theirs, ms)


@pytest.mark.parametrize("packed", [None, "stored"])
def test_keywords_as_daskms(ms_factory, packed: str | None) -> None:
    ms = str(ms_factory("casa"))
    uri = str(ms_factory("casa", zip=packed)) if packed else ms
    _, table_kw, column_kw = skyplug.xds_from_ms(uri, table_keywords=True, column_keywords=True)
    _, ref_table, ref_columns = daskms.xds_from_ms(ms, table_keywords=True, column_keywords=True)
    assert column_kw == ref_columns and column_kw["UVW"]["QuantumUnits"] == ["m", "m", "m"]
    assert set(table_kw) == set(ref_table) and table_kw["MS_VERSION"] == ref_table["MS_VERSION"]
    for key, value in ref_table.items():
        if isinstance(value, str) and value.startswith("Table: "):  # the MS's own path, not a cache's
            assert table_kw[key] == f"Table: {uri}/{key}", key
    datasets, columns_only = skyplug.xds_from_ms(uri, column_keywords=True)  # as dask-ms: a pair
    assert len(datasets) == 3 and columns_only == ref_columns


def test_autocorrelations_kept(ms_factory) -> None:
    ms = str(ms_factory("flagged"))  # one timestamp of autocorrelations only
    from casacore import tables

    with tables.table(ms, ack=False) as t:
        autos = int((t.getcol("ANTENNA1") == t.getcol("ANTENNA2")).sum())
    got = sum(int((d.ANTENNA1 == d.ANTENNA2).sum()) for d in skyplug.xds_from_ms(ms))
    assert autos > 0 and got == autos


def test_columns_and_zip_local(ms_factory) -> None:
    zipped = str(ms_factory("tcsm", zip="stored"))
    (xds,) = skyplug.xds_from_ms(zipped, columns=["DATA", "TIME"], chunks={"row": 64})
    assert set(xds.data_vars) == {"DATA", "TIME"}
    (ref,) = daskms.xds_from_ms(str(ms_factory("tcsm")), columns=["DATA", "TIME"], chunks={"row": 64})
    assert_same([xds], [ref])


def test_tasks_pickle_for_process_schedulers(ms_factory) -> None:
    """Chunk tasks travel without the opened reader; a process opens its own from the partition."""
    import dask

    ms = str(ms_factory("chansplit", zip="stored"))
    (xds,) = skyplug.xds_from_ms(ms, columns=["DATA"], chunks={"row": 100})
    with dask.config.set(scheduler="processes", num_workers=2):
        got = xds.DATA.compute()
    (ref,) = daskms.xds_from_ms(str(ms_factory("chansplit")), columns=["DATA"], chunks={"row": 100})
    assert np.array_equal(got.values, ref.DATA.values, equal_nan=True)


@pytest.fixture
def targets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The targets datasets open (to read their byte counters)."""
    made: list[Any] = []
    getter = Dataset.target.fget
    assert getter is not None

    def target(self: Dataset) -> Any:
        t = getter(self)
        if not any(t is m for m in made):
            made.append(t)
        return t

    monkeypatch.setattr(Dataset, "target", property(target))
    return made


def _tiles(index: dict[str, Any], col: str, rows: range) -> int:
    """Bytes of the tiles of ``col`` holding ``rows`` (one hypercube, whole-cell tiles)."""
    (dm,) = [dm for dm in index["managers"] if dm["columns"] == [col]]
    (cube,) = dm["cubes"]
    per_tile = cube["tile"][-1]
    return (len(range(rows.start // per_tile, (rows.stop - 1) // per_tile + 1))) * cube["bucket"]


@pytest.mark.s3
@pytest.mark.parametrize("packed", ["prefix", "zip"])
def test_lazy_chunk_reads_only_its_tiles_from_s3(tmp_path, s3env, targets, packed: str) -> None:
    """One 64-row chunk of DATA fetches the DATA tiles of its rows and nothing else; then FLAG's
    chunk only its FLAG tiles; TIME (small files) nothing."""
    from skyplug.synthetic.ms import make_ms, zip_ms

    ms = make_ms(tmp_path / "big.ms", "tcsm", ntime=40, nchan=64)  # 1.7 MB of DATA: beyond any tail read
    local = zip_ms(ms, tmp_path / "big.ms.zip", "stored") if packed == "zip" else ms
    uri = s3env.upload(local, local.name)
    (xds,) = skyplug.xds_from_ms(uri, chunks={"row": 64})
    (target,) = targets
    index = skyplug.open(str(ms)).index()
    opened = bytes_read(target)
    assert xds.DATA.data.numblocks[0] == -(-index["nrow"] // 64)
    data = xds.DATA.isel(row=slice(64, 128)).compute()
    want = _tiles(index, "DATA", range(64, 128))
    assert bytes_read(target) - opened == want < index["big_sizes"]["table.f3_TSM0"] // 4
    flag = xds.FLAG.isel(row=slice(64, 128)).compute()
    want += _tiles(index, "FLAG", range(64, 128))
    assert bytes_read(target) - opened == want
    (ref,) = daskms.xds_from_ms(str(ms), chunks={"row": 64})
    assert np.array_equal(data.values, ref.DATA.values[64:128], equal_nan=True)
    assert np.array_equal(flag.values, ref.FLAG.values[64:128])
    time = xds.TIME.compute()  # a column in the small files: no bulk bytes at all
    assert bytes_read(target) - opened == want
    assert np.array_equal(time.values, ref.TIME.values)
    assert_same([xds], [ref], str(ms))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"columns": ["NOPE"]}, "columns names no column 'NOPE'"),
        ({"group_cols": ["BOGUS"]}, "group_cols names no column 'BOGUS'"),
        ({"index_cols": "XTIME"}, "index_cols names no column 'XTIME'"),
        ({"chunks": {"row": 0}}, "chunks['row'] must be a positive integer"),
        ({"chunks": "lots"}, "chunks must be a dict"),
    ],
)
def test_bad_input_is_one_line(ms_factory, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SkyplugError) as err:
        skyplug.xds_from_ms(str(ms_factory("tcsm")), **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_not_an_ms_is_one_line(tmp_path) -> None:
    path = tmp_path / "x.fits"
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(path)
    with pytest.raises(SkyplugError, match="reads Measurement Sets, not fits") as err:
        skyplug.xds_from_ms(str(path))
    assert "\n" not in str(err.value)


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, skyplug; skyplug.xds_from_ms; print('numpy' in sys.modules, 'dask' in sys.modules)"
    light = "import sys, skyplug; print('numpy' in sys.modules, 'dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", light], capture_output=True, text=True).stdout.split() == [
        "False",
        "False",
    ]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    assert out[1] == "False"  # dask comes only when xds_from_ms runs
