"""Partitions of an indexed MS: by time (whole timestamps), rows, spectral window, channels, or a
metadata key: ``field`` (FIELD_ID), ``scan`` (SCAN_NUMBER), ``state`` (STATE_ID), ``intent`` (the
STATE subtable's OBS_MODE: the STATE_IDs of one intent stay together), ``observation``
(OBSERVATION_ID) and ``antenna1`` (a baseline goes with its first antenna, so each row is in one
partition). A key plan groups the distinct values, whole, into ``n`` partitions of near-equal
rows. ``where`` (see :mod:`~skyplug.plugins.formats.ms.where`) restricts the rows of any plan.

Time partitions hold whole time slots: in a baseline-dependent averaged MS a slot is a run of
timestamps that some row's averaging window spans, so no averaged row straddles two partitions.

A partition names its rows by predicates a worker re-evaluates on the small files (a row span,
a time window, a DATA_DESC_ID, baselines) plus the expected row count, and lists the byte ranges
of the tiles / Dysco blocks those rows and channels need: one range per tiled column when the
rows are contiguous and the tiles hold whole cells. Time and row partitions are never split by
DATA_DESC_ID, so ``n`` gives at most ``n`` partitions whatever the spectral windows; when the
windows of a partition differ in (chan, corr) shape, it lists them with their row counts
(``selection["ddids"]``) and its arrays come per DATA_DESC_ID (see ``load.groups``). A plan
with fewer partitions than asked says why in every partition's ``meta["note"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.core.errors import PluginError
from skyplug.core.format import make_partition, split_even
from skyplug.core.partition import Partition
from skyplug.core.source import Source, plan_ranges
from skyplug.plugins.formats.ms import dysco, limits, tsm
from skyplug.plugins.formats.ms import layout as lay
from skyplug.plugins.formats.ms import where as where_mod
from skyplug.plugins.formats.ms.index import unpack

KEYS = {
    "field": "FIELD_ID",
    "scan": "SCAN_NUMBER",
    "state": "STATE_ID",
    "intent": "STATE_ID",
    "observation": "OBSERVATION_ID",
    "antenna1": "ANTENNA1",
}
AXES = ("time", "rows", "spw", "chan", *KEYS)
MAX_EXPLICIT = 16  # more ranges than this are stored as strided groups in ``meta``


def cell_shape(index: dict[str, Any], ddid: int) -> tuple[int, int]:
    """(nchan, ncorr) of a DATA_DESC_ID, from the subtables."""
    spw, pol = index.get("ddids", [[0, 0]])[ddid] if ddid < len(index.get("ddids", [])) else (0, 0)
    nchan = len(index["spws"][spw]["freqs"]) if spw < len(index.get("spws", [])) else 0
    ncorr = len(index["pols"][pol]) if pol < len(index.get("pols", [])) else 0
    return nchan, ncorr


def plan(
    index: dict[str, Any],
    by: str,
    n: int,
    *,
    baselines: Sequence[Sequence[int]] | None = None,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    **opts: Any,
) -> list[Partition]:
    """``n`` partitions along ``by`` (per DATA_DESC_ID where shapes differ); ``baselines`` filters
    rows, ``columns`` names the main-table columns to load (only their bulk bytes are fetched),
    ``where`` is a predicate on scalar columns the rows must match."""
    if by not in AXES:
        raise PluginError(f"{index.get('uri')}: MS partitions by {', '.join(AXES)}, not {by!r}")
    if columns is not None:
        columns = [columns] if isinstance(columns, str) else list(columns)
        unknown = [c for c in columns if c not in index["columns"]]
        if unknown or not columns:
            raise PluginError(
                f"{index.get('uri')}: no column {', '.join(map(repr, unknown)) or '(none given)'} "
                f"in the main table (columns: {', '.join(index['columns'])})"
            )
    groups = np.asarray(index["groups"], dtype=np.int64).reshape(-1, 4)
    ddids = index["ddids_used"]
    shapes = {d: cell_shape(index, d) for d in ddids}
    per_ddid = ddids if by in ("spw", "chan") else [None]
    mask = None
    if where is not None:
        node = where_mod.parse(where, ("TIME", *_keys(index)), f"{index.get('uri')}: where")
        mask = np.asarray(where_mod.evaluate(node, lambda c: column(index, c)), bool)
        if not mask.any():
            raise PluginError(f"{index.get('uri')}: no row matches where {where!r}")
    sels: list[dict[str, Any]] = []
    values = None
    if by in KEYS:
        values = column(index, KEYS[by])
        sels = _key_selections(index, by, n, values if mask is None else values[mask])
    elif by == "time":  # whole slots: no row's averaging window reaches across a cut
        times = index["times"]
        bounds = [*(index.get("time_slots") or range(len(times))), len(times)]
        for i, j in split_even(len(bounds) - 1, n) if times else []:
            a, b = bounds[i], bounds[j]
            sels += [{"time": [times[a], times[b - 1]], "tidx": (a, b), "ddid": d} for d in per_ddid]
    elif by == "rows":
        for a, b in split_even(index["nrow"], n):
            sels += [{"rows": (a, b), "ddid": d} for d in per_ddid]
    elif by == "spw":
        sels = [{"ddid": d} for d in ddids]
    else:
        for d in ddids:
            sels += [
                {
                    "chan": [c0, c1],
                    "ddid": d if len(ddids) > 1 else None,
                    "nchan": shapes[d][0],
                }
                for c0, c1 in split_even(shapes[d][0], n)
            ]
    row_ddid = np.repeat(groups[:, 3], groups[:, 1] - groups[:, 0])  # groups are row runs, in order
    parts = []
    for sel in sels:
        rows = _rows(groups, sel)
        if values is not None:
            rows = rows[np.isin(values[rows], sel["values"])]
        if mask is not None:
            rows = rows[mask[rows]]
        if len(rows):
            used, counts = np.unique(row_ddid[rows], return_counts=True)
            if sel.get("ddid") is None and len({shapes.get(int(d)) for d in used}) > 1:
                sel["ddids"] = [[int(d), int(c)] for d, c in zip(used, counts, strict=True)]
            parts.append((sel, rows))
    note = _fewer_note(index, by, n, len(parts)) if len(parts) < n else None
    if where is not None:
        for sel, _ in parts:
            sel["where"] = where
    return [
        _partition(index, i, len(parts), sel, rows, baselines, note, columns)
        for i, (sel, rows) in enumerate(parts)
    ]


def _keys(index: dict[str, Any]) -> dict[str, Any]:
    if "keys" not in index:
        raise PluginError(f"{index.get('uri')}: the index predates key partitions; rebuild it (--refresh)")
    return dict(index["keys"])


def column(index: dict[str, Any], name: str) -> np.ndarray:
    """Every row's value of a scalar column the index carries (TIME from its row groups)."""
    groups = np.asarray(index["groups"], dtype=np.int64).reshape(-1, 4)
    if name == "TIME":
        tidx = np.repeat(groups[:, 2], groups[:, 1] - groups[:, 0])
        return np.asarray(index["times"], np.float64)[tidx]
    keys = _keys(index)
    if name not in keys:
        raise PluginError(
            f"{index.get('uri')}: column {name} is not in the MS's small files, "
            f"so it cannot select rows (usable: TIME, {', '.join(keys)})"
        )
    try:
        values = unpack(keys[name])
    except (ValueError, KeyError, TypeError) as exc:
        raise PluginError(
            f"{index.get('uri')}: the index's {name} is corrupt ({exc}); rebuild it (--refresh)"
        ) from exc
    if len(values) != index["nrow"]:
        raise PluginError(
            f"{index.get('uri')}: the index's {name} has {len(values)} rows, not {index['nrow']}"
        )
    return values


