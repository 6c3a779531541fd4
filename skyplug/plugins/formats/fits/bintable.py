"""FITS binary tables: columns from TFORMn, rows decoded as astropy returns them, and the heap.

A block of rows is one byte range; variable-length (P/Q) columns hold descriptors into the heap,
which is read after the rows, only the bytes the rows name. ``--as fits`` rebuilds a heap of exactly
those bytes and points the copied descriptors at it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError
from skyplug.core.source import Source

# TFORM letter -> (numpy type code, bytes per element); X (bits) and P/Q (descriptors) are special
TFORM = {
    "L": ("i1", 1),
    "X": ("u1", 1),
    "B": ("u1", 1),
    "I": ("i2", 2),
    "J": ("i4", 4),
    "K": ("i8", 8),
    "A": ("S1", 1),
    "E": ("f4", 4),
    "D": ("f8", 8),
    "C": ("c8", 8),
    "M": ("c16", 16),
    "P": ("i4", 8),
    "Q": ("i8", 16),
}
_TFORM_RE = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])(?:([LXBIJKAEDCM])(?:\((\d*)\))?)?", re.I)
COL_KEYS = ("name", "tform", "repeat", "off", "elem", "scal", "zero", "dim")  # a partition's column


def parse_tform(tform: str, uri: str, offset: int) -> tuple[int, str, str | None]:
    """(repeat, letter, element letter of a P/Q descriptor)."""
    m = _TFORM_RE.match(tform or "")
    if not m:
        raise FormatError(uri, f"unsupported TFORM {tform!r}", offset=offset)
    repeat = int(m.group(1)) if m.group(1) else 1
    letter = m.group(2).upper()
    elem = m.group(3).upper() if m.group(3) else None
    if letter in "PQ" and elem is None:
        raise FormatError(uri, f"variable-length TFORM {tform!r} has no element type", offset=offset)
    return repeat, letter, elem


def columns(h: dict[str, Any], ncols: int, uri: str, offset: int, rowlen: int) -> list[dict[str, Any]]:
    """The columns of a BINTABLE header (values ``h``): name, TFORM letter, repeat, offset in the row."""
    cols, pos = [], 0
    for i in range(1, ncols + 1):
        repeat, letter, elem = parse_tform(str(h.get(f"TFORM{i}", "")), uri, offset)
        size = (repeat + 7) // 8 if letter == "X" else repeat * TFORM[letter][1]
        col: dict[str, Any] = {
            "name": str(h.get(f"TTYPE{i}", f"col{i}")),
            "tform": letter,
            "repeat": repeat,
            "off": pos,
        }
        if elem:
            col["elem"] = elem
        for key, name in (("TSCAL", "scal"), ("TZERO", "zero")):
            value = h.get(f"{key}{i}")
            if isinstance(value, int | float) and not isinstance(value, bool):
                col[name] = value
        tdim = h.get(f"TDIM{i}")
        if isinstance(tdim, str) and re.fullmatch(r"\s*\(\s*\d+(\s*,\s*\d+)*\s*\)\s*", tdim):
            col["dim"] = [int(x) for x in tdim.strip(" ()").split(",")]
        cols.append(col)
        pos += size
    if pos != rowlen:
        raise FormatError(uri, f"columns take {pos} bytes but NAXIS1 = {rowlen}", offset=offset)
    return cols


def _column_dtype(col: dict[str, Any]) -> np.dtype:
    letter, repeat = col["tform"], col["repeat"]
    if letter == "X":
        return np.dtype(("u1", ((repeat + 7) // 8,)))
    if letter == "A":
        return np.dtype(f"S{repeat}")
    code = TFORM[letter][0]
    base = np.dtype(f">{code}") if code not in ("i1", "u1") else np.dtype(code)
    if letter in "PQ":
        return np.dtype((base, (2,)))
    return base if repeat == 1 else np.dtype((base, (repeat,)))


def row_dtype(cols: Sequence[dict[str, Any]]) -> np.dtype:
    """The structured dtype of one table row (big-endian, packed)."""
    return np.dtype(
        {
            "names": [f"f{i}" for i in range(len(cols))],
            "formats": [_column_dtype(c) for c in cols],
            "offsets": [c["off"] for c in cols],
            "itemsize": sum(_column_dtype(c).itemsize for c in cols),
        }
    )


def _scale_column(values: np.ndarray, col: dict[str, Any], letter: str) -> np.ndarray:
    scal, zero = col.get("scal", 1), col.get("zero", 0)
    if letter in "LXAPQ" or (scal == 1 and zero == 0):
        return values
    if scal == 1 and letter in "BIJK":
        bits = np.dtype(TFORM[letter][0]).itemsize * 8
        if letter == "B" and zero == -128:
            return (values.view(np.uint8) ^ np.uint8(0x80)).view(np.int8)
        if letter != "B" and zero == 1 << (bits - 1):
            udt = np.dtype(f"u{bits // 8}")
            return values.view(udt) ^ udt.type(1 << (bits - 1))
    out = values.astype(np.float64) if letter in "BIJKED" else values.astype(np.complex128)
    return out * scal + zero


def _cell_shape(col: dict[str, Any]) -> tuple[int, ...] | None:
    dim = col.get("dim")
    if dim and math.prod(dim) == col["repeat"] and col["tform"] not in "AXPQ":
        return tuple(reversed(dim))
    return None


def decode_rows(raw: bytes, cols: Sequence[dict[str, Any]], nrows: int) -> dict[str, np.ndarray]:
    """Fixed-width columns of ``nrows`` rows as astropy returns them (scaled, native byte order)."""
    rows = np.frombuffer(raw, dtype=row_dtype(cols), count=nrows)
    out: dict[str, np.ndarray] = {}
    for i, col in enumerate(cols):
        v = rows[f"f{i}"]
        letter = col["tform"]
        if letter == "L":
            v = v == ord("T")
        elif letter == "X":
            v = np.unpackbits(v.reshape(nrows, -1), axis=1)[:, : col["repeat"]].astype(bool)
        elif letter == "A":
            v = np.char.rstrip(np.char.decode(v.astype(f"S{col['repeat']}"), "ascii", errors="replace"))
        elif letter in "PQ":
            v = v.astype(v.dtype.newbyteorder("="))
        else:
            v = v.astype(v.dtype.newbyteorder("="))
            v = _scale_column(v, col, letter)
        shape = _cell_shape(col)
        if shape is not None:
            v = v.reshape(nrows, *shape)
        out[col["name"]] = v
    return out


def _heap_element(col: dict[str, Any]) -> np.dtype:
    code = TFORM[col["elem"]][0]
    return np.dtype(code) if code in ("i1", "u1", "S1") else np.dtype(f">{code}")


def decode_heap(desc: np.ndarray, datas: list[bytes], col: dict[str, Any]) -> np.ndarray:
    """A variable-length column: an object array of per-row arrays, as astropy returns them."""
    elem = _heap_element(col)
    out = np.empty(len(desc), dtype=object)
    for r, data in enumerate(datas):
        count = int(desc[r, 0])
        if col["elem"] == "X":
            arr = np.unpackbits(np.frombuffer(data, np.uint8))[:count].astype(bool)
        elif col["elem"] == "L":
            arr = np.frombuffer(data, np.uint8) == ord("T")
        elif col["elem"] == "A":
            arr = np.array(data.decode("ascii", errors="replace").rstrip("\x00 "))
        else:
            arr = np.frombuffer(data, elem).astype(elem.newbyteorder("="))
            arr = _scale_column(arr, col, col["elem"])
        out[r] = arr
    return out


def heap_size(col: dict[str, Any], count: int) -> int:
    """Heap bytes of a variable-length cell of ``count`` elements."""
    return (count + 7) // 8 if col["elem"] == "X" else count * TFORM[col["elem"]][1]


def partition_columns(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """A partition's columns (stored as compact lists) as dicts."""
    return [{k: v for k, v in zip(COL_KEYS, c, strict=True) if v is not None} for c in meta["cols"]]


