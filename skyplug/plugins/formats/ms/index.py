"""Index an MS from its small files only: layouts, row groups, spectral windows, antennas, fields.

One round reads ``table.dat``; a second reads every small file whole (SSM, ISM, tiled-storage
headers, subtables) and the Dysco header. Bulk files (tiles, Dysco blocks) are never read: the
index opens a sparse mirror with python-casacore, where they are holes of their true size. The
index keeps the tiny files a load reads, compressed (``load_inline``, see
:mod:`~skyplug.plugins.formats.ms.inline`), for partitions to carry.
"""

from __future__ import annotations

import base64
import lzma
import math
import warnings
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError, SkyplugWarning
from skyplug.core.source import Tree
from skyplug.plugins.formats.ms import dysco, inline, limits, mirror, tsm, where
from skyplug.plugins.formats.ms import layout as lay
from skyplug.plugins.formats.ms.tabledat import Truncated, parse_table_dat

SUBTABLES = ("ANTENNA", "SPECTRAL_WINDOW", "POLARIZATION", "DATA_DESCRIPTION", "FIELD", "OBSERVATION")


def build_index(tree: Tree) -> dict[str, Any]:
    """The JSON index of the MS in ``tree`` (a folder, an S3 prefix or a zip)."""
    uri, members = tree.uri, tree.members()
    try:
        root = lay.find_root(members)
    except ValueError as exc:
        raise FormatError(uri, str(exc)) from exc
    limits.check_small(uri, members, [root + "table.dat"])  # before reading it, as any small file
    raw = tree.read_member(root + "table.dat")
    tdat = parse_main_table_dat(raw, f"{uri}/{root}table.dat")
    big = lay.big_files(root, members, tdat.managers)
    dysco_files = [name for name, seq in big.items() if tdat.managers[seq] == "DyscoStMan"]
    small = [m for m in mirror.small_members(members, root, list(big)) if m != root + "table.dat"]
    limits.check_small(uri, members, [root + "table.dat", *small])
    requests = [(m, 0, members[m]) for m in small]
    requests += [(root + name, 0, min(members[root + name], dysco.HEAD_READ)) for name in dysco_files]
    datas = tree.read_ranges(requests)
    files = {root + "table.dat": raw, **dict(zip(small, datas[: len(small)], strict=True))}
    small_dir = mirror.cache_dir(uri, tree.version)
    if not small_dir.is_dir():
        mirror.store(small_dir, root, files, {name: members[root + name] for name in big}, obj=uri)
    heads = dict(zip(dysco_files, datas[len(small) :], strict=True))
    sizes = {name: members[root + name] for name in big}
    pieces = [(name, 0, head) for name, head in heads.items()]
    with mirror.sparse_mirror(small_dir, sizes, pieces) as ms:
        tab = mirror.open_table(ms, uri)
        try:
            index = _read_main(tab, uri, root, tdat, heads, sizes)
        finally:
            tab.close()
        problems = mirror.subtable_problems(ms)
        index.update(_read_subtables(ms, problems))
    if problems:
        warnings.warn(
            f"{uri}: subtables left out (absent or unreadable): "
            + "; ".join(f"{k} ({why})" for k, why in problems.items()),
            SkyplugWarning,
            stacklevel=2,
        )
    index.update(
        {
            "root": root,
            "big": sorted(big),
            "big_sizes": {name: sizes[name] for name in sorted(big)},
            "ms_bytes": sum(s for m, s in members.items() if m.startswith(root)),
            "small_bytes": sum(map(len, files.values())),
            **_load_files(members, root, big, files),
        }
    )
    return index


def _load_files(
    members: dict[str, int], root: str, big: dict[str, int], files: dict[str, bytes]
) -> dict[str, Any]:
    """What partitions carry for a cold worker: the size of every small file loading arrays reads
    (``load_sizes``: no listing needed) and the tiny ones themselves (``load_inline``)."""
    names = mirror.load_members(members, root, big, lay.LOAD_SUBTABLES)
    return {
        "load_sizes": {m: members[m] for m in names},
        "load_inline": inline.pack({m: files[m] for m in names}),
    }


