"""``--as ms`` of a channel block: the block's rows with every (chan, corr) cell cut to its channels.

The rows are deep-copied from the sparse mirror without the channel columns, so casacore never
reads a channel outside the block's tiles (those are holes); the channel columns are then added
back with the block's width, in managers of the same kind (Dysco written tiled, tile shapes
fitted to the new width), and filled by ``getcolslice`` of the fetched tiles, only where the
source has cells. Which cells have a channel axis is decided as the arrays load decides: (chan,
corr) cells of the window's width and FLAG_CATEGORY's (category, chan, corr); other array columns
(DP3's LOFAR_FULL_RES_FLAG, flags before averaging) are copied whole. The window's
SPECTRAL_WINDOW row is cut as DP3 cuts it after a channel selection (:func:`cut_window`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skyplug.plugins.formats.ms import tsm
from skyplug.plugins.formats.ms.layout import TILED

PER_CHANNEL = ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION")  # SPECTRAL_WINDOW's, per channel
TILE_BYTES = 1 << 20  # tile size for columns that had no tiles (Dysco)
CHUNK_BYTES = 64 << 20  # rows are copied in chunks of about this many bytes of sliced cells


def cell_dims(tab: Any, col: str, row: int) -> list[int]:
    """A cell's shape in numpy order."""
    return [int(x) for x in tab.getcolshapestring(col, row, 1)[0].strip("[]").split(",")]


def chan_columns(sub: Any, nchan: int | None) -> dict[str, np.ndarray]:
    """Columns whose cells in ``sub`` have a channel axis of the window -> which rows have a cell.

    The rule of the arrays load: 2-D (chan, corr) and 3-D FLAG_CATEGORY cells whose chan axis
    (second to last) is the window's width; a column with no cell in these rows is left as is.
    """
    out = {}
    for col in sub.colnames():
        if sub.isscalarcol(col):
            continue
        defined = tsm.defined_rows(sub, col)
        if not defined.any():
            continue
        dims = cell_dims(sub, col, int(np.flatnonzero(defined)[0]))
        if len(dims) in (2, 3) and (not nchan or dims[-2] == nchan):
            out[col] = np.array(defined, bool)
    return out


def write(tab: Any, rows: np.ndarray, chan: list[int], nchan: int | None, dest: Path) -> None:
    """The rows of ``tab`` cut to channels ``chan`` as a new MS at ``dest`` (with its subtables)."""
    from casacore import tables

    sub = tab.selectrows(rows)
    try:
        cols = chan_columns(sub, nchan)
        keep = [c for c in sub.colnames() if c not in cols]
        rest = sub.query(columns=", ".join(keep))
        try:
            rest.copy(str(dest), deep=True, valuecopy=False).close()
        finally:
            rest.close()
        with tables.table(str(dest), readonly=False, ack=False) as new:
            for info in tab.getdminfo().values():
                group = [c for c in info.get("COLUMNS", []) if c in cols]
                if group:
                    _add_columns(tab, new, info, group, chan[1] - chan[0])
            for col, defined in cols.items():
                _fill(sub, new, col, chan, defined)
        ddid = int(tab.getcell("DATA_DESC_ID", int(rows[0]))) if len(rows) else 0
        cut_window(dest, ddid, chan)
    finally:
        sub.close()


