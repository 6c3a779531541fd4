"""Load a partition: fetch its ranges, select its rows, decode (numpy for tiles, else casacore).

Outputs: named numpy arrays in the dask-ms row schema (dims row, chan, corr; MS column names,
plus ROWID, CHAN_FREQ, ANTENNA_NAME, ANTENNA_POSITION) or an xarray Dataset of the same; the
standalone MS (``--as ms``) is :mod:`skyplug.plugins.formats.ms.write`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError
from skyplug.core.partition import Partition
from skyplug.core.source import Tree
from skyplug.plugins.formats.ms import mirror, tsm, where
from skyplug.plugins.formats.ms.inline import unpack
from skyplug.plugins.formats.ms.layout import LOAD_SUBTABLES, TILED
from skyplug.plugins.formats.ms.plan import KEYS, requests

SHARED = ("ANTENNA_NAME", "ANTENNA_POSITION")  # the same for every DATA_DESC_ID group
GROUP = "@"  # ``DATA@2``: a column of the rows of DATA_DESC_ID 2 in a partition of several shapes
DEFINED = "_DEFINED"  # suffix of the per-row mask of a column defined in some rows only
EXTRA_DIMS = {
    "UVW": ("row", "uvw"),
    "CHAN_FREQ": ("chan",),
    "ANTENNA_NAME": ("antenna",),
    "ANTENNA_POSITION": ("antenna", "xyz"),
    "ROWID": ("row",),
}


def _prepare(
    p: Partition, tree: Tree, whole: bool = True
) -> tuple[str, Path, dict[str, int], list[tuple[str, int, int]]]:
    """(MS root in the tree, cached small files, bulk file sizes, the partition's requests).

    The bulk sizes come with the partition (``meta["big"]``), so a warm worker never lists the
    tree: a zip opened from a partition reads no central directory. Older partitions carry only
    the names; their sizes come from the listing. ``whole=False`` (arrays) fetches only the small
    files the arrays come from (``LOAD_SUBTABLES``); a copy needs them all.
    """
    root, big = p.meta["root"], p.meta["big"]
    subs = None if whole else LOAD_SUBTABLES
    known, inline = _carried(p, tree.uri) if not whole and isinstance(big, dict) else (None, None)
    small, _ = mirror.ensure_small(
        tree, tree.uri, tree.version, root, big if known else list(big), subs, known=known, inline=inline
    )
    if isinstance(big, dict):
        sizes = {str(b): int(n) for b, n in big.items()}
    else:
        members = tree.members()
        missing = [b for b in big if root + b not in members]
        if missing:
            raise FormatError(tree.uri, f"bulk file {root}{missing[0]} is missing")
        sizes = {b: members[root + b] for b in big}
    reqs = requests(p)
    for member, start, end in reqs:  # a crafted descriptor: ranges outside its bulk files
        name = member[len(root) :] if member.startswith(root) else None
        if name not in sizes or not 0 <= start <= end <= sizes[name]:
            raise FormatError(
                tree.uri, f"partition range {member}[{start}:{end}] lies outside its bulk files"
            )
    return root, small, sizes, reqs


def _carried(p: Partition, uri: str) -> tuple[dict[str, int] | None, dict[str, bytes] | None]:
    """(small member -> size, inline files) a partition carries for loading arrays, if any."""
    small = p.meta.get("small")
    if not isinstance(small, dict) or not isinstance(small.get("sizes"), dict):
        return None, None
    try:
        inline = unpack(small.get("inline") or {}, uri)
    except ValueError as exc:
        raise FormatError(uri, str(exc)) from exc
    return {str(m): int(n) for m, n in small["sizes"].items()}, inline


@contextlib.contextmanager
def opened(
    p: Partition, tree: Tree, for_copy: bool = False
) -> Iterator[tuple[Any, np.ndarray, Path, dict[str, str]]]:
    """(casacore table on the mirror, the partition's rows, mirror path, dropped subtables -> why).

    All removed afterwards.

    ``for_copy`` drops keywords naming absent or unreadable subtables from the mirror, which a
    deep copy would otherwise fail on, with a warning naming them.
    """
    root, small, sizes, reqs = _prepare(p, tree)
    pieces = [(m[len(root) :], s, d) for m, s, d in _fetch_per_file(tree, reqs)]
    with mirror.sparse_mirror(small, sizes, pieces) as ms:
        dropped = mirror.drop_dangling_subtables(ms) if for_copy else {}
        tab = mirror.open_table(ms, tree.uri)
        try:
            yield tab, select_rows(tab, p, tree.uri), ms, dropped
        finally:
            tab.close()


def select_rows(tab: Any, p: Partition, uri: str) -> np.ndarray:
    """Rows of the partition: its span filtered by time window, DATA_DESC_ID, key values, the
    ``where`` predicate (all read from the small files) and baselines."""
    sel = p.selection
    a, b = sel["span"]
    keep = np.ones(b - a, bool)
    if "time" in sel:
        time = tab.getcol("TIME", a, b - a)
        keep &= (time >= sel["time"][0]) & (time <= sel["time"][1])
    if "ddid" in sel:
        keep &= tab.getcol("DATA_DESC_ID", a, b - a) == sel["ddid"]
    if "values" in sel:
        if sel.get("key") not in KEYS.values():
            raise FormatError(uri, f"partition {p.index}: {sel.get('key')!r} is not a key column")
        keep &= np.isin(tab.getcol(sel["key"], a, b - a), np.asarray(sel["values"], np.int64))
    if "where" in sel:
        node = where.parse(sel["where"], tuple(tab.colnames()), f"{uri}: where")
        keep &= where.evaluate(node, lambda col: tab.getcol(col, a, b - a))
    rows = a + np.flatnonzero(keep)
    if len(rows) != sel["nrows"]:
        raise FormatError(
            uri,
            f"partition {p.index}: {len(rows)} rows match its selection, "
            f"{sel['nrows']} were planned (the index does not fit the data)",
        )
    if "baselines" in sel:
        a1, a2 = tab.getcol("ANTENNA1", a, b - a)[rows - a], tab.getcol("ANTENNA2", a, b - a)[rows - a]
        wanted = {(int(x), int(y)) for x, y in sel["baselines"]}
        rows = rows[
            np.fromiter(((int(x), int(y)) in wanted for x, y in zip(a1, a2, strict=True)), bool, len(rows))
        ]
    return rows


_pools: dict[int, tuple[ThreadPoolExecutor, ThreadPoolExecutor]] = {}
_pools_lock = threading.Lock()
FETCHERS = 32  # concurrent bulk-file fetches per process (each may split into ranged GETs)
DECODERS = 4  # concurrent numpy decodes per process (numpy copies release the GIL)
timings = threading.local()  # ``timings.last``: seconds of the calling thread's last arrays()


def _pool() -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """The process's (fetch, decode) thread pools; a forked child makes its own."""
    pid = os.getpid()
    with _pools_lock:
        if pid not in _pools:
            _pools[pid] = (
                ThreadPoolExecutor(FETCHERS, thread_name_prefix="skyplug-ms-get"),
                ThreadPoolExecutor(DECODERS, thread_name_prefix="skyplug-ms-decode"),
            )
        return _pools[pid]


def arrays(p: Partition, tree: Tree) -> dict[str, np.ndarray]:
    """Every defined main-table column of the partition's rows, plus frequencies and antennas.

    Each bulk file's ranges are fetched concurrently while casacore reads, from the process's
    open table on the cached small files, the columns they hold; each tiled column is decoded
    with numpy as soon as its tiles arrive: where the file holds the very array asked for
    (whole-cell tiles, native order), the array is a writable view of the buffer its tiles were
    fetched into, no copy; a file's buffers are dropped once its column is decoded. When casacore
    must decode bulk bytes (Dysco, multi-column hypercubes), the fetched ranges go into a
    per-call sparse mirror first.
    """
    t0 = time.perf_counter()
    root, small, sizes, reqs = _prepare(p, tree, whole=False)
    groups = _by_file(reqs)
    fetch_pool, decode_pool = _pool()
    arrived: list[float] = []
    futures = {m: fetch_pool.submit(_fetch, tree, rs, arrived) for m, rs in groups.items()}
    t_started = time.perf_counter()

    def fetched(names: Iterable[str], release: bool = False) -> list[tuple[str, int, memoryview]]:
        """(member, start, buffer) of the named bulk files' ranges; ``release``: the files' last
        reader, after which they stay in memory only as far as the arrays view them."""
        out = []
        for name in names:
            if name in futures:
                datas = futures[name].result()
                out.extend((m, s, d) for (m, s, _), d in zip(groups[name], datas, strict=True))
                if release:
                    datas.clear()
        return out

    def read(cached: mirror.CachedTable) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        parts = _ddid_groups(p)
        for n, (suffix, q) in enumerate(parts):
            take = functools.partial(fetched, release=n == len(parts) - 1)  # the last group frees
            got = _read(q, tree.uri, root, cached, take, decode_pool)
            out.update({k if k in SHARED else k + suffix: v for k, v in got.items()})
        return out

    try:
        if p.meta.get("casacore_bulk", True):
            got = [(m[len(root) :], s, d) for m, s, d in fetched(groups)]
            with mirror.sparse_mirror(small, sizes, got) as ms:
                tab = mirror.open_table(ms, tree.uri)
                try:
                    out = _with_subtables(small, mirror.CachedTable(ms, tab), read)
                finally:
                    tab.close()
        else:
            out = read(mirror.cached_table(small, tree.uri))
    finally:
        for f in futures.values():  # a failed fetch fails the load, even when nothing decoded it
            f.exception()
    for f in futures.values():
        f.result()
    end = time.perf_counter()
    timings.last = {
        "prepare": t_started - t0,
        "fetch": (max(arrived) if arrived else t_started) - t0,
        "total": end - t0,
    }
    return out


_SUBTABLES: dict[str, dict[Any, Any]] = {}  # small-files folder -> what its subtables gave
_SUBTABLES_MAX = 16
_subtables_lock = threading.Lock()


def _with_subtables(
    small: Path, cached: mirror.CachedTable, read: Callable[[mirror.CachedTable], Any]
) -> Any:
    """``read(cached)`` on a temporary mirror, its subtables' values kept for the next loads.

    The mirror links its subtables from ``small`` (one object version): frequencies and antennas
    are read once per process, not at every load (three casacore table opens, Dysco's path).
    """
    with _subtables_lock:
        cached.memo.update(_SUBTABLES.get(str(small), {}))
    out = read(cached)
    subs = {k: v for k, v in cached.memo.items() if isinstance(k, tuple) and k[:1] == ("subtables",)}
    with _subtables_lock:
        _SUBTABLES.setdefault(str(small), {}).update(subs)
        while len(_SUBTABLES) > _SUBTABLES_MAX:
            del _SUBTABLES[next(iter(_SUBTABLES))]
    return out


def _ddid_groups(p: Partition) -> list[tuple[str, Partition]]:
    """(key suffix, partition of one DATA_DESC_ID) for a partition whose windows differ in shape,
    else the partition itself with no suffix."""
    if "ddids" not in p.selection:
        return [("", p)]
    base = {k: v for k, v in p.selection.items() if k != "ddids"}
    return [
        (f"{GROUP}{d}", dataclasses.replace(p, selection={**base, "ddid": d, "nrows": n}))
        for d, n in p.selection["ddids"]
    ]


def groups(arrs: dict[str, np.ndarray]) -> dict[int | None, dict[str, np.ndarray]]:
    """The arrays of a load split per DATA_DESC_ID: ``{d: {"DATA": ..., ...}}`` for a partition
    whose windows differ in shape (keys ``DATA@d``), else ``{None: arrs}``."""
    out: dict[int | None, dict[str, np.ndarray]] = {}
    shared = {k: v for k, v in arrs.items() if k in SHARED}
    for name, value in arrs.items():
        base, _, d = name.partition(GROUP)
        if d:
            out.setdefault(int(d), dict(shared))[base] = value
    return out or {None: arrs}


def _by_file(reqs: Iterable[tuple[str, int, int]]) -> dict[str, list[tuple[str, int, int]]]:
    """Requests grouped by bulk file: each file's ranges are coalesced on their own, as planned
    (in a zip, one request across members would read the members lying between them)."""
    out: dict[str, list[tuple[str, int, int]]] = {}
    for r in reqs:
        out.setdefault(r[0], []).append(r)
    return out


def _fetch_per_file(tree: Tree, reqs: list[tuple[str, int, int]]) -> list[tuple[str, int, bytes]]:
    """(member, start, bytes) of every request, each bulk file fetched concurrently on its own."""
    fetch_pool, _ = _pool()
    by_file = _by_file(reqs)
    futures = {m: fetch_pool.submit(tree.read_ranges, rs) for m, rs in by_file.items()}
    for f in futures.values():  # wait for all, so a failure leaves no fetch running
        f.exception()
    return [
        (m, s, d)
        for name, rs in by_file.items()
        for (m, s, _), d in zip(rs, futures[name].result(), strict=True)
    ]


def _fetch(tree: Tree, reqs: list[tuple[str, int, int]], arrived: list[float]) -> list[memoryview]:
    """The requests' bytes, each range a writable view into the buffer its request was read into:
    a decoded array may be a view of it (see ``tsm.decode``)."""
    datas = tree.read_buffers(reqs)
    arrived.append(time.perf_counter())
    return datas


Fetched = Callable[[Iterable[str]], list[tuple[str, int, memoryview]]]


def _read(
    p: Partition,
    uri: str,
    root: str,
    cached: mirror.CachedTable,
    fetched: Fetched,
    decode_pool: ThreadPoolExecutor,
) -> dict[str, np.ndarray]:
    """The partition's columns: tiled ones decoded by numpy from ``fetched``, others by casacore."""
    chan, nchan = p.selection.get("chan"), p.meta.get("nchan")
    with cached.lock:
        tab = cached.table
        rows = select_rows(tab, p, uri)
        if "layout" not in cached.memo:
            cached.memo["layout"] = (
                *_tiled_columns(tab),
                "<" if tab.endianformat() == "little" else ">",
                list(tab.colnames()),
            )
        fast, bulk, endian, colnames = cached.memo["layout"]
        wanted = p.selection.get("columns")
        if wanted:  # columns=: only these (DATA_DESC_ID too: it names the spectral window)
            keep = {*wanted, "DATA_DESC_ID"}
            fast = {c: v for c, v in fast.items() if c in keep}
            bulk = {c for c in bulk if c in keep}
            colnames = [c for c in colnames if c in keep]
        if not p.meta.get("casacore_bulk", True) and set(bulk) - set(fast):  # never read holes as data
            raise FormatError(
                uri,
                f"columns {sorted(set(bulk) - set(fast))} need casacore "
                "to decode, but the partition was planned without",
            )

        def decode(col: str, cubes: list[dict[str, Any]], dtype: str) -> dict[str, np.ndarray]:
            found = tsm.Pieces(fetched({root + c["file"] for c in cubes}))
            return _decode(uri, col, cubes, dtype, endian, rows, chan, found, root, nchan)

        decoded = {col: decode_pool.submit(decode, col, *spec) for col, spec in fast.items()}
        out: dict[str, np.ndarray] = {"ROWID": rows.astype(np.int64)}
        if "defined" not in cached.memo:  # once per table: which columns lack cells in some rows
            cached.memo["defined"] = _definedness(tab, [c for c in colnames if c not in fast])
        none, partly = cached.memo["defined"]
        cols = [c for c in colnames if c not in fast and c not in none]
        out.update(_casacore_columns(tab, rows, cols, chan, partly, nchan))
        out.update(_spectral_and_antennas(cached, out, chan))
    for f in decoded.values():
        out.update(f.result())
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


def _casacore_columns(
    tab: Any,
    rows: np.ndarray,
    cols: list[str],
    chan: list[int] | None,
    partly: frozenset[str] = frozenset(),
    nchan: int | None = None,
) -> dict[str, np.ndarray]:
    """Columns read by casacore (channel-sliced when the cells are (chan, corr)).

    A contiguous run of rows is read in place; other row sets through a row selection. Array
    cells may be undefined (no array stored): a column with none in these rows is left out, one
    defined in some rows only comes with its ``<COL>_DEFINED`` mask (see :func:`_with_mask`).
    ``cols`` hold no column without any cell in the table; only the ``partly`` defined ones are
    checked row by row (TaQL ``ISDEFINED``).
    """
    out: dict[str, np.ndarray] = {}
    if not len(rows):
        return out
    first, n = int(rows[0]), len(rows)
    run = int(rows[-1]) - first + 1 == n
    sub = tab if run else tab.selectrows(rows)
    at = (first, n) if run else (0, -1)
    picked: list[Any] = []  # row selections opened here, closed at the end

    def select(t: Any, which: np.ndarray) -> Any:
        picked.append(t.selectrows(which))
        return picked[-1]

    def read(t: Any, col: str, start: int, count: int) -> np.ndarray:
        dims = (
            []
            if t.isscalarcol(col)
            else [int(x) for x in t.getcolshapestring(col, start, 1)[0].strip("[]").split(",")]
        )
        # (chan, corr) cells and FLAG_CATEGORY's (category, chan, corr) are cut to the block
        at = len(dims) - 2  # the channel axis, numpy order
        if chan is None or len(dims) not in (2, 3) or (nchan and dims[at] != nchan):
            return t.getcol(col, start, count)
        blc, trc = [0] * len(dims), [d - 1 for d in dims]
        blc[at], trc[at] = chan[0], chan[1] - 1
        return t.getcolslice(col, blc, trc, startrow=start, nrow=count)

    try:
        rsub = None
        for col in cols:
            if col not in partly:
                out[col] = read(sub, col, *at)
                continue
            rsub = rsub if rsub is not None else (sub if not run else select(tab, rows))
            defined = tsm.defined_rows(rsub, col)
            if defined.all():
                out[col] = read(sub, col, *at)
            elif defined.any():
                values = read(select(rsub, np.flatnonzero(defined)), col, 0, -1)
                out.update(_with_mask(col, defined, np.flatnonzero(defined), values))
    finally:
        for t in picked:
            t.close()
        if not run:
            sub.close()
    return out


def _definedness(tab: Any, cols: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(array columns with no cell in any row, array columns with cells in some rows only)."""
    none, partly = set(), set()
    for col in cols:
        if tab.isscalarcol(col):
            continue
        defined = tsm.defined_rows(tab, col)
        if not defined.any():
            none.add(col)
        elif not defined.all():
            partly.add(col)
    return frozenset(none), frozenset(partly)


def _with_mask(col: str, defined: np.ndarray, idx: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """A partly defined column: its values (zeros where a row has no cell) and ``<COL>_DEFINED``."""
    full = np.zeros((len(defined), *values.shape[1:]), values.dtype)
    full[idx] = values
    return {col: full, col + DEFINED: np.asarray(defined, bool).copy()}


def _decode(
    uri: str,
    col: str,
    cubes: list[dict[str, Any]],
    dtype: str,
    endian: str,
    rows: np.ndarray,
    chan: list[int] | None,
    found: tsm.Pieces,
    root: str,
    nchan: int | None = None,
) -> dict[str, np.ndarray]:
    """A tiled column of ``rows`` from the fetched tiles: left out when no row has a cell,
    with its ``<COL>_DEFINED`` mask when some rows have none (they are in no hypercube).
    A channel block cuts only cubes of (corr, ``nchan``) cells."""
    parts = []
    try:
        for cube in cubes:
            idx, values = tsm.decode(cube, dtype, endian, rows, tsm.chan_of(cube, chan, nchan), found, root)
            if values.dtype == np.uint8:  # python-casacore gives uChar arrays as uint16
                values = values.astype(np.uint16)
            if len(idx):
                parts.append((idx, values))
    except KeyError as exc:
        raise FormatError(uri, f"column {col}: {exc.args[0]}") from exc
    if not parts:
        return {}
    if len({v.shape[1:] for _, v in parts}) > 1:
        raise FormatError(uri, f"column {col}: cells of these rows differ in shape; partition by spw")
    covered = sum(len(i) for i, _ in parts)
    if len(parts) == 1 and covered == len(rows):  # one cube holds every row, in order: its values
        return {col: parts[0][1]}
    idx = np.concatenate([i for i, _ in parts])
    values = np.concatenate([v for _, v in parts]) if len(parts) > 1 else parts[0][1]
    if covered == len(rows):
        out = np.empty((len(rows), *values.shape[1:]), values.dtype)
        out[idx] = values
        return {col: out}
    defined = np.zeros(len(rows), bool)
    defined[idx] = True
    return _with_mask(col, defined, idx, values)


def _spectral_and_antennas(
    cached: mirror.CachedTable, cols: dict[str, np.ndarray], chan: list[int] | None
) -> dict[str, Any]:
    """CHAN_FREQ of the partition's spectral window and the antennas (read once per table)."""
    ddid = int(cols["DATA_DESC_ID"][0]) if len(cols.get("DATA_DESC_ID", [])) else 0
    if ("subtables", ddid) not in cached.memo:
        cached.memo[("subtables", ddid)] = _subtables(cached.path, ddid)
    out = {k: v.copy() for k, v in cached.memo[("subtables", ddid)].items()}  # callers may write
    if chan and "CHAN_FREQ" in out:
        out["CHAN_FREQ"] = out["CHAN_FREQ"][chan[0] : chan[1]]
    return out


def _subtables(ms: Path, ddid: int) -> dict[str, np.ndarray]:
    from casacore import tables

    out: dict[str, np.ndarray] = {}
    with (
        contextlib.suppress(RuntimeError),
        tables.table(str(ms / "DATA_DESCRIPTION"), ack=False) as dd,
        tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw,
    ):
        out["CHAN_FREQ"] = spw.getcell("CHAN_FREQ", int(dd.getcell("SPECTRAL_WINDOW_ID", ddid)))
    with contextlib.suppress(RuntimeError), tables.table(str(ms / "ANTENNA"), ack=False) as ant:
        out["ANTENNA_NAME"] = np.asarray(ant.getcol("NAME"), dtype=str)
        out["ANTENNA_POSITION"] = ant.getcol("POSITION")
    return out


def to_xarray(arrs: dict[str, np.ndarray]) -> Any:
    """The arrays as an eager xarray Dataset in the dask-ms row schema (see ``xds.row_dataset``)."""
    from skyplug.plugins.formats.ms.xds import row_dataset

    return row_dataset(arrs)