def key_counts(index: dict[str, Any]) -> str:
    """``scan 3, field 2, ...``: how many partitions each key axis gives with one per value."""
    out = []
    for by, col in KEYS.items():
        if col in index.get("keys", {}):
            values = np.unique(column(index, col))
            count = len({intent_of(index, int(v)) for v in values}) if by == "intent" else len(values)
            out.append(f"{by} {count}")
    return ", ".join(out)


def intent_of(index: dict[str, Any], state: int) -> str:
    """The OBS_MODE of a STATE_ID (``STATE_ID <n>`` when the STATE subtable does not name it)."""
    states = index.get("states") or []
    return states[state] if 0 <= state < len(states) and states[state] else f"STATE_ID {state}"


def _key_selections(index: dict[str, Any], by: str, n: int, values: np.ndarray) -> list[dict[str, Any]]:
    """Whole key values grouped into ``n`` runs (in value order) of near-equal row counts."""
    distinct, counts = np.unique(values, return_counts=True)
    if by == "intent":  # one unit per intent, holding all its STATE_IDs
        names = [intent_of(index, int(v)) for v in distinct]
        order = sorted(set(names))
        units = [[int(v) for v, m in zip(distinct, names, strict=True) if m == name] for name in order]
        weights = [int(sum(c for c, m in zip(counts, names, strict=True) if m == name)) for name in order]
    else:
        units = [[int(v)] for v in distinct]
        weights = [int(c) for c in counts]
    sels = []
    for i, j in _balanced(weights, n):
        vals = sorted(v for u in units[i:j] for v in u)
        sel: dict[str, Any] = {"key": KEYS[by], "values": vals, "ddid": None}
        if by in ("state", "intent"):
            sel["intents"] = sorted({intent_of(index, v) for v in vals})
        sels.append(sel)
    return sels