def parse_main_table_dat(raw: bytes, obj: str) -> Any:
    """The main ``table.dat`` (object ``obj``), every column's manager checked to be supported."""
    try:
        tdat = parse_table_dat(raw)
    except Truncated as exc:
        raise FormatError(obj, f"corrupt or truncated table.dat: {exc}", offset=exc.offset) from exc
    except ValueError as exc:
        raise FormatError(obj, f"corrupt table.dat: {exc}") from exc
    for col, seq in tdat.columns.items():
        kind = tdat.managers.get(seq, f"<no data manager {seq}>")
        if kind not in lay.SUPPORTED:
            raise FormatError(
                obj,
                f"column {col} is stored by {kind}, which skyplug cannot read "
                f"(supported: {', '.join(lay.SUPPORTED)})",
            )
    for col in lay.INDEX_COLUMNS:
        kind = tdat.managers.get(tdat.columns.get(col, -1), "")
        if col in tdat.columns and kind not in ("StandardStMan", "IncrementalStMan"):
            raise FormatError(
                obj,
                f"column {col} is stored by {kind}; skyplug indexes it only from "
                "StandardStMan or IncrementalStMan",
            )
    return tdat


def _read_main(
    tab: Any, uri: str, root: str, tdat: Any, heads: dict[str, bytes], sizes: dict[str, int]
) -> dict[str, Any]:
    nrow = tab.nrows()
    dminfo = {int(v["SEQNR"]): v for v in tab.getdminfo().values()}
    columns = {}
    for col in tab.colnames():
        desc = tab.getcoldesc(col)
        dm = dminfo.get(tdat.columns.get(col, -1), {})
        columns[col] = {
            "dtype": desc.get("valueType"),
            "ndim": int(desc.get("ndim", 0)),
            "shape": [int(x) for x in desc.get("shape", [])],
            "dm": dm.get("TYPE", "?"),
            "dm_name": dm.get("NAME", ""),
        }
    managers = []
    for seq, info in sorted(dminfo.items()):
        kind, cols = info["TYPE"], list(info.get("COLUMNS", []))
        entry: dict[str, Any] = {
            "type": kind,
            "name": info.get("NAME", ""),
            "seqnr": seq,
            "columns": cols,
            "dtype": columns[cols[0]]["dtype"] if cols else None,
        }
        if kind in lay.TILED:
            entry["cubes"] = _cubes(tab, uri, root, seq, kind, info, cols, sizes)
            entry["numpy"] = tsm.decodable(cols, entry["dtype"], entry["cubes"])
        elif kind == "DyscoStMan":
            entry.update(_dysco(uri, root, seq, cols, heads, sizes, nrow))
        managers.append(entry)
    cols = {c: tab.getcol(c) if c in columns else None for c in lay.INDEX_COLUMNS}
    time = np.asarray(cols["TIME"], dtype=np.float64)
    ddid = np.zeros(nrow, np.int64) if cols["DATA_DESC_ID"] is None else np.asarray(cols["DATA_DESC_ID"])
    times = np.unique(time)
    tidx = np.searchsorted(times, time)
    change = np.flatnonzero((np.diff(tidx) != 0) | (np.diff(ddid) != 0)) + 1
    starts = np.concatenate([[0], change]).astype(int)
    stops = np.concatenate([change, [nrow]]).astype(int)
    groups = [[int(a), int(b), int(tidx[a]), int(ddid[a])] for a, b in zip(starts, stops, strict=True)]
    a1, a2 = np.asarray(cols["ANTENNA1"]), np.asarray(cols["ANTENNA2"])
    interval = float(tab.getcell("INTERVAL", 0)) if "INTERVAL" in columns and nrow else 0.0
    exposure = float(tab.getcell("EXPOSURE", 0)) if "EXPOSURE" in columns and nrow else interval
    spans = _time_spans(tab, columns, time, times, tidx, a1, a2, ddid) if nrow else {}
    return {
        **spans,
        "keys": _keys(tab, columns),
        "nrow": nrow,
        "endian": tab.endianformat(),
        "columns": columns,
        "managers": managers,
        "times": [float(t) for t in times],
        "groups": groups,
        "ddids_used": sorted({int(x) for x in np.unique(ddid)}),
        "baselines": len(np.unique(a1.astype(np.int64) * 100000 + a2)) if nrow else 0,
        "has_autocorrelations": bool(np.any(a1 == a2)) if nrow else False,
        "interval": interval,
        "exposure": exposure,
        "sorted_by_time": bool(np.all(np.diff(time) >= 0)),
    }


