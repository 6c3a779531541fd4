"""Session fixtures: Measurement Sets of every layout, generated once with python-casacore."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("casacore.tables")

from skyplug.synthetic.ms import make_ms, zip_ms


@pytest.fixture(scope="session")
def ms_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``ms_factory(layout, zip=None|"stored"|"deflated")``: a cached MS (or zip) of that layout."""
    root = tmp_path_factory.mktemp("ms")
    made: dict[tuple[str, str | None], Path] = {}

    def get(layout: str, zip: str | None = None) -> Path:
        key = (layout, zip)
        if key not in made:
            ms = root / layout / f"{layout}.ms"
            if not ms.exists():
                ms.parent.mkdir(parents=True, exist_ok=True)
                make_ms(ms, layout)
            made[key] = ms if zip is None else zip_ms(ms, root / layout / f"{layout}.{zip}.ms.zip", zip)
        return made[key]

    return get


def reference(ms: Path, rows: np.ndarray, chan: list[int] | None = None) -> dict[str, np.ndarray]:
    """python-casacore's values of every defined main-table column for ``rows`` of the whole MS.

    Built row by row: a whole-column ``getcol`` is wrong when cell shapes vary. A column with
    no cell in these rows is absent; one with cells in some rows only holds zeros elsewhere and
    comes with ``<COL>_DEFINED`` (casacore's ``iscelldefined`` per row).
    """
    from casacore import tables

    out: dict[str, np.ndarray] = {}
    with tables.table(str(ms), ack=False) as tab:
        cell = tab.getcell("FLAG", int(rows[0])).shape if len(rows) else None  # the window's (chan, corr)
        for col in tab.colnames():
            defined = np.array([tab.iscelldefined(col, int(r)) for r in rows], bool)
            if not defined.any():
                continue
            cells = [tab.getcol(col, int(r), 1) for r, d in zip(rows, defined, strict=True) if d]
            value = np.concatenate(cells)
            if not defined.all():
                full = np.zeros((len(rows), *value.shape[1:]), value.dtype)
                full[defined] = value
                value = full
                out[col + "_DEFINED"] = defined
            if chan is not None and value.ndim == 3 and value.shape[1:] == cell:  # (chan, corr) cells only
                value = value[:, chan[0] : chan[1]]
            elif chan is not None and value.ndim == 4 and value.shape[2:] == cell:  # FLAG_CATEGORY
                value = value[:, :, chan[0] : chan[1]]
            out[col] = value
    return out


def all_rows(got: dict[str, np.ndarray]) -> np.ndarray:
    """The row numbers a load returned, over all its DATA_DESC_ID groups, sorted."""
    from skyplug.plugins.formats.ms.load import groups

    return np.sort(np.concatenate([g["ROWID"] for g in groups(got).values()]))


EXTRAS = {"ROWID", "CHAN_FREQ", "ANTENNA_NAME", "ANTENNA_POSITION"}


def assert_equal_columns(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Every reference column is present and equal, dtype included.

    Floating and complex values are compared bit for bit: NaN equals NaN only with the same
    payload, in the same part of a complex value; -0.0 differs from 0.0.
    """
    assert set(got) - EXTRAS == set(want), (sorted(set(got) - EXTRAS), sorted(want))  # nothing invented
    for col, value in want.items():
        assert col in got, f"column {col} missing"
        assert got[col].dtype == value.dtype, (col, got[col].dtype, value.dtype)
        assert got[col].shape == value.shape, (col, got[col].shape, value.shape)
        if value.dtype.kind in "fc":
            bits = np.dtype(f"u{value.dtype.itemsize // (2 if value.dtype.kind == 'c' else 1)}")
            a, b = np.ascontiguousarray(got[col]), np.ascontiguousarray(value)
            assert np.array_equal(a.view(bits), b.view(bits)), f"column {col} differs"
        else:
            assert np.array_equal(got[col], value), f"column {col} differs"


def fetched_buffer(value: np.ndarray) -> object:
    """The buffer a fetch read an array's tiles into when the array is a view of it, else None
    (the array is a copy, or a view of one)."""
    owner: object = value
    while isinstance(owner, np.ndarray):
        owner = owner.base
    return owner.obj if isinstance(owner, memoryview) else None


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's temporary mirrors go to a folder of its own, so "nothing left behind" checks
    see only that test's files, whatever else runs on the machine."""
    folder = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