def _balanced(weights: Sequence[int], n: int) -> list[tuple[int, int]]:
    """[start, stop) bounds of ``min(n, len(weights))`` runs of whole units, near-equal in weight."""
    k = max(1, min(n, len(weights)))
    cum = np.concatenate([[0], np.cumsum(weights)])
    cuts = [0]
    for j in range(1, k):
        target = cum[-1] * j / k
        c = int(np.argmin(np.abs(cum - target)))
        cuts.append(min(max(c, cuts[-1] + 1), len(weights) - (k - j)))
    return list(zip(cuts, [*cuts[1:], len(weights)], strict=True))


def _fewer_note(index: dict[str, Any], by: str, n: int, got: int) -> str:
    """Why a plan along ``by`` has ``got`` partitions rather than the ``n`` asked for."""
    if by == "time":
        if index.get("time_slots"):
            return (
                f"{got} partitions, not {n}: rows averaged over several timestamps (baseline-dependent "
                f"averaging) join the {len(index['times'])} timestamps into {got} whole time windows"
            )
        return f"{got} partitions, not {n}: the MS has {got} timestamps"
    if by == "rows":
        return f"{got} partitions, not {n}: the MS has {index['nrow']} rows"
    if by == "spw":
        return f"{got} partitions, not {n}: one per DATA_DESC_ID in use ({got})"
    if by in KEYS:
        what = "intents" if by == "intent" else f"{KEYS[by]} values"
        return f"{got} partitions, not {n}: the selected rows hold {got} distinct {what}"
    return f"{got} partitions, not {n}: the spectral windows have fewer channels than {n}"


def _rows(groups: np.ndarray, sel: dict[str, Any]) -> np.ndarray:
    """Sorted row numbers of a selection, from the index's (start, stop, time, ddid) runs."""
    keep = np.ones(len(groups), bool)
    if "tidx" in sel:
        keep &= (groups[:, 2] >= sel["tidx"][0]) & (groups[:, 2] < sel["tidx"][1])
    if sel.get("ddid") is not None:
        keep &= groups[:, 3] == sel["ddid"]
    g = groups[keep]
    rows = np.concatenate([np.arange(a, b) for a, b in g[:, :2]]) if len(g) else np.zeros(0, np.int64)
    rows = np.sort(rows)
    if "rows" in sel:
        rows = rows[(rows >= sel["rows"][0]) & (rows < sel["rows"][1])]
    return rows


def _partition(
    index: dict[str, Any],
    i: int,
    count: int,
    sel: dict[str, Any],
    rows: np.ndarray,
    baselines: Sequence[Sequence[int]] | None,
    note: str | None,
    columns: Sequence[str] | None = None,
) -> Partition:
    root, chan, nchan = index["root"], sel.get("chan"), sel.get("nchan")
    per_file: dict[str, list[tuple[int, int]]] = {}
    managers = [dm for dm in index["managers"] if columns is None or set(dm["columns"]) & set(columns)]
    for dm in managers:
        if dm["type"] in lay.TILED:
            for cube in dm["cubes"]:
                per_file[root + cube["file"]] = tsm.cube_ranges(cube, rows, tsm.chan_of(cube, chan, nchan))
        elif dm["type"] == "DyscoStMan":
            per_file[root + dm["file"]] = dysco.ranges(dm, rows)
    for dm in index["managers"]:  # casacore opens every Dysco manager: the others need their header
        if dm["type"] == "DyscoStMan" and dm not in managers:
            per_file[root + dm["file"]] = [(0, dm["header_size"])]
    # near ranges are joined exactly as Source.read_ranges will, so planned bytes = fetched bytes
    requests = [
        (m, s, e) for m, rs in per_file.items() for s, e in plan_ranges(rs, Source.max_gap, max_part=1 << 62)
    ]
    selection = {
        "span": [int(rows[0]), int(rows[-1]) + 1],
        "time": sel.get("time"),
        "ddid": sel.get("ddid"),
        "ddids": sel.get("ddids"),
        "chan": chan,
        "baselines": [[int(a), int(b)] for a, b in baselines] if baselines else None,
        "columns": list(columns) if columns else None,
        "key": sel.get("key"),
        "values": sel.get("values"),
        "where": sel.get("where"),
        "nrows": len(rows),
    }
    selection = {k: v for k, v in selection.items() if v is not None}
    total = sum(e - s for _, s, e in requests)
    explicit = requests if len(requests) <= MAX_EXPLICIT else []
    casacore_bulk = any(dm["type"] == "DyscoStMan" for dm in index["managers"]) or any(
        dm["type"] in lay.TILED and not dm.get("numpy") for dm in managers
    )
    # bulk file sizes travel with the partition: a worker needs no listing of a zip to load it
    big = index["big_sizes"] if "big_sizes" in index else index["big"]
    meta: dict[str, Any] = {
        "root": root,
        "big": big,
        "small_bytes": index["small_bytes"],
        "casacore_bulk": casacore_bulk,
    }
    meta.update(_carried(index, requests))
    if not explicit:
        meta["strided"] = lay.compress(requests)
        meta["range_count"] = len(requests)
    if note:
        meta["note"] = note
    if "intents" in sel:
        meta["intents"] = sel["intents"]
    if chan is not None and nchan:
        meta["nchan"] = nchan  # the window's channels: a block cuts only cells of (corr, nchan)
    return make_partition(index, i, count, selection, explicit, expected_bytes=total, **meta)