def _add_columns(tab: Any, new: Any, info: dict[str, Any], group: list[str], width: int) -> None:
    """Add ``group`` (columns of one source manager) to ``new`` with ``width`` channels, in a manager
    of the same kind (Dysco as tiled: re-encoding would change the values)."""
    from casacore import tables

    descs = {c: dict(tab.getcoldesc(c)) for c in group}
    fixed = all("shape" in d for d in descs.values())
    kind = info["TYPE"]
    if kind == "DyscoStMan":
        kind = "TiledColumnStMan" if fixed else "TiledShapeStMan"
    spec: dict[str, Any] = {}
    tile = info.get("SPEC", {}).get("DEFAULTTILESHAPE")
    if kind in TILED and tile is not None and len(tile) >= 3:
        tile = [int(x) for x in tile]
        tile[1] = max(1, min(tile[1], width))  # Fortran order (corr, chan, ..., row)
        spec["DEFAULTTILESHAPE"] = np.asarray(tile, np.int32)
    elif kind == "TiledColumnStMan":  # from Dysco: whole cells, about TILE_BYTES of complex per tile
        cell = [int(x) for x in next(iter(descs.values()))["shape"]][::-1]
        cell[1] = width
        rows = max(1, TILE_BYTES // (8 * int(np.prod(cell))))
        spec["DEFAULTTILESHAPE"] = np.asarray([*cell, rows], np.int32)
    name = f"{info['NAME']}Chan"
    for d in descs.values():
        if "shape" in d:
            shape = [int(x) for x in d["shape"]]
            shape[-2] = width
            d["shape"] = np.asarray(shape, np.int32)
        d["dataManagerType"], d["dataManagerGroup"] = kind, name
    desc = tables.maketabdesc([tables.makecoldesc(c, d) for c, d in descs.items()])
    new.addcols(desc, dminfo={"TYPE": kind, "NAME": name, "SPEC": spec, "COLUMNS": group})


def _fill(sub: Any, new: Any, col: str, chan: list[int], defined: np.ndarray) -> None:
    """Copy ``col``'s cells cut to ``chan`` from ``sub`` to ``new``, only in the rows that have one
    (the others stay undefined), a chunk of rows at a time."""
    idx = np.flatnonzero(defined)
    if not len(idx):
        return
    part = defined.all()
    src = sub if part else sub.selectrows(idx)
    dst = new if part else new.selectrows(idx)
    try:
        dims = cell_dims(src, col, 0)
        blc, trc = [0] * len(dims), [d - 1 for d in dims]
        blc[-2], trc[-2] = chan[0], chan[1] - 1
        per_row = max(1, int(np.prod(dims)) // max(1, dims[-2]) * (chan[1] - chan[0]) * 16)
        step = max(1, CHUNK_BYTES // per_row)
        for start in range(0, len(idx), step):
            count = min(step, len(idx) - start)
            dst.putcol(col, src.getcolslice(col, blc, trc, startrow=start, nrow=count), start, count)
    finally:
        if not part:
            src.close()
            dst.close()


def cut_window(ms: Path, ddid: int, chan: list[int]) -> None:
    """The spectral window of ``ddid`` cut to ``chan``, as DP3 cuts it after a channel selection:
    the per-channel columns sliced, NUM_CHAN the block's width, TOTAL_BANDWIDTH the sum of its
    EFFECTIVE_BW; REF_FREQUENCY is the window's reference and stays as it is."""
    from casacore import tables

    with tables.table(str(ms / "DATA_DESCRIPTION"), ack=False) as dd:
        spw = int(dd.getcell("SPECTRAL_WINDOW_ID", ddid))
    with tables.table(str(ms / "SPECTRAL_WINDOW"), readonly=False, ack=False) as tab:
        for col in PER_CHANNEL:
            if col in tab.colnames() and tab.iscelldefined(col, spw):
                cells = _unfixed(tab, col, chan[1] - chan[0])
                tab.putcell(col, spw, np.asarray(cells[spw])[chan[0] : chan[1]].copy())
        tab.putcell("NUM_CHAN", spw, chan[1] - chan[0])
        if "EFFECTIVE_BW" in tab.colnames() and tab.iscelldefined("EFFECTIVE_BW", spw):
            tab.putcell("TOTAL_BANDWIDTH", spw, float(np.sum(tab.getcell("EFFECTIVE_BW", spw))))


def _unfixed(tab: Any, col: str, width: int) -> list[Any]:
    """Every cell of ``col`` (None where undefined), the column made able to take ``width``
    channels in one row: a fixed-shape column (DP3 writes CHAN_FREQ as [nchan]) is defined again
    with that shape when it is the only window, else variable-shaped, its other cells put back."""
    from casacore import tables

    cells = [tab.getcell(col, r) if tab.iscelldefined(col, r) else None for r in range(tab.nrows())]
    desc = dict(tab.getcoldesc(col))
    if "shape" not in desc or tab.isvarcol(col):
        return cells
    if tab.nrows() == 1:
        desc["shape"] = np.asarray([width], np.int32)
    else:
        del desc["shape"]
        desc["options"] = int(desc.get("options", 0)) & ~4  # no longer FixedShape
    desc.pop("dataManagerType", None)
    desc.pop("dataManagerGroup", None)
    tab.removecols(col)
    tab.addcols(tables.maketabdesc([tables.makecoldesc(col, desc)]))
    for r, cell in enumerate(cells):
        if cell is not None and tab.nrows() > 1:
            tab.putcell(col, r, cell)
    return cells
