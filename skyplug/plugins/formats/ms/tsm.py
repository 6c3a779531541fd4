"""Tiled storage (TiledColumnStMan, TiledShapeStMan): hypercube geometry, tile ranges, decoding.

A hypercube holds the cells of one shape; its file ``table.fN_TSMk`` is a sequence of tiles of
``BucketSize`` bytes, numbered Fortran-order over the tile grid (corr, chan, row). Inside a tile
values are Fortran-ordered ``[corr, chan, row]`` (Bools bit-packed, least significant bit first),
in the table's endianness. Rows map to cube positions by runs ``[row0, row1, pos0]``.

Decoded here, not by casacore, because casacore reads tables from a file system only: to read a
partition where it lies (an S3 object, a zip member) we compute which tiles its rows touch, fetch
exactly those ranges, and decode them; casacore stays the reference in the tests, bit for bit.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.plugins.formats.ms.layout import merge, row_runs

DTYPES = {
    "boolean": "?",
    "uchar": "u1",
    "short": "i2",
    "ushort": "u2",
    "int": "i4",
    "uint": "u4",
    "int64": "i8",
    "float": "f4",
    "double": "f8",
    "complex": "c8",
    "dcomplex": "c16",
}

Range = tuple[int, int]


class GeometryError(ValueError):
    """The hypercubes do not fit the rows (the message names the column and the manager)."""


def cubes(tab: Any, seq: int, kind: str, info: dict[str, Any], cols: Sequence[str]) -> list[dict[str, Any]]:
    """Non-empty hypercubes of one tiled manager: file, shapes, bucket size, rows they hold.

    TiledShapeStMan puts the rows of each cell shape in its own cube, in row order; rows with
    no array (undefined cells, e.g. CASA's FLAG_CATEGORY) are in no cube. The count is checked
    against the cube so that a different placement fails instead of misreading.
    """
    nrow = tab.nrows()
    hyper = info["SPEC"].get("HYPERCUBES", {})
    varying = kind == "TiledShapeStMan" and nrow and tab.isvarcol(cols[0])
    shapes = cell_shapes(tab, cols[0]) if varying and hyper else None
    out = []
    for k in sorted(hyper, key=lambda k: int(k.lstrip("*"))):
        h = hyper[k]
        number = 0 if kind == "TiledColumnStMan" else int(k.lstrip("*"))
        cube = {
            "file": f"table.f{seq}_TSM{number}",
            "cube": [int(x) for x in h["CubeShape"]],
            "tile": [int(x) for x in h["TileShape"]],
            "bucket": int(h["BucketSize"]),
        }
        if shapes is None:
            cube["runs"] = [[0, nrow, 0]]
        else:
            cell = "[" + ", ".join(str(int(x)) for x in reversed(h["CellShape"])) + "]"
            rows = np.flatnonzero(shapes == cell)
            if len(rows) != cube["cube"][-1]:
                raise GeometryError(
                    f"column {', '.join(cols)} ({kind}): {len(rows)} rows of shape {cell} "
                    f"but its hypercube {cube['file']} holds {cube['cube'][-1]}"
                )
            cube["runs"] = [[a, b, int(np.searchsorted(rows, a))] for a, b in row_runs(rows)]
        if cube["cube"][-1]:
            out.append(cube)
    return out


def chan_of(cube: dict[str, Any], chan: Sequence[int] | None, nchan: int | None) -> Sequence[int] | None:
    """The channel block to cut from ``cube``: ``chan`` when its cells are (corr, ``nchan``) or the
    window's ``nchan`` is unknown, else None (whole cells, e.g. LOFAR_FULL_RES_FLAG's (8, 1))."""
    if chan is None or not nchan:
        return chan
    return chan if len(cube["cube"]) == 3 and int(cube["cube"][1]) == nchan else None


def defined_rows(tab: Any, col: str) -> np.ndarray:
    """Whether each row of ``tab`` has a cell in ``col`` (TaQL ISDEFINED, evaluated by casacore)."""
    return np.broadcast_to(np.asarray(tab.calc(f"ISDEFINED({col})"), bool), (tab.nrows(),))


def cell_shapes(tab: Any, col: str) -> np.ndarray:
    """casacore's shape string of every row's cell in ``col``; ``""`` where a row has none."""
    defined = defined_rows(tab, col)
    if defined.all():
        return np.asarray(tab.getcolshapestring(col))
    shapes = np.full(tab.nrows(), "", dtype=object)
    rows = np.flatnonzero(defined)
    if len(rows):
        sub = tab.selectrows(rows)
        try:
            shapes[rows] = sub.getcolshapestring(col)
        finally:
            sub.close()
    return shapes


def decodable(cols: Sequence[str], value_type: str | None, cubes_: Sequence[dict[str, Any]]) -> bool:
    """Whether numpy decodes this manager: one column of a known type, 1-D or 2-D cells."""
    return len(cols) == 1 and value_type in DTYPES and all(len(c["cube"]) in (2, 3) for c in cubes_)


def tile_grid(cube: dict[str, Any]) -> tuple[list[int], int]:
    """Tiles per non-row axis (Fortran order) and the tile count over the whole cube."""
    per_axis = [-(-int(s) // int(t)) for s, t in zip(cube["cube"], cube["tile"], strict=True)]
    return per_axis[:-1], int(np.prod(per_axis))


def positions(runs: Sequence[Sequence[int]], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``rows``, cube positions) of the sorted ``rows`` that lie in the runs."""
    idx, pos = [], []
    for r0, r1, p0 in runs:
        lo, hi = np.searchsorted(rows, [r0, r1])
        idx.append(np.arange(lo, hi))
        pos.append(rows[lo:hi] - r0 + p0)
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(idx), np.concatenate(pos)


