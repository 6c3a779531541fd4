"""Which files of an MS are bulk data, and helpers on rows and byte ranges.

Bulk files are the tiles of TiledColumnStMan / TiledShapeStMan (``table.fN_TSMk``, see ``tsm``)
and the blocks of DyscoStMan (``table.fN``, see ``dysco``). StandardStMan and IncrementalStMan
files, tiled-storage headers and subtables are the small files, read whole by the index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

TILED = ("TiledColumnStMan", "TiledShapeStMan")
SUPPORTED = ("StandardStMan", "IncrementalStMan", "DyscoStMan", *TILED)
INDEX_COLUMNS = ("TIME", "DATA_DESC_ID", "ANTENNA1", "ANTENNA2")
LOAD_SUBTABLES = ("ANTENNA", "DATA_DESCRIPTION", "SPECTRAL_WINDOW")  # what loading arrays reads of them

Range = tuple[int, int]


def find_root(members: Iterable[str]) -> str:
    """The MS folder inside a tree: ``""`` for a plain MS, ``"SB226.ms/"`` inside a zip."""
    members = list(members)
    roots = [m[: -len("table.dat")] for m in members if m == "table.dat" or m.endswith("/table.dat")]
    if not roots:
        raise ValueError("no table.dat: not a casacore table")
    root = min(roots, key=lambda r: (r.count("/"), r))
    parent = root[: root.rstrip("/").rfind("/") + 1] if root else None
    beside = (m[len(parent) :] for m in members if parent is not None and m.startswith(parent))
    if any(name.startswith("table.") and "/" not in name for name in beside):
        # the main table's files are there but not its table.dat: never index a subtable instead
        raise ValueError(f"{parent}table.dat is missing (or not a file): not a readable casacore table")
    return root


def big_files(root: str, members: Iterable[str], managers: dict[int, str]) -> dict[str, int]:
    """Main-table members holding bulk data (tiles, Dysco blocks) -> their manager's seqnr."""
    out = {}
    for seq, kind in managers.items():
        if kind in TILED:
            pattern = re.compile(re.escape(f"{root}table.f{seq}_TSM") + r"\d+$")
        elif kind == "DyscoStMan":
            pattern = re.compile(re.escape(f"{root}table.f{seq}") + "$")
        else:
            continue
        out.update({m[len(root) :]: seq for m in members if pattern.match(m)})
    return out


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted ranges with touching or overlapping ones joined."""
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def row_runs(rows: np.ndarray) -> list[list[int]]:
    """Runs ``[start, stop)`` of consecutive values of a sorted row array."""
    if not len(rows):
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(rows)]])
    return [[int(rows[a]), int(rows[b - 1]) + 1] for a, b in zip(starts, stops, strict=True)]


def compress(requests: Sequence[tuple[str, int, int]]) -> list[list[Any]]:
    """Requests as strided groups ``[member, start, size, stride, count]`` (compact JSON)."""
    groups: list[list[Any]] = []
    for member, s, e in requests:
        g = groups[-1] if groups else None
        if g and g[0] == member and g[2] == e - s:
            stride = s - g[1] if g[4] == 1 else g[3]
            if s == g[1] + stride * g[4] and stride > 0:
                g[3], g[4] = stride, g[4] + 1
                continue
        groups.append([member, s, e - s, 0, 1])
    return groups


def expand(groups: Sequence[Sequence[Any]]) -> list[tuple[str, int, int]]:
    """The requests of strided groups."""
    return [(m, s + i * st, s + i * st + n) for m, s, n, st, c in groups for i in range(int(c))]
