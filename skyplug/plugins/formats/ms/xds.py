"""The dask-ms row schema: eager Datasets of loaded arrays, and lazy ``xds_from_ms``.

One definition of the schema: dims ``row, chan, corr`` (``uvw`` for UVW, ``flagcat`` for
FLAG_CATEGORY), variables named like the MS columns, ``ROWID`` as the one coordinate, and, on
each dataset of :func:`xds_from_ms`, dask-ms's attributes: ``__daskms_partition_schema__`` and
the value of every grouping column. ``xds_from_ms`` mirrors dask-ms's signature; its dask chunks
are skyplug partitions, each task fetching only its partition's ranges of one column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.core.errors import PluginError
from skyplug.core.partition import Partition
from skyplug.core.source import Target
from skyplug.plugins.formats.ms.load import DEFINED, EXTRA_DIMS, GROUP

MS_SCHEMA = {  # cell dims of the main-table columns dask-ms names; others get ``<COL>-1``, ...
    "UVW": ("uvw",),
    "UVW2": ("uvw",),
    "DATA": ("chan", "corr"),
    "FLOAT_DATA": ("chan", "corr"),
    "SIGMA": ("corr",),
    "SIGMA_SPECTRUM": ("chan", "corr"),
    "WEIGHT": ("corr",),
    "WEIGHT_SPECTRUM": ("chan", "corr"),
    "FLAG": ("chan", "corr"),
    "FLAG_CATEGORY": ("flagcat", "chan", "corr"),
    "MODEL_DATA": ("chan", "corr"),
    "CORRECTED_DATA": ("chan", "corr"),
    "IMAGING_WEIGHT": ("chan",),
    "IMAGING_WEIGHT_SPECTRUM": ("chan", "corr"),
}
DEFAULT_GROUP_COLS = ("FIELD_ID", "DATA_DESC_ID")  # as dask-ms 0.2.x
DEFAULT_ROW_CHUNKS = 10000  # as dask-ms
PARTITION_KEY = "__daskms_partition_schema__"


def dims_of(name: str, ndim: int) -> tuple[str, ...]:
    """The dask-ms dims of a main-table column (or skyplug extra) with ``ndim`` dims, row first."""
    base = name.partition(GROUP)[0]
    if base in EXTRA_DIMS:
        return EXTRA_DIMS[base]
    if base.endswith(DEFINED):
        return ("row",)
    cell = MS_SCHEMA.get(base)
    if cell is None or len(cell) != ndim - 1:
        cell = tuple(f"{base}-{i}" for i in range(1, ndim))
    return ("row", *cell)


def chan_corr_dims(data_vars: dict[str, Any]) -> dict[str, Any]:
    """Non-standard columns with automatic dims (``COL-1``, ``COL-2``) of the channel or the
    correlation count get ``chan`` / ``corr`` instead, each at most once per column, as dask-ms
    names them (LOFAR_FULL_RES_FLAG's channel axis, for one)."""
    sizes = {d: n for dims, arr in data_vars.values() for d, n in zip(dims, arr.shape, strict=True)}
    if "chan" not in sizes or "corr" not in sizes:
        return data_vars
    out = {}
    for name, (dims, arr) in data_vars.items():
        free, new = ["chan", "corr"], list(dims)
        for i, d in enumerate(dims[1:], start=1):
            if d == f"{name}-{i}":
                match = next((f for f in free if sizes[f] == arr.shape[i]), None)
                if match:
                    new[i] = match
                    free.remove(match)
        out[name] = (tuple(new), arr)
    return out


def row_dataset(arrs: dict[str, np.ndarray]) -> Any:
    """Loaded arrays (``load.arrays``) as an eager xarray Dataset in the row schema.

    Masks ``<COL>_DEFINED`` have dims (row,); the arrays of a DATA_DESC_ID group ``<COL>@<d>``
    get their own dims ``row@<d>``, ``chan@<d>``, ``corr@<d>``. ROWID and CHAN_FREQ are coordinates.
    """
    import xarray as xr

    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    for name, value in arrs.items():
        base, _, group = name.partition(GROUP)
        dims = dims_of(name, value.ndim)
        if group:
            dims = tuple(d if d in ("antenna", "xyz", "uvw") else f"{d}{GROUP}{group}" for d in dims)
        target = coords if base in ("ROWID", "CHAN_FREQ") else data_vars
        target[name] = (dims, value)
    return xr.Dataset(data_vars, coords=coords)


def _names(value: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if value is None:
        return list(default)
    return [value] if isinstance(value, str) else list(value)


def _row_chunks(chunks: Any, ngroups: int, uri: str) -> list[int]:
    """Rows per chunk for each group, from dask-ms's ``chunks`` (a dict or a list of dicts)."""
    given = chunks if isinstance(chunks, (list, tuple)) else [chunks or {"row": DEFAULT_ROW_CHUNKS}]
    if not given or not all(isinstance(c, dict) for c in given):
        raise PluginError(f"{uri}: chunks must be a dict like {{'row': 10000}} or a list of them")
    out = []
    for i in range(ngroups):
        n = given[min(i, len(given) - 1)].get("row", DEFAULT_ROW_CHUNKS)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise PluginError(f"{uri}: chunks['row'] must be a positive integer, not {n!r}")
        out.append(n)
    return out


def xds_from_ms(
    ms: str,
    columns: str | Sequence[str] | None = None,
    index_cols: str | Sequence[str] | None = None,
    group_cols: str | Sequence[str] | None = None,
    chunks: dict[str, int] | Sequence[dict[str, int]] | None = None,
    site: str | None = None,
    table_keywords: bool = False,
    column_keywords: bool = False,
) -> Any:
    """dask-ms's ``xds_from_ms`` on any skyplug URI (a path, ``s3://`` prefix or ``.ms.zip``).

    One Dataset per distinct value of ``group_cols`` (default FIELD_ID, DATA_DESC_ID), its rows
    ordered by ``index_cols`` (default: row order), chunked by ``chunks={"row": N}``. Every
    variable is a dask array; each of its row chunks is one skyplug partition of that column,
    so computing a selection fetches only the tiles of the chunks and columns it touches.
    ``table_keywords`` / ``column_keywords`` add the main table's keywords (subtables named by
    URI) and every column's keywords to the result, a tuple then, as in dask-ms.
    """
    import dask.array as da
    import xarray as xr

    from skyplug.core.dataset import open as open_dataset

    ds = open_dataset(ms, site=site)
    uri = str(ds.uri)
    if ds.format.name != "ms":
        raise PluginError(f"{uri}: xds_from_ms reads Measurement Sets, not {ds.format.name} objects")
    index = ds.index()
    known = list(index["columns"])
    group_cols = _names(group_cols, DEFAULT_GROUP_COLS)
    index_cols = _names(index_cols, [])
    wanted = _names(columns, known)
    for kind, names in (("group_cols", group_cols), ("index_cols", index_cols), ("columns", wanted)):
        unknown = [c for c in names if c not in known]
        if unknown:
            raise PluginError(
                f"{uri}: {kind} names no column {', '.join(map(repr, unknown))} of the main table "
                f"(columns: {', '.join(known)})"
            )
    wanted = [c for c in wanted if c not in group_cols]  # their values are attrs, as in dask-ms
    keys = _key_columns(ds, [*dict.fromkeys([*group_cols, *index_cols, "DATA_DESC_ID"])])
    rowid = keys["ROWID"]
    if group_cols:
        table = np.stack([keys[c] for c in group_cols], axis=1)
        values, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # groups in the order of their first row, as dask-ms
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        values, inverse = values[order], rank[inverse.reshape(-1)]
    else:
        values, inverse = np.zeros((1, 0), np.int64), np.zeros(len(rowid), np.int64)
    meta = _column_meta(ds, index, wanted)
    sizes = _row_chunks(chunks, len(values), uri)
    out = []
    for g, gvalues in enumerate(values):
        at = np.flatnonzero(inverse == g)
        if index_cols:  # stable: equal keys stay in row order
            at = at[np.lexsort([keys[c][at] for c in reversed(index_cols)])]
        rows = rowid[at]
        ddids = np.unique(keys["DATA_DESC_ID"][at])
        ddid = int(ddids[0]) if "DATA_DESC_ID" in group_cols else None
        bounds = [(a, min(a + sizes[g], len(rows))) for a in range(0, len(rows), sizes[g])]
        data_vars = {}
        for col in wanted:
            spec = meta(col, int(rows[0]))
            if spec is None:  # no cell in the group's first row: dask-ms leaves it out
                continue
            shape, dtype = spec
            blocks = [
                da.from_delayed(
                    _delayed_chunk(ds, index, col, rows[a:b], ddid, k, len(bounds)),
                    (b - a, *shape),
                    dtype,
                )
                for k, (a, b) in enumerate(bounds)
            ]
            data_vars[col] = (dims_of(col, 1 + len(shape)), da.concatenate(blocks, axis=0))
        data_vars = chan_corr_dims(data_vars)
        attrs: dict[str, Any] = {
            PARTITION_KEY: tuple((c, str(keys[c].dtype)) for c in group_cols),
            **{c: int(v) for c, v in zip(group_cols, gvalues, strict=True)},
        }
        rid = da.from_array(rows.astype(np.int32), chunks=(tuple(b - a for a, b in bounds),))
        out.append(xr.Dataset(data_vars, coords={"ROWID": ("row", rid)}, attrs=attrs))
    if not (table_keywords or column_keywords):
        return out
    table_kw, column_kw = _keywords(ds, index)
    return (out, *([table_kw] if table_keywords else []), *([column_kw] if column_keywords else []))


def _keywords(ds: Any, index: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(main table's keywords, each column's keywords), from the cached small files; a subtable
    reference ``Table: <path>/ANTENNA`` names the object's URI, never the cache folder."""
    from skyplug.plugins.formats.ms import mirror

    tree = ds.target
    small, _ = mirror.ensure_small(
        tree, tree.uri, tree.version, index["root"], list(index["big"]), heads=mirror.dysco_heads(index)
    )
    cached = mirror.cached_table(small, tree.uri)
    with cached.lock, mirror.casacore_errors(tree.uri):
        tab = cached.table
        table_kw = dict(tab.getkeywords())
        column_kw = {c: dict(tab.getcolkeywords(c)) for c in tab.colnames()}
    base = str(small).rstrip("/")
    for key, value in table_kw.items():
        if isinstance(value, str) and value.startswith("Table: "):
            path = value[len("Table: ") :]
            if path == base or path.startswith(base + "/"):
                table_kw[key] = "Table: " + str(ds.uri).rstrip("/") + path[len(base) :]
    return table_kw, column_kw


def _key_columns(ds: Any, cols: list[str]) -> dict[str, np.ndarray]:
    """ROWID and the grouping/ordering columns of every row, from one partition of those columns
    (scalar columns in the small files: no bulk bytes unless they are tiled)."""
    from skyplug.core.load import load_partition
    from skyplug.plugins.formats.ms import load as load_mod

    (p,) = ds.plan("rows", 1, columns=cols)
    got = load_mod.groups(load_partition(p, target=ds.target))
    out = {}
    for name in ["ROWID", *cols]:
        parts = [g[name] for g in got.values()]
        out[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    order = np.argsort(out["ROWID"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def _column_meta(ds: Any, index: dict[str, Any], cols: list[str]) -> Any:
    """``meta(col, row)``: (cell shape, dtype) of a column at a row, None when the cell is undefined.

    Read by casacore from the cached small files (bulk files are holes there: the values are
    never used, only their shape and type).
    """
    from skyplug.plugins.formats.ms import mirror

    tree = ds.target
    small, _ = mirror.ensure_small(
        tree, tree.uri, tree.version, index["root"], list(index["big"]), heads=mirror.dysco_heads(index)
    )
    cached = mirror.cached_table(small, tree.uri)
    memo: dict[tuple[str, int], tuple[tuple[int, ...], np.dtype] | None] = {}

    def meta(col: str, row: int) -> tuple[tuple[int, ...], np.dtype] | None:
        if (col, row) not in memo:
            with cached.lock, mirror.casacore_errors(tree.uri):
                tab = cached.table
                if not tab.isscalarcol(col) and not tab.iscelldefined(col, row):
                    memo[col, row] = None
                else:
                    value = np.asarray(tab.getcol(col, row, 1))
                    memo[col, row] = (tuple(value.shape[1:]), value.dtype)
        return memo[col, row]

    return meta


def _delayed_chunk(
    ds: Any, index: dict[str, Any], col: str, rows: np.ndarray, ddid: int | None, k: int, n: int
) -> Any:
    """A dask delayed of one column's values on ``rows``: one partition, loaded when computed."""
    import hashlib

    import dask

    p = _chunk_partition(ds, index, col, rows, ddid, k, n)
    token = hashlib.sha1(f"{p.uri}|{p.version}|{col}|{ddid}|".encode() + rows.tobytes()).hexdigest()[:16]
    reader = ds.__dict__.setdefault("_xds_reader", _Reader(ds.target))
    return dask.delayed(_load_chunk)(p, reader, col, rows, dask_key_name=f"skyplug-{col}-{token}")


def _chunk_partition(
    ds: Any, index: dict[str, Any], col: str, rows: np.ndarray, ddid: int | None, k: int, n: int
) -> Partition:
    """The partition of one column over the span of ``rows`` (of DATA_DESC_ID ``ddid`` if given),
    with the site and container a worker needs, as ``Dataset.plan`` gives them."""
    from skyplug.plugins.formats.ms import plan as plan_mod

    groups = np.asarray(index["groups"], dtype=np.int64).reshape(-1, 4)
    lo, hi = int(rows.min()), int(rows.max()) + 1
    span = np.arange(lo, hi)
    if ddid is not None:
        row_ddid = np.repeat(groups[:, 3], groups[:, 1] - groups[:, 0])
        span = span[row_ddid[lo:hi] == ddid]
    sel = {"ddid": ddid, "rows": (lo, hi)}
    p = plan_mod._partition(index, k, n, sel, span, None, None, [col])
    target: Target = ds.target
    site = ds.site.public() if ds.site else None
    container = getattr(target, "container", lambda _: None)(sorted({m for m, _, _ in p.ranges if m}))
    return dataclasses.replace(p, site=site, container=container)


class _Reader:
    """The opened object chunk tasks read through; pickled without it (a process unpickling a
    task opens it again from what the partition carries, credentials from its own config)."""

    def __init__(self, target: Target | None = None) -> None:
        self.target = target

    def __getstate__(self) -> dict[str, Any]:
        return {"target": None}

    def get(self, p: Partition) -> Target:
        if self.target is None:
            from skyplug.core.load import _partition_target

            self.target = _partition_target(p)
        return self.target


def _load_chunk(p: Partition, reader: _Reader, col: str, rows: np.ndarray) -> np.ndarray:
    """Load a chunk's partition and keep the values of ``rows``, in their order."""
    from skyplug.core.load import load_partition

    got = load_partition(p, target=reader.get(p))
    if any(GROUP in name for name in got):
        raise PluginError(f"{p.uri}: cells of {col} differ in shape across these rows; group by DATA_DESC_ID")
    rowid = got["ROWID"]
    at = np.searchsorted(rowid, rows)
    if col not in got or np.any(at >= len(rowid)) or np.any(rowid[np.minimum(at, len(rowid) - 1)] != rows):
        raise PluginError(f"{p.uri}: column {col} has no cell in some rows of chunk {p.index}")
    values = got[col][at]
    if col + DEFINED in got and not got[col + DEFINED][at].all():
        raise PluginError(f"{p.uri}: column {col} has no cell in some rows of chunk {p.index}")
    return values