def _chan_tiles(cube: dict[str, Any], chan: Sequence[int] | None) -> tuple[int, int]:
    """First and last+1 channel-tile index covering ``chan`` (all tiles when None or 2-D)."""
    grid, _ = tile_grid(cube)
    if chan is None or len(grid) != 2:
        return 0, grid[-1] if len(grid) == 2 else 1
    tc = int(cube["tile"][1])
    return chan[0] // tc, (chan[1] - 1) // tc + 1


def cube_ranges(cube: dict[str, Any], rows: np.ndarray, chan: Sequence[int] | None) -> list[Range]:
    """Byte ranges of the tiles holding ``rows`` (sorted) and channels ``[c0, c1)`` of one cube."""
    _, pos = positions(cube["runs"], rows)
    if not len(pos):
        return []
    grid, _ = tile_grid(cube)
    per_slab, bucket = int(np.prod(grid)), int(cube["bucket"])
    j0, j1 = _chan_tiles(cube, chan)
    lo, hi = grid[0] * j0, grid[0] * j1  # tile offsets inside one row-tile slab
    return merge(
        ((int(tr) * per_slab + lo) * bucket, (int(tr) * per_slab + hi) * bucket)
        for tr in np.unique(pos // int(cube["tile"][-1]))
    )


class Pieces:
    """Fetched byte ranges of members, looked up by (member, start, end)."""

    def __init__(self, pieces: Sequence[tuple[str, int, bytes | memoryview]]) -> None:
        self._by: dict[str, tuple[list[int], list[memoryview]]] = {}
        for member, start, data in sorted(pieces, key=lambda x: (x[0], x[1])):
            starts, datas = self._by.setdefault(member, ([], []))
            starts.append(start)
            datas.append(memoryview(data).cast("B"))

    def find(self, member: str, start: int, end: int) -> memoryview | None:
        """Bytes [start, end) of ``member`` if one fetched piece holds them all, else None."""
        starts, datas = self._by.get(member, ([], []))
        i = bisect_right(starts, start) - 1
        if i < 0 or end > starts[i] + len(datas[i]):
            return None
        return datas[i][start - starts[i] : end - starts[i]]

    def get(self, member: str, start: int, end: int) -> memoryview:
        found = self.find(member, start, end)
        if found is None:
            raise KeyError(f"{member} bytes [{start}, {end}) were not fetched")
        return found


def _tile(raw: memoryview, dt: np.dtype, n: int) -> np.ndarray:
    """The ``n`` values of one tile, flat in file (Fortran) order."""
    if dt == np.bool_:
        return np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[:n].view(bool)
    return np.frombuffer(raw, dt, count=n)


def decode(
    cube: dict[str, Any],
    dtype: str,
    endian: str,
    rows: np.ndarray,
    chan: Sequence[int] | None,
    pieces: Pieces,
    root: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``rows``, values in C order (row, [chan,] corr)) of the rows this cube holds."""
    idx, pos = positions(cube["runs"], rows)
    grid, _ = tile_grid(cube)
    tile, bucket = [int(t) for t in cube["tile"]], int(cube["bucket"])
    shape, member = cube["cube"][:-1], root + cube["file"]
    three = len(grid) == 2
    dt = np.dtype(bool) if dtype == "?" else np.dtype(dtype if dtype == "u1" else endian + dtype)
    ntile, t_rows, per_slab = int(np.prod(tile)), tile[-1], int(np.prod(grid))
    j0, j1 = _chan_tiles(cube, chan)
    c0, c1 = chan if chan is not None and three else (0, shape[-1] if three else 1)
    if per_slab == 1 and (c0, c1) == (0, shape[-1] if three else 1):
        view = _in_place(pieces, member, dt, tile, shape, bucket, pos)
        if view is not None:
            return idx, view
    out = np.empty((len(pos), *reversed([shape[0], c1 - c0] if three else [shape[0]])), dt.newbyteorder("="))
    slab_of = pos // t_rows
    for tr in np.unique(slab_of):
        lo, hi = np.searchsorted(slab_of, [tr, tr + 1])  # positions increase with rows in a cube
        at = pos[lo:hi] - int(tr) * t_rows
        a0 = int(at[0])
        if int(at[-1]) - a0 + 1 == len(at):  # a run of rows: a slice, not a gather
            at = slice(a0, a0 + len(at))
        if per_slab == 1:  # tiles hold whole cells: the tile is the C-ordered (row, chan, corr) block
            start = int(tr) * bucket
            view = _tile(pieces.get(member, start, start + bucket), dt, ntile).reshape(tuple(reversed(tile)))
            out[lo:hi] = view[at, c0:c1, : shape[0]] if three else view[at, : shape[0]]
            continue
        t1 = tile[1] if three else 1
        block = np.empty((grid[0] * tile[0], (j1 - j0) * t1, t_rows), dtype=out.dtype, order="F")
        for k1 in range(j0, j1):
            for k0 in range(grid[0]):
                start = (int(tr) * per_slab + k0 + grid[0] * k1) * bucket
                t = _tile(pieces.get(member, start, start + bucket), dt, ntile).reshape(
                    (tile[0], t1, t_rows), order="F"
                )
                block[k0 * tile[0] : (k0 + 1) * tile[0], (k1 - j0) * t1 : (k1 - j0 + 1) * t1] = t
        base = j0 * t1
        cells = block[: shape[0], c0 - base : c1 - base, at].transpose(2, 1, 0)  # (row, chan, corr)
        out[lo:hi] = cells if three else cells[:, 0, :]
    return idx, out


def _in_place(
    pieces: Pieces,
    member: str,
    dt: np.dtype,
    tile: Sequence[int],
    shape: Sequence[int],
    bucket: int,
    pos: np.ndarray,
) -> np.ndarray | None:
    """The values of cube positions ``pos`` as a view of the fetched buffer, no copy, where the
    file already holds them as the C-ordered array (row, [chan,] corr) a caller gets: tiles of
    whole cells (each tile's cell shape the cube's), native byte order, values not bit-packed,
    no padding in a bucket, consecutive positions whose tiles lie in one writable fetched piece.
    None where any of this does not hold: the caller copies."""
    t_rows, itemsize = int(tile[-1]), dt.itemsize
    cells = [int(t) for t in tile[:-1]]
    if (
        not len(pos)
        or dt == np.bool_
        or not dt.isnative
        or cells != [int(x) for x in shape]
        or bucket != int(np.prod(tile)) * itemsize
        or int(pos[-1]) - int(pos[0]) + 1 != len(pos)
    ):
        return None
    first, last = int(pos[0]) // t_rows, int(pos[-1]) // t_rows
    raw = pieces.find(member, first * bucket, (last + 1) * bucket)
    if raw is None or raw.readonly:
        return None
    values = np.frombuffer(raw, dt).reshape(-1, *reversed(cells))
    at = int(pos[0]) - first * t_rows
    values = values[at : at + len(pos)]
    return values if values.flags.aligned else None
