"""The real-data corpus (tests/data/real): checked against MANIFEST.sha256, unpacked once per session.

Every test under tests/real is marked ``real``. References come from python-casacore, read per row
or per cell (a whole-column ``getcol`` is wrong on variable-shape columns), and are compared bit for
bit, so NaN payloads, -0.0 and undefined cells count.
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "real"
MANIFEST = DATA / "MANIFEST.sha256"
# every MS of the corpus: key -> the folder name inside its tarball (see SOURCES.md)
MS = {
    "alma_x5707": "X5707_1spw_1scan_10chan_1time_1bl_noatm.ms",
    "lofar_bda": "tNDPPP-bda.MS",
    "lofar_demix": "tDemix.MS",
    "lofar_dysco": "selfcal_test2.ms",
    "lofar_dysco_partial": "selfcal_test.ms",
    "lofar_generic": "tNDPPP-generic.MS",
    "lwasv": "test_adp4_0_00300673800807520000_58342_05_00_14.ms",
    "meerkat_dish": "tDish.MS",
    "mwa_birli": "1090008640_birli.ms",
    "oskar_sim": "tOSKAR.in_MS",
    "ovrolwa": "2018-03-21-01_26_33_0004384620257280_000000_downselected.ms",
    "paper_zen": "zen.2456865.60537.xy.uvcRREAAM.ms",
    "vla_day2": "day2_TDEM0003_10s_norx_1src_1spw.ms",
    "wsrt_bda_input": "tNDPPP_bda_tmp.MS",
    "wsrt_tndppp": "tNDPPP_tmp.MS",
}
H5PARM = ("dirtest1", "fulljones1", "fulljones2")
FITS = {
    "ecallisto": "ecallisto_BIR_20110607_062400_10.fits",
    "hera_beam": "hera_beam.fits",
    "hera_gain": "hera_gain.calfits",
    "wsclean_image": "lsmtool_wsclean_image.fits",
    "mwa_metafits": "mwa_1131733552.metafits",
    "mwa_gpubox": "mwa_gpubox01.fits",
}


# S3 backends other than moto run these MSs only (moto runs the whole corpus): one per
# storage-manager family and quirk, to keep the run short
SWIFT_SUBSET = ("lofar_dysco", "lofar_bda", "vla_day2", "paper_zen", "lwasv")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything here ``real``; keep the full MS matrix on moto, the subset elsewhere."""
    here = Path(__file__).parent
    keep, drop = [], []
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            keep.append(item)
            continue
        item.add_marker(pytest.mark.real)
        spec = getattr(item, "callspec", None)
        params = spec.params if spec else {}
        backend, key = params.get("s3_backend"), params.get("key")
        other = backend not in (None, "moto") and key in MS and key not in SWIFT_SUBSET
        (drop if other else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real: runs on the real-data corpus in tests/data/real")


def _manifest() -> dict[str, str]:
    """Relative path -> SHA-256 of every corpus file."""
    out = {}
    for line in MANIFEST.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        out[name.removeprefix("./")] = digest
    return out


def _checked(rel: str) -> Path:
    """A corpus file whose SHA-256 matches the manifest (a mismatch fails the test, never skips it)."""
    path = DATA / rel
    want = _manifest()[rel]
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    assert got == want, f"{path}: SHA-256 {got}, manifest says {want}"
    return path


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real")


@pytest.fixture(scope="session")
def real_ms(corpus_dir: Path) -> Any:
    """``real_ms(key)`` -> the unpacked MS folder (cached for the session)."""
    made: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in made:
            root = corpus_dir / "ms" / key
            if not root.exists():
                with tarfile.open(_checked(f"ms/{key}.tar.xz")) as tar:
                    tar.extractall(root, filter="data")
            made[key] = root / MS[key]
        return made[key]

    return get


@pytest.fixture(scope="session")
def real_ms_zip(real_ms: Any, corpus_dir: Path) -> Any:
    """``real_ms_zip(key)`` -> a STORED ``.ms.zip`` of that MS, members ``<name>/<relpath>``."""
    from skyplug.synthetic.ms import zip_ms

    made: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in made:
            ms = real_ms(key)
            made[key] = zip_ms(ms, corpus_dir / "ms" / f"{key}.ms.zip", "stored")
        return made[key]

    return get


def _unxz(rel: str, out: Path) -> Path:
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with lzma.open(_checked(rel)) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return out


@pytest.fixture(scope="session")
def real_h5parm(corpus_dir: Path) -> Any:
    """``real_h5parm(key)`` -> the unpacked h5parm file."""
    return lambda key: _unxz(f"h5parm/{key}.h5.xz", corpus_dir / "h5parm" / f"{key}.h5")


@pytest.fixture(scope="session")
def real_fits(corpus_dir: Path) -> Any:
    """``real_fits(key)`` -> the unpacked FITS file."""
    return lambda key: _unxz(f"fits/{FITS[key]}.xz", corpus_dir / "fits" / FITS[key])


NUMERIC = (
    "boolean",
    "uchar",
    "short",
    "ushort",
    "int",
    "uint",
    "int64",
    "float",
    "double",
    "complex",
    "dcomplex",
)
Column = np.ndarray | list  # a whole fixed-shape column, or one value per row (None: undefined)


@dataclass
class TableRef:
    """python-casacore's view of one table: per column, the whole array where every cell has one
    shape, else one value per row (None where the cell is undefined)."""

    nrow: int
    columns: dict[str, Column] = field(default_factory=dict)

    def rows(self, rows: np.ndarray) -> TableRef:
        """The same columns restricted to ``rows``."""
        pick = {
            c: v[rows] if isinstance(v, np.ndarray) else [v[int(r)] for r in rows]
            for c, v in self.columns.items()
        }
        return TableRef(len(rows), pick)


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, dict) else np.asarray(value)