def decode_table(
    meta: dict[str, Any], nrows: int, source: Source, raw: bytes
) -> tuple[dict[str, np.ndarray], list[list[bytes]]]:
    """Columns of the rows, and the heap bytes of each variable-length column per row."""
    cols = partition_columns(meta)
    out = decode_rows(raw, cols, nrows)
    heaps: list[list[bytes]] = []
    var = [c for c in cols if c["tform"] in "PQ"]
    if var:
        heap0 = meta["data"] + meta["heap"]
        want: list[tuple[int, int]] = []
        for c in var:
            desc = out[c["name"]]
            for count, off in desc:
                s = heap0 + int(off)
                want.append((s, s + heap_size(c, int(count))))
        bad = [(s, e) for s, e in want if s < heap0 or e > source.size or e < s]
        if bad:
            raise FormatError(
                source.uri, f"heap descriptor points outside the object: {bad[0]}", offset=bad[0][0]
            )
        datas = source.read_ranges(want)
        for j, c in enumerate(var):
            chunk = datas[j * nrows : (j + 1) * nrows]
            heaps.append(chunk)
            out[c["name"]] = decode_heap(out[c["name"]], chunk, c)
    return out, heaps


def table_bytes(meta: dict[str, Any], nrows: int, source: Source, raw: bytes) -> tuple[bytes, bytes]:
    """Row bytes with descriptors pointing into a new heap, and that heap."""
    cols = partition_columns(meta)
    if not any(c["tform"] in "PQ" for c in cols):
        return raw, b""
    _, heaps = decode_table(meta, nrows, source, raw)
    rows = np.frombuffer(raw, dtype=row_dtype(cols), count=nrows).copy()
    parts: list[bytes] = []
    pos = 0
    var = [i for i, c in enumerate(cols) if c["tform"] in "PQ"]
    for j, i in enumerate(var):
        desc = rows[f"f{i}"]
        for r, chunk in enumerate(heaps[j]):
            desc[r, 1] = pos
            parts.append(chunk)
            pos += len(chunk)
    return rows.tobytes(), b"".join(parts)