def _carried(index: dict[str, Any], reqs: Sequence[tuple[str, int, int]]) -> dict[str, Any]:
    """What a partition of a remote MS carries for a cold worker (see ``index._load_files``): the
    sizes of the small files a load reads and, within ``[formats.ms] inline_bytes``, the tiny ones;
    ``members`` names what else it fetches, so its container spares the worker a listing. Nothing
    for a local MS: its small files are read in place."""
    uri = str(index.get("uri", ""))
    if "load_sizes" not in index or "://" not in uri or uri.startswith("file://"):
        return {}
    packed = index["load_inline"]
    if len(packed["z"]) > limits.inline_bytes() * 4 // 3 + 4:  # base64 of the configured budget
        packed = {"files": [], "z": ""}
    carried = {name for name, _ in packed["files"]}
    fetched = {m for m, _, _ in reqs} | {m for m in index["load_sizes"] if m not in carried}
    return {"small": {"sizes": index["load_sizes"], "inline": packed}, "members": sorted(fetched)}


def requests(p: Partition) -> list[tuple[str, int, int]]:
    """The (member, start, end) requests of a partition, explicit or strided."""
    return list(p.ranges) if p.ranges or "strided" not in p.meta else lay.expand(p.meta["strided"])


def coverage(index: dict[str, Any], p: Partition) -> dict[str, Any]:
    """Bytes per column, time span (MJD s) and frequency span (Hz) of a partition, for pictures."""
    root = index["root"]
    owner = {
        root + f: ", ".join(dm["columns"])
        for dm in index["managers"]
        for f in [c["file"] for c in dm.get("cubes", [])] + ([dm["file"]] if dm.get("file") else [])
    }
    sel = p.selection
    out: dict[str, Any] = {"bytes": [(owner.get(m, m[len(root) :]), s, e) for m, s, e in requests(p)]}
    times, half = index.get("times") or [], (index.get("interval_min") or 0.0) / 2
    if sel.get("time"):
        out["time"] = [sel["time"][0] - half, sel["time"][1] + half]
    elif times:
        groups = np.asarray(index["groups"], dtype=np.int64).reshape(-1, 4)
        a, b = sel.get("span", [0, index["nrow"]])
        tidx = groups[(groups[:, 0] < b) & (groups[:, 1] > a), 2]
        if len(tidx):
            out["time"] = [times[int(tidx.min())] - half, times[int(tidx.max())] + half]
    ddids = [sel["ddid"]] if sel.get("ddid") is not None else index["ddids_used"]
    lo, hi = [], []
    for d in ddids:
        spw = index["ddids"][d][0] if d < len(index.get("ddids", [])) else 0
        freqs = index["spws"][spw]["freqs"] if spw < len(index.get("spws", [])) else []
        if not freqs:
            continue
        c0, c1 = sel.get("chan") or [0, len(freqs)]
        width = abs(freqs[1] - freqs[0]) / 2 if len(freqs) > 1 else 0.0
        lo.append(min(freqs[c0], freqs[c1 - 1]) - width)
        hi.append(max(freqs[c0], freqs[c1 - 1]) + width)
    if lo:
        out["freq"] = [min(lo), max(hi)]
    return out
