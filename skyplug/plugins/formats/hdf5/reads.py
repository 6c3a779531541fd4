"""Dataset slices as byte ranges, and arrays back from the fetched bytes: contiguous datasets by the
runs a slice covers, chunked ones by the chunks it intersects (decoded in ``filters``), compact and
other datasets through h5py.

Our own reader, not h5py's: given a file object h5py fetches one chunk or run per blocking read,
in order, so a partition would cost one round trip per chunk; here a partition's ranges are known
when it is planned (the plan lists exactly what a load reads), coalesced with a bounded over-read
and fetched concurrently, conditional on the object's version.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyplug.core.errors import FormatError, PluginError
from skyplug.core.format import make_partition
from skyplug.core.partition import Partition
from skyplug.core.source import Source
from skyplug.plugins.formats.hdf5.filters import decode_chunk
from skyplug.plugins.formats.hdf5.layout import dtype_from_json, open_h5

MAX_GAP = 64 * 1024  # largest gap fetched to save a request between two ranges ...
MAX_OVERREAD = 0.25  # ... while all gaps fetched stay under this fraction of the payload
MAX_REQUESTS = 1024  # beyond this many requests a partition fetches its smallest gaps anyway


# --- planning ------------------------------------------------------------------------------------
def axis_index(index: dict[str, Any], by: str, names: Sequence[str], ndim: int) -> int:
    """The dimension ``by`` names: ``rows`` (0), ``axis:N`` or an ``AXES`` name."""
    if ndim == 0:
        raise PluginError(f"{index['uri']}: a scalar dataset cannot be partitioned")
    if by == "rows":
        return 0
    if by.startswith("axis:") and by[5:].isdigit() and int(by[5:]) < ndim:
        return int(by[5:])
    if by in names:
        return list(names).index(by)
    raise PluginError(
        f"{index['uri']}: no axis {by!r} here (axes: {', '.join(names) or 'unnamed'}; "
        f"use rows or axis:N with N < {ndim})"
    )


def contiguous_ranges(
    offset: int, shape: Sequence[int], itemsize: int, axis: int, a: int, b: int
) -> list[tuple[int, int]]:
    """Byte ranges of [a, b) along ``axis`` (0-based, C order) of a contiguous array."""
    inner = itemsize * math.prod(shape[axis + 1 :])
    outer = math.prod(shape[:axis])
    step = inner * shape[axis]
    return [(offset + o * step + a * inner, offset + o * step + b * inner) for o in range(outer)]


def chunk_grid(shape: Sequence[int], chunks: Sequence[int]) -> list[int]:
    """Number of chunks along each dimension."""
    return [-(-n // c) for n, c in zip(shape, chunks, strict=True)]


def chunk_coords(read: dict[str, Any]) -> list[tuple[int, ...]]:
    """Element offsets of the chunks a read selects, in C order (the order of ``k``)."""
    grid = chunk_grid(read["s"], read["c"])
    lo = [0] * len(grid)
    if "g" in read:
        lo[read["ax"]], grid[read["ax"]] = read["g"][0], read["g"][1] - read["g"][0]
    return [
        tuple((i + j) * c for i, j, c in zip(idx, lo, read["c"], strict=True)) for idx in np.ndindex(*grid)
    ]


def make_read(path: str, entry: dict[str, Any], axis: int | None, a: int, b: int) -> dict[str, Any]:
    """The small description of one dataset slice a partition carries."""
    read: dict[str, Any] = {"p": path, "s": entry["shape"]}
    if axis is not None:
        read.update({"ax": axis, "r": [a, b]})
    if entry.get("h5py"):
        read["h5py"] = True
        return read
    read["t"] = entry["dtype"]
    if entry["layout"] == "contiguous":
        read["o"] = entry["offset"]
        return read
    read.update({"c": entry["chunks"], "f": entry["filters"]})
    grid = chunk_grid(entry["shape"], entry["chunks"])
    if axis is not None:
        c = entry["chunks"][axis]
        read["g"] = [a // c, -(-b // c)] if b > a else [0, 0]
    by_coords = {tuple(k[: len(grid)]): k for k in entry["chunk_list"]}
    chosen = [by_coords[c] for c in chunk_coords(read)]
    read["k"] = [v for k in chosen for v in k[-2:]]
    if any(k[len(grid)] for k in chosen):
        read["m"] = [k[len(grid)] for k in chosen]
    return read


def read_ranges_of(read: dict[str, Any]) -> list[tuple[int, int]]:
    """The byte ranges one read fetches."""
    if read.get("h5py"):
        return []
    if "o" in read:
        shape = read["s"]
        axis, (a, b) = read.get("ax", 0), read.get("r", [0, shape[0] if shape else 1])
        if not shape:
            return [(read["o"], read["o"] + dtype_from_json(read["t"]).itemsize)]
        return contiguous_ranges(read["o"], shape, dtype_from_json(read["t"]).itemsize, axis, a, b)
    k = read["k"]
    return [(k[i], k[i] + k[i + 1]) for i in range(0, len(k), 2)]


def coalesce(ranges: Sequence[tuple[int, int]], overread: float = MAX_OVERREAD) -> list[tuple[int, int]]:
    """The requests that fetch ``ranges``: overlapping or touching ones joined, then the smallest
    gaps (each at most MAX_GAP) fetched too while all fetched gap bytes stay within MAX_OVERREAD of
    the payload, so strided runs and interleaved chunks never turn into a read of the whole dataset;
    tiny strided runs (a slice along the last axis) are joined further down to MAX_REQUESTS."""
    union: list[list[int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if union and start <= union[-1][1]:
            union[-1][1] = max(union[-1][1], end)
        else:
            union.append([start, end])
    budget = overread * sum(e - s for s, e in union)
    gaps = sorted(range(len(union) - 1), key=lambda i: (union[i + 1][0] - union[i][1], i))
    join, count = set(), len(union)
    for i in gaps:
        gap = union[i + 1][0] - union[i][1]
        if (gap > MAX_GAP or gap > budget) and count <= MAX_REQUESTS:
            break
        budget -= gap
        count -= 1
        join.add(i)
    out: list[tuple[int, int]] = []
    for i, (start, end) in enumerate(union):
        if i - 1 in join:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def plan_requests(reads: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """A partition's requests: each dataset's ranges coalesced within its own over-read budget (a
    small table never pays for an array's gaps), then joined where they touch."""
    return coalesce([r for read in reads for r in coalesce(read_ranges_of(read))], overread=0.0)


def partition_of(
    index: dict[str, Any],
    i: int,
    count: int,
    selection: dict[str, Any],
    reads: list[dict[str, Any]],
    **meta: Any,
) -> Partition:
    """Partition ``i`` of ``count``: its reads, the requests they make and the bytes they expect."""
    ranges = [r for read in reads for r in read_ranges_of(read)]
    return make_partition(
        index,
        i,
        count,
        selection,
        [("", s, e) for s, e in plan_requests(reads)],
        expected_bytes=sum(e - s for s, e in ranges),
        reads=reads,
        **meta,
    )


# --- loading -------------------------------------------------------------------------------------
def cut(
    requests: Sequence[tuple[int, int]], datas: Sequence[bytes], ranges: Sequence[tuple[int, int]]
) -> list[bytes]:
    """The bytes of each range, taken from the fetched requests that cover them."""
    starts = [r[0] for r in requests]
    out = []
    for start, end in ranges:
        i = bisect.bisect_right(starts, start) - 1
        base = requests[i][0]
        out.append(datas[i][start - base : end - base])
    return out


def _selection_shape(read: dict[str, Any]) -> list[int]:
    shape = list(read["s"])
    if "ax" in read:
        a, b = read["r"]
        shape[read["ax"]] = b - a
    return shape


def assemble(read: dict[str, Any], datas: list[bytes], uri: str) -> np.ndarray:
    """The array of one read from its fetched bytes (decoding chunks)."""
    dt = dtype_from_json(read["t"])
    shape = _selection_shape(read)
    if "o" in read:
        return np.frombuffer(b"".join(datas), dtype=dt).reshape(shape)
    chunk = read["c"]
    out = np.zeros(shape, dtype=dt)
    lo = [0] * len(shape)
    if "ax" in read:
        lo[read["ax"]] = read["r"][0]
    size = math.prod(chunk) * dt.itemsize
    masks = read.get("m") or [0] * len(datas)
    for coords, mask, offset, raw in zip(chunk_coords(read), masks, read["k"][::2], datas, strict=True):
        try:
            data = decode_chunk(raw, read["f"], mask, size, dt.itemsize)
        except ValueError as exc:
            raise FormatError(
                uri, f"{read['p']}: chunk at {list(coords)} cannot be decoded: {exc}", offset=offset
            ) from None
        block = np.frombuffer(data, dtype=dt).reshape(chunk)
        src, dst = [], []
        for d, (c0, n, l0, m) in enumerate(zip(coords, chunk, lo, shape, strict=True)):
            s0, s1 = max(c0, l0), min(c0 + n, l0 + m, read["s"][d])
            if s1 <= s0:
                break
            src.append(slice(s0 - c0, s1 - c0))
            dst.append(slice(s0 - l0, s1 - l0))
        else:
            out[tuple(dst)] = block[tuple(src)]
    return out


def h5py_reads(reads: list[dict[str, Any]], source: Source) -> dict[str, np.ndarray]:
    """Compact, variable-length or fill-value datasets, read with h5py over ranged reads."""
    out = {}
    try:
        f, _ = open_h5(source)
        with f:
            for read in reads:
                ds = f[read["p"]]
                if "ax" in read:
                    index = [slice(None)] * len(read["s"])
                    index[read["ax"]] = slice(*read["r"])
                    out[read["p"]] = np.asarray(ds[tuple(index)])
                else:
                    out[read["p"]] = np.asarray(ds[()])
    except Exception as exc:
        raise FormatError(source.uri, f"HDF5 read failed: {type(exc).__name__}: {exc}", offset=0) from None
    return out


def load_reads(reads: list[dict[str, Any]], source: Source) -> dict[str, np.ndarray]:
    """{HDF5 path: array} of every read: the planned requests fetched, then cut, decoded and shaped."""
    wanted = [read_ranges_of(r) for r in reads]
    flat = [r for rs in wanted for r in rs]
    requests = plan_requests(reads)  # the plan's ranges, recomputed: what it shows is what is read
    datas = cut(requests, source.read_ranges(requests, max_gap=0), flat) if flat else []
    out: dict[str, np.ndarray] = {}
    pos = 0
    for read, rs in zip(reads, wanted, strict=True):
        if not read.get("h5py"):
            out[read["p"]] = assemble(read, datas[pos : pos + len(rs)], source.uri)
        pos += len(rs)
    fallback = [r for r in reads if r.get("h5py")]
    if fallback:
        out.update(h5py_reads(fallback, source))
    return out