def read_table(path: Path) -> TableRef:
    """Every cell of every column: whole columns where the shape is fixed, cells where it may vary."""
    from casacore import tables

    with tables.table(str(path), ack=False) as tab:
        ref = TableRef(tab.nrows())
        for col in tab.colnames():
            desc = tab.getcoldesc(col)
            if not ref.nrow:
                ref.columns[col] = []
                continue
            fixed = "ndim" not in desc or ("shape" in desc and not tab.isvarcol(col))
            if fixed and desc.get("valueType") != "record":
                whole = tab.getcol(col)  # scalars and fixed-shape arrays: every cell defined, one shape
                if isinstance(whole, np.ndarray) and whole.ndim and len(whole) == ref.nrow:
                    ref.columns[col] = whole
                    continue
                if isinstance(whole, list) and len(whole) == ref.nrow:
                    ref.columns[col] = [_cell(v) for v in whole]
                    continue
            defined = [tab.iscelldefined(col, r) for r in range(ref.nrow)]
            if all(defined) and desc.get("valueType") in NUMERIC:
                cells = tab.getvarcol(col)  # {"r1": cell with a leading axis of 1, ...}
                ref.columns[col] = [_cell(cells[f"r{r + 1}"])[0] for r in range(ref.nrow)]
            else:
                ref.columns[col] = [_cell(tab.getcell(col, r)) if d else None for r, d in enumerate(defined)]
    return ref


def want_columns(ref: TableRef, rows: np.ndarray, chan: list[int] | None = None) -> dict[str, Any]:
    """Column -> stacked reference values for ``rows``, a channel block cutting the columns shaped
    like FLAG (chan, corr) only (LOFAR_FULL_RES_FLAG's axes are not channels); None: every cell
    undefined; "mixed": defined in some rows only."""
    out: dict[str, Any] = {}
    picked = ref.rows(rows).columns
    flag = picked.get("FLAG")
    cell = (
        np.asarray(flag).shape[1:]
        if isinstance(flag, np.ndarray)
        else (np.asarray(flag[0]).shape if flag and flag[0] is not None else None)
    )
    for col, cells in picked.items():
        if isinstance(cells, list):
            if all(c is None for c in cells):
                out[col] = None
                continue
            if any(c is None for c in cells):
                out[col] = "mixed"
                continue
            value = np.stack([np.asarray(c) for c in cells])
        else:
            value = cells
        if chan is not None and value.ndim == 3 and value.shape[1:] == cell:  # (row, chan, corr) columns
            value = value[:, chan[0] : chan[1]]
        out[col] = value
    return out


def bits_equal(a: Any, b: Any) -> bool:
    """Same dtype, shape and bytes (NaN payloads and signed zeros included)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fcbiu":
        return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    return bool(np.array_equal(a, b))


def diff(col: str, got: np.ndarray, want: np.ndarray) -> str:
    """One line saying how a column differs: dtype, shape or the first differing row."""
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"{col}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}"
    same = np.array([bits_equal(g, w) for g, w in zip(got, want, strict=True)])
    bad = np.flatnonzero(~same)
    i = bad[0]
    return f"{col}: {len(bad)} of {len(same)} rows differ, first at {i}: got {got[i]!r} want {want[i]!r}"


def compare_table(got: TableRef, want: TableRef, name: str) -> list[str]:
    """Every column and cell of two tables, undefined cells included; the differences found."""
    problems = []
    if got.nrow != want.nrow:
        return [f"{name}: {got.nrow} rows, want {want.nrow}"]
    if sorted(got.columns) != sorted(want.columns):
        problems.append(f"{name}: columns {sorted(got.columns)}, want {sorted(want.columns)}")
    for col, cells in want.columns.items():
        mine = got.columns.get(col)
        if mine is None:
            continue
        if isinstance(mine, np.ndarray) and isinstance(cells, np.ndarray):
            if not bits_equal(mine, cells):
                problems.append(f"{name}.{diff(col, mine, cells)}"[:300])
            continue
        for r, (g, w) in enumerate(zip(mine, cells, strict=True)):
            if (g is None) != (w is None):
                problems.append(f"{name}.{col} row {r}: defined {g is not None}, want {w is not None}")
                break
            if w is not None and not bits_equal(g, w):
                problems.append(f"{name}.{col} row {r}: got {g!r}, want {w!r}"[:300])
                break
    return problems


@cache
def source_table(path: Path) -> TableRef:
    """``read_table`` of a corpus table, read once per session (the corpus never changes)."""
    return read_table(path)


def subtable_names(ms: Path) -> list[str]:
    """Subtable keywords of an MS's main table whose folder exists."""
    from casacore import tables

    with tables.table(str(ms), ack=False) as tab:
        return sorted(
            k
            for k in tab.keywordnames()
            if isinstance(tab.getkeyword(k), str) and tab.getkeyword(k).startswith("Table:")
        )


@pytest.fixture(scope="session")
def ms_reference(real_ms: Any) -> Any:
    """``ms_reference(key)`` -> the main table's TableRef (read once)."""
    return lambda key: source_table(real_ms(key))


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary mirrors of each test go to a folder of its own."""
    folder = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