def _keys(tab: Any, columns: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-row values of the scalar columns a ``where`` predicate or a key partition may use.

    Only columns in the small files (StandardStMan, IncrementalStMan) are kept; TIME comes from
    ``groups`` and ``times``. Each is packed by :func:`pack`.
    """
    out = {}
    for col in where.COLUMNS:
        info = columns.get(col)
        if (
            col == "TIME"
            or not info
            or info["ndim"]
            or info["dm"] not in ("StandardStMan", "IncrementalStMan")
        ):
            continue
        out[col] = pack(np.asarray(tab.getcol(col)))
    return out


def pack(values: np.ndarray) -> dict[str, Any]:
    """A 1-D column as JSON: ``const`` when every row holds one value, else base64 of xz of the
    bytes; integers (and booleans) delta-coded first, in the narrowest type that holds the deltas
    (a DP3-like MS: about 0.05 byte per row for all the key columns)."""
    kind = values.dtype
    if len(values) and bool(np.all(values == values[0])):
        return {"dtype": kind.str, "n": len(values), "const": values[0].item()}
    if kind.kind in "iub":
        deltas = np.diff(values.astype(np.int64), prepend=0)
        big = int(np.abs(deltas).max()) if len(deltas) else 0
        code = next(t for t in ("<i1", "<i2", "<i4", "<i8") if big <= np.iinfo(t).max)
        raw = deltas.astype(code)
    else:
        code, raw = "<f8", values.astype("<f8")
    return {
        "dtype": kind.str,
        "n": len(values),
        "code": code,
        "xz": base64.b64encode(lzma.compress(raw.tobytes())).decode(),
    }


def unpack(packed: dict[str, Any]) -> np.ndarray:
    """The column :func:`pack` stored; a malformed entry is a ValueError (never a decompression
    bomb: at most ``n`` values are inflated)."""
    kind, n = np.dtype(packed["dtype"]), int(packed["n"])
    if "const" in packed:
        return np.full(n, packed["const"], kind)
    code = np.dtype(packed["code"])
    try:
        raw = lzma.LZMADecompressor().decompress(base64.b64decode(packed["xz"]), max_length=n * code.itemsize)
    except lzma.LZMAError as exc:
        raise ValueError(f"corrupt packed column: {exc}") from exc
    values = np.frombuffer(raw, code)
    if len(values) != n:
        raise ValueError(f"packed column holds {len(values)} values, not {n}")
    return (np.cumsum(values.astype(np.int64)) if kind.kind in "iub" else values).astype(kind)


def _time_spans(
    tab: Any,
    columns: dict[str, Any],
    time: np.ndarray,
    times: np.ndarray,
    tidx: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
    ddid: np.ndarray,
) -> dict[str, Any]:
    """Time coverage from every row's INTERVAL/EXPOSURE, and where time partitions may be cut.

    Rows of a baseline-dependent averaged MS carry their window's centroid and length, so one
    row's window may cover several timestamps. A cut between timestamps ``k-1`` and ``k`` is
    allowed only when no row window reaches across it; ``time_slots`` (first timestamp of each
    slot) is stored only when some cut is not allowed.
    """
    nrow = len(time)
    interval = np.asarray(tab.getcol("INTERVAL"), np.float64) if "INTERVAL" in columns else np.zeros(nrow)
    exposure = np.asarray(tab.getcol("EXPOSURE"), np.float64) if "EXPOSURE" in columns else interval
    lo_row, hi_row = time - interval / 2, time + interval / 2
    lo = np.full(len(times), np.inf)
    hi = np.full(len(times), -np.inf)
    np.minimum.at(lo, tidx, lo_row)
    np.maximum.at(hi, tidx, hi_row)
    positive = interval[interval > 0]
    tol = 1e-3 * float(positive.min()) if len(positive) else 0.0
    reach = np.maximum.accumulate(hi)[:-1]  # end of the latest window before each cut
    start = np.minimum.accumulate(lo[::-1])[::-1][1:]  # start of the earliest window after it
    cuts = np.concatenate([[True], reach <= start + tol])
    key = (a1.astype(np.int64) * 100000 + a2) * 1000 + ddid
    _, inverse = np.unique(key, return_inverse=True)
    out: dict[str, Any] = {
        "t_start": float(lo_row.min()),
        "t_end": float(hi_row.max()),
        "interval_min": float(interval.min()),
        "interval_max": float(interval.max()),
        "exptime": float(np.bincount(inverse, weights=exposure).max()),
    }
    if not cuts.all():
        out["time_slots"] = [int(k) for k in np.flatnonzero(cuts)]
    return out


def _cubes(
    tab: Any,
    uri: str,
    root: str,
    seq: int,
    kind: str,
    info: dict[str, Any],
    cols: list[str],
    sizes: dict[str, int],
) -> list[dict[str, Any]]:
    """Hypercubes of a tiled manager, each tile file checked to exist and to be long enough."""
    try:
        found = tsm.cubes(tab, seq, kind, info, cols)
    except tsm.GeometryError as exc:
        raise FormatError(f"{uri}/{root}table.f{seq}", str(exc)) from exc
    for cube in found:
        need = tsm.tile_grid(cube)[1] * cube["bucket"]
        size = sizes.get(cube["file"])
        where = f"{uri}/{root}{cube['file']}"
        if size is None:
            raise FormatError(where, f"tile file of column {', '.join(cols)} ({kind}) is missing")
        if size < need:
            raise FormatError(
                where,
                f"tile file of column {', '.join(cols)} ({kind}) is {size} bytes, its layout needs {need}",
                offset=size,
            )
    return found


def _dysco(
    uri: str, root: str, seq: int, cols: list[str], heads: dict[str, bytes], sizes: dict[str, int], nrow: int
) -> dict[str, Any]:
    name = f"table.f{seq}"
    where = f"{uri}/{root}{name}"
    if name not in heads:
        raise FormatError(where, f"file of column {', '.join(cols)} (DyscoStMan) is missing")
    try:
        head = dysco.header(heads[name])
    except ValueError as exc:
        raise FormatError(where, f"column {', '.join(cols)} (DyscoStMan): {exc}") from exc
    need = head["header_size"] + math.ceil(nrow / head["rows_per_block"]) * head["block_size"]
    if sizes[name] < need:
        raise FormatError(
            where,
            f"file of column {', '.join(cols)} (DyscoStMan) is {sizes[name]} bytes, its layout needs {need}",
            offset=sizes[name],
        )
    return {"file": name, **head}


def _read_subtables(ms: Any, problems: dict[str, str]) -> dict[str, Any]:
    """Spectral windows, polarisations, data descriptions, antennas, fields, observation.

    ``problems`` (absent or unreadable subtables, see ``mirror.subtable_problems``) are listed in
    ``bad_subtables`` and, with the standard subtables that cannot be read, ``missing_subtables``.
    """
    from casacore import tables

    out: dict[str, Any] = {"missing_subtables": sorted(problems), "bad_subtables": dict(problems)}

    def read(name: str) -> Any:
        if name in problems:
            return None
        try:
            return tables.table(str(ms / name), readonly=True, ack=False)
        except RuntimeError:
            out["missing_subtables"].append(name)
            return None

    def col(t: Any, name: str, default: Any = None) -> Any:
        return [t.getcell(name, i) for i in range(t.nrows())] if name in t.colnames() else default

    if (t := read("SPECTRAL_WINDOW")) is not None:
        freqs, widths = col(t, "CHAN_FREQ", []), col(t, "CHAN_WIDTH", [])
        out["spws"] = [
            {"freqs": [float(x) for x in f], "widths": [float(x) for x in w]}
            for f, w in zip(freqs, widths, strict=False)
        ]
        t.close()
    if (t := read("POLARIZATION")) is not None:
        out["pols"] = [[int(x) for x in c] for c in col(t, "CORR_TYPE", [])]
        t.close()
    if (t := read("DATA_DESCRIPTION")) is not None:
        out["ddids"] = [
            [int(s), int(p)]
            for s, p in zip(col(t, "SPECTRAL_WINDOW_ID", []), col(t, "POLARIZATION_ID", []), strict=False)
        ]
        t.close()
    if (t := read("ANTENNA")) is not None:
        out["antennas"] = {
            "names": [str(x) for x in col(t, "NAME", [])],
            "positions": [[float(v) for v in p] for p in col(t, "POSITION", [])],
            "dish_diameters": [float(x) for x in col(t, "DISH_DIAMETER", [])],
        }
        t.close()
    if (t := read("FIELD")) is not None:
        out["fields"] = [
            {"name": str(n), "phase_dir": [float(v) for v in np.asarray(d).reshape(-1, 2)[0]]}
            for n, d in zip(col(t, "NAME", []), col(t, "PHASE_DIR", []), strict=False)
        ]
        t.close()
    if (
        "STATE" not in problems
        and (ms / "STATE" / "table.dat").is_file()
        and (t := read("STATE")) is not None
    ):
        out["states"] = [str(x) for x in col(t, "OBS_MODE", [""] * t.nrows())]  # intents per STATE_ID
        t.close()
    if (t := read("OBSERVATION")) is not None:
        out["observation"] = {
            k: [str(x) for x in col(t, k, [])] for k in ("TELESCOPE_NAME", "OBSERVER", "PROJECT")
        }
        t.close()
    return out
