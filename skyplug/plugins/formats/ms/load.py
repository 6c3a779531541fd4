"""Load a partition: fetch its ranges, select its rows, decode (numpy for tiles, else casacore).

Outputs: named numpy arrays in the dask-ms row schema (dims row, chan, corr; MS column names,
plus ROWID, CHAN_FREQ, ANTENNA_NAME, ANTENNA_POSITION), an xarray Dataset of the same, or a
standalone MS (``--as ms``) deep-copied from the mirror and renamed into place atomically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError
from skyplug.core.partition import Partition
from skyplug.core.source import Tree
from skyplug.plugins.formats.ms import mirror, tsm
from skyplug.plugins.formats.ms.layout import TILED
from skyplug.plugins.formats.ms.plan import requests

EXTRA_DIMS = {"UVW": ("row", "uvw"), "CHAN_FREQ": ("chan",), "ANTENNA_NAME": ("antenna",),
              "ANTENNA_POSITION": ("antenna", "xyz"), "ROWID": ("row",)}


def _prepare(p: Partition, tree: Tree) -> tuple[str, Path, dict[str, int], list[tuple[str, int, int]]]:
    """(MS root in the tree, cached small files, bulk file sizes, the partition's requests)."""
    root, big = p.meta["root"], p.meta["big"]
    members = tree.members()
    missing = [b for b in big if root + b not in members]
    if missing:
        raise FormatError(tree.uri, f"bulk file {root}{missing[0]} is missing")
    small, _ = mirror.ensure_small(tree, tree.uri, tree.version, root, big)
    return root, small, {b: members[root + b] for b in big}, requests(p)


@contextlib.contextmanager
def opened(p: Partition, tree: Tree, for_copy: bool = False) -> Iterator[tuple[Any, np.ndarray, Path]]:
    """(casacore table on the mirror, the partition's rows, mirror path); all removed afterwards.

    ``for_copy`` drops keywords naming absent subtables from the mirror, which a deep copy
    would otherwise fail on (the source MS lacks them too).
    """
    root, small, sizes, reqs = _prepare(p, tree)
    datas = tree.read_ranges(reqs) if reqs else []
    pieces = [(m[len(root):], s, d) for (m, s, _), d in zip(reqs, datas, strict=True)]
    with mirror.sparse_mirror(small, sizes, pieces) as ms:
        if for_copy:
            mirror.drop_dangling_subtables(ms)
        tab = mirror.open_table(ms, tree.uri)
        try:
            yield tab, select_rows(tab, p, tree.uri), ms
        finally:
            tab.close()


def select_rows(tab: Any, p: Partition, uri: str) -> np.ndarray:
    """Rows of the partition: its span filtered by time window, DATA_DESC_ID and baselines."""
    sel = p.selection
    a, b = sel["span"]
    keep = np.ones(b - a, bool)
    if "time" in sel:
        time = tab.getcol("TIME", a, b - a)
        keep &= (time >= sel["time"][0]) & (time <= sel["time"][1])
    if "ddid" in sel:
        keep &= tab.getcol("DATA_DESC_ID", a, b - a) == sel["ddid"]
    rows = a + np.flatnonzero(keep)
    if len(rows) != sel["nrows"]:
        raise FormatError(uri, f"partition {p.index}: {len(rows)} rows match its selection, "
                               f"{sel['nrows']} were planned (the index does not fit the data)")
    if "baselines" in sel:
        a1, a2 = tab.getcol("ANTENNA1", a, b - a)[rows - a], tab.getcol("ANTENNA2", a, b - a)[rows - a]
        wanted = {(int(x), int(y)) for x, y in sel["baselines"]}
        rows = rows[np.fromiter(((int(x), int(y)) in wanted for x, y in zip(a1, a2, strict=True)),
                                bool, len(rows))]
    return rows


def arrays(p: Partition, tree: Tree) -> dict[str, np.ndarray]:
    """Every defined main-table column of the partition's rows, plus frequencies and antennas.

    Each bulk file's ranges are fetched concurrently while casacore reads, in place from the
    cached small files, the columns they hold; each tiled column is decoded with numpy as soon
    as its tiles arrive. When casacore must decode bulk bytes (Dysco, multi-column hypercubes),
    the fetched ranges go into a per-call sparse mirror first.
    """
    root, small, sizes, reqs = _prepare(p, tree)
    chan = p.selection.get("chan")
    casacore_bulk = p.meta.get("casacore_bulk", True)
    groups: dict[str, list[tuple[str, int, int]]] = {}
    for r in reqs:
        groups.setdefault(r[0], []).append(r)
    with ThreadPoolExecutor(max(1, len(groups)), thread_name_prefix="skyplug-ms-get") as fetchers, \
            ThreadPoolExecutor(2, thread_name_prefix="skyplug-ms-decode") as decoders:
        futures = {m: fetchers.submit(tree.read_ranges, rs) for m, rs in groups.items()}

        def fetched(names: Iterable[str]) -> list[tuple[str, int, bytes]]:
            return [(m, s, d) for name in names if name in futures
                    for (m, s, _), d in zip(groups[name], futures[name].result(), strict=True)]

        got = [(m[len(root):], s, d) for m, s, d in fetched(groups)] if casacore_bulk else []
        place = mirror.sparse_mirror(small, sizes, got) if casacore_bulk else contextlib.nullcontext(small)
        with place as ms:
            tab = mirror.open_table(ms, tree.uri)
            try:
                rows = select_rows(tab, p, tree.uri)
                fast, bulk = _tiled_columns(tab)
                if not casacore_bulk and set(bulk) - set(fast):  # never read holes as data
                    raise FormatError(tree.uri, f"columns {sorted(set(bulk) - set(fast))} need casacore "
                                                "to decode, but the partition was planned without")
                endian = "<" if tab.endianformat() == "little" else ">"

                def decode(col: str, cubes: list[dict[str, Any]], dtype: str) -> np.ndarray | None:
                    found = tsm.Pieces(fetched({root + c["file"] for c in cubes}))
                    return _decode(tree.uri, col, cubes, dtype, endian, rows, chan, found, root)

                decoded = {col: decoders.submit(decode, col, *spec) for col, spec in fast.items()}
                out: dict[str, np.ndarray] = {"ROWID": rows.astype(np.int64)}
                sub = tab.selectrows(rows)
                out.update(_casacore_columns(sub, [c for c in tab.colnames() if c not in fast], chan))
                sub.close()
                out.update({col: v for col, f in decoded.items() if (v := f.result()) is not None})
            finally:
                tab.close()
            out.update(_spectral_and_antennas(ms, out, chan))
    return out


def _tiled_columns(tab: Any) -> tuple[dict[str, tuple[list[dict[str, Any]], str]], set[str]]:
    """Columns numpy decodes (one column per tiled manager, 2-D or 3-D cubes) and all bulk columns."""
    fast, bulk = {}, set()
    for info in tab.getdminfo().values():
        kind, cols = info["TYPE"], list(info.get("COLUMNS", []))
        if kind not in (*TILED, "DyscoStMan"):
            continue
        bulk.update(cols)
        value_type = tab.getcoldesc(cols[0]).get("valueType")
        if kind in TILED:
            cubes = tsm.cubes(tab, int(info["SEQNR"]), kind, info, cols)
            if tsm.decodable(cols, value_type, cubes):
                fast[cols[0]] = (cubes, tsm.DTYPES[value_type])
    return fast, bulk


def _casacore_columns(sub: Any, cols: list[str], chan: list[int] | None) -> dict[str, np.ndarray]:
    """Columns read by casacore (channel-sliced when the cells are (chan, corr))."""
    out = {}
    if not sub.nrows():
        return out
    for col in cols:
        if not sub.iscelldefined(col, 0):
            continue
        shape = "" if sub.isscalarcol(col) else sub.getcolshapestring(col, 0, 1)[0]
        if chan is not None and shape.count(",") == 1:
            ncorr = int(shape.strip("[]").split(",")[1])
            out[col] = sub.getcolslice(col, [chan[0], 0], [chan[1] - 1, ncorr - 1])
        else:
            out[col] = sub.getcol(col)
    return out


def _decode(uri: str, col: str, cubes: list[dict[str, Any]], dtype: str, endian: str, rows: np.ndarray,
            chan: list[int] | None, found: tsm.Pieces, root: str) -> np.ndarray | None:
    """A tiled column of ``rows`` from the fetched tiles; None when no row has a cell."""
    parts = []
    try:
        for cube in cubes:
            idx, values = tsm.decode(cube, dtype, endian, rows, chan, found, root)
            if len(idx):
                parts.append((idx, values))
    except KeyError as exc:
        raise FormatError(uri, f"column {col}: {exc.args[0]}") from exc
    if not parts:
        return None
    if sum(len(i) for i, _ in parts) != len(rows) or len({v.shape[1:] for _, v in parts}) > 1:
        raise FormatError(uri, f"column {col}: cells of these rows differ in shape or are undefined; "
                               "partition by spw")
    out = np.empty((len(rows), *parts[0][1].shape[1:]), parts[0][1].dtype)
    for idx, values in parts:
        out[idx] = values
    return out


def _spectral_and_antennas(ms: Path, cols: dict[str, np.ndarray], chan: list[int] | None) -> dict[str, Any]:
    from casacore import tables

    out: dict[str, Any] = {}
    ddid = int(cols["DATA_DESC_ID"][0]) if len(cols.get("DATA_DESC_ID", [])) else 0
    with contextlib.suppress(RuntimeError), \
            tables.table(str(ms / "DATA_DESCRIPTION"), ack=False) as dd, \
            tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        freqs = spw.getcell("CHAN_FREQ", int(dd.getcell("SPECTRAL_WINDOW_ID", ddid)))
        out["CHAN_FREQ"] = freqs[chan[0]:chan[1]] if chan else freqs
    with contextlib.suppress(RuntimeError), tables.table(str(ms / "ANTENNA"), ack=False) as ant:
        out["ANTENNA_NAME"] = np.asarray(ant.getcol("NAME"), dtype=str)
        out["ANTENNA_POSITION"] = ant.getcol("POSITION")
    return out


def to_xarray(arrs: dict[str, np.ndarray]) -> Any:
    """The arrays as an xarray Dataset in the dask-ms row schema."""
    import xarray as xr

    data_vars, coords = {}, {}
    for name, value in arrs.items():
        if name in EXTRA_DIMS:
            dims = EXTRA_DIMS[name]
        else:
            dims = ("row", "chan", "corr")[: value.ndim] if value.ndim != 2 else ("row", "corr")
        target = coords if name in ("ROWID", "CHAN_FREQ") else data_vars
        target[name] = (dims, value)
    return xr.Dataset(data_vars, coords=coords)


def write_ms(p: Partition, tree: Tree, out: Path) -> Path:
    """The partition as a standalone MS at ``out`` (temp folder beside it, then renamed)."""
    if "chan" in p.selection:
        raise FormatError(p.uri, "--as ms writes whole channels: partition by time, rows or spw")
    with opened(p, tree, for_copy=True) as (tab, rows, _):
        dminfo = _lossless_dminfo(tab)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            sub = tab.selectrows(rows)
            sub.copy(str(tmp / "ms"), deep=True, valuecopy=bool(dminfo), dminfo=dminfo).close()
            sub.close()
            _replace(tmp / "ms", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _lossless_dminfo(tab: Any) -> dict[str, Any]:
    """A copy layout that stores Dysco columns tiled (re-encoding them would change the values)."""
    info = tab.getdminfo()
    if not any(v["TYPE"] == "DyscoStMan" for v in info.values()):
        return {}
    for key, v in info.items():
        if v["TYPE"] == "DyscoStMan":
            info[key] = {"TYPE": "TiledColumnStMan", "NAME": f"{v['NAME']}Tiled", "SPEC": {},
                         "COLUMNS": v["COLUMNS"]}
    return info


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an older ``dst`` is removed only once the new one is in place."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
