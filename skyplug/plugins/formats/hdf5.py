"""HDF5 and h5parm: h5py reads only the metadata, through a ranged-read file object; partitions read
contiguous slices by range and chunked ones by the chunks that intersect, decoding their filters here.

h5parm (DP3 / losoto calibration solutions): ``/solXXX/<soltab>/{val,weight}`` carry an ``AXES``
attribute naming their axes in stored order; a partition slices val and weight along one named axis
and carries the axis values and the solset's antenna and source tables. Generic HDF5 datasets are
partitioned along their first dimension (or ``axis:N``, 0-based).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.atomic import atomic_file
from skyplug.core.errors import FormatError, PluginError
from skyplug.core.format import Format, atomic_npz, make_partition, split_even
from skyplug.core.partition import Partition
from skyplug.core.source import Source, SourceFile, Tree

MAGIC = b"\x89HDF\r\n\x1a\n"
DEFLATE, SHUFFLE, FLETCHER32, LZF = 1, 2, 3, 32000
SUPPORTED = {DEFLATE, SHUFFLE, FLETCHER32, LZF}
MAX_GAP = 64 * 1024  # largest gap fetched to save a request between two ranges ...
MAX_OVERREAD = 0.25  # ... while all gaps fetched stay under this fraction of the payload
MAX_REQUESTS = 1024  # beyond this many requests a partition fetches its smallest gaps anyway
MAX_AXIS_VALUES = 100_000  # axis values kept in the index (to slice soltabs by value)
H5PARM_AXES = ("time", "freq", "ant", "dir", "pol")
C = 299_792_458.0


# --- dtypes in JSON -----------------------------------------------------------------------------
def dtype_to_json(dt: np.dtype) -> Any:
    import warnings

    with warnings.catch_warnings():  # h5py's string metadata is not needed to decode bytes
        warnings.simplefilter("ignore", UserWarning)
        return _lists(np.lib.format.dtype_to_descr(dt))


def _lists(x: Any) -> Any:
    """JSON's view of a dtype description (tuples become lists), so it round-trips unchanged."""
    return [_lists(v) for v in x] if isinstance(x, list | tuple) else x


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def dtype_from_json(descr: Any) -> np.dtype:
    if isinstance(descr, str):
        return np.dtype(descr)
    return np.lib.format.descr_to_dtype([_tuples(f) for f in descr])


# --- filters ------------------------------------------------------------------------------------
def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF (liblzf, as h5py's filter writes it) in pure Python."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            length = ctrl + 1
            if i + length > n:
                raise ValueError("LZF literal run past the end of the chunk")
            out += data[i : i + length]
            i += length
        else:
            length = ctrl >> 5
            if length == 7:
                if i >= n:
                    raise ValueError("LZF back-reference truncated")
                length += data[i]
                i += 1
            if i >= n:
                raise ValueError("LZF back-reference truncated")
            ref = len(out) - ((ctrl & 0x1F) << 8) - 1 - data[i]
            i += 1
            length += 2
            if ref < 0:
                raise ValueError("LZF back-reference before the start of the chunk")
            if ref + length <= len(out):
                out += out[ref : ref + length]
            else:
                for k in range(length):
                    out.append(out[ref + k])
        if len(out) > size:
            raise ValueError(f"LZF output exceeds the chunk size {size}")
    return bytes(out)


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 (H5_checksum_fletcher32) of ``data``."""
    buf = np.frombuffer(data + (b"\0" if len(data) % 2 else b""), dtype=">u2").astype(np.uint64)
    n = len(buf)
    if n == 0:
        return 0
    s1 = int(buf.sum())
    weights = (np.arange(n, 0, -1, dtype=np.uint64) % np.uint64(65535)) * buf
    s2 = int(weights.sum() % np.uint64(65535))

    def fold(x: int, total: int) -> int:
        return 0 if total == 0 else (x - 1) % 65535 + 1

    return (fold(s2, s1) << 16) | fold(s1 % 65535, s1)


def unshuffle(data: bytes, itemsize: int) -> bytes:
    """Undo the byte shuffle filter (bytes of each significance were stored together)."""
    count = len(data) // itemsize
    if itemsize <= 1 or count <= 1:
        return data
    body = np.frombuffer(data, np.uint8, count * itemsize).reshape(itemsize, count).T.tobytes()
    return body + data[count * itemsize :]


def decode_chunk(raw: bytes, filters: Sequence[Sequence[Any]], mask: int, size: int, itemsize: int) -> bytes:
    """Undo a chunk's filter pipeline (in reverse order, skipping filters masked off)."""
    data = raw
    for i in range(len(filters) - 1, -1, -1):
        if mask & (1 << i):
            continue
        code, values = filters[i][0], filters[i][1]
        if code == DEFLATE:
            data = zlib.decompress(data)
        elif code == SHUFFLE:
            data = unshuffle(data, int(values[0]) if values else itemsize)
        elif code == FLETCHER32:
            if len(data) < 4:
                raise ValueError("chunk too short for its Fletcher-32 checksum")
            body, stored = data[:-4], data[-4:]
            want = fletcher32(body)
            if want not in (int.from_bytes(stored, "little"), int.from_bytes(stored, "big")):
                raise ValueError("Fletcher-32 checksum mismatch")
            data = body
        elif code == LZF:
            data = lzf_decompress(data, size)
        else:
            raise ValueError(f"unsupported HDF5 filter {code}")
    if len(data) != size:
        raise ValueError(f"decoded chunk holds {len(data)} bytes, {size} expected")
    return data


# --- index ---------------------------------------------------------------------------------------
def _open(source: Source):  # type: ignore[no-untyped-def]
    import h5py

    fobj = SourceFile(source)
    return h5py.File(fobj, "r"), fobj


def _dataset_entry(ds: Any) -> dict[str, Any]:
    """Layout, offsets, filters and chunk list of one dataset (metadata only)."""
    import h5py

    entry: dict[str, Any] = {"shape": list(ds.shape), "dtype": None, "layout": "other"}
    dt = ds.dtype
    if dt.hasobject or h5py.check_dtype(vlen=dt) is not None or h5py.check_dtype(ref=dt) is not None:
        entry["h5py"] = True  # variable-length or reference data: read through h5py
    else:
        entry["dtype"] = dtype_to_json(dt)
    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    filters = [
        [int(code), [int(v) for v in values]]
        for code, _, values, _ in (dcpl.get_filter(i) for i in range(dcpl.get_nfilters()))
    ]
    if layout == h5py.h5d.CONTIGUOUS:
        entry["layout"] = "contiguous"
        offset = ds.id.get_offset()
        if offset is None:
            entry["h5py"] = True  # never written: fill value
        else:
            entry["offset"] = int(offset)
    elif layout == h5py.h5d.CHUNKED:
        entry.update({"layout": "chunked", "chunks": list(ds.chunks), "filters": filters})
        chunks: list[list[int]] = []
        ds.id.chunk_iter(lambda c: chunks.append([*c.chunk_offset, c.filter_mask, c.byte_offset, c.size]))
        entry["chunk_list"] = sorted(chunks)
        expected = math.prod(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))
        if len(chunks) != expected or any(f[0] not in SUPPORTED for f in filters):
            entry["h5py"] = True  # missing chunks (fill value) or a filter we do not decode
    elif layout == h5py.h5d.COMPACT:
        entry["layout"] = "compact"
        entry["h5py"] = True  # the bytes live in the object header
    else:
        entry["h5py"] = True
    for key in ("AXES", "TITLE"):
        if key in ds.attrs:
            value = ds.attrs[key]
            entry[key] = value.decode() if isinstance(value, bytes) else str(value)
    return entry


def _h5parm(f: Any, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Solsets and soltabs of an h5parm, with axis lengths and time/freq bounds."""
    solsets: dict[str, Any] = {}
    soltabs: dict[str, Any] = {}
    for path, entry in datasets.items():
        parts = path.split("/")
        if len(parts) != 3 or parts[2] != "val" or "AXES" not in entry:
            continue
        solset, tab = parts[0], "/".join(parts[:2])
        axes = entry["AXES"].split(",")
        if len(axes) != len(entry["shape"]):
            continue
        title = f[tab].attrs.get("TITLE", b"")
        info: dict[str, Any] = {
            "axes": axes,
            "shape": entry["shape"],
            "type": title.decode() if isinstance(title, bytes) else str(title),
            "arrays": [f"{tab}/{n}" for n in ("val", "weight") if f"{tab}/{n}" in datasets],
            "axis_paths": {a: f"{tab}/{a}" for a in axes if f"{tab}/{a}" in datasets},
        }
        info["values"] = {}
        for axis, p in info["axis_paths"].items():
            entry = datasets[p]
            if len(entry["shape"]) != 1 or not entry.get("dtype") or entry["shape"][0] > MAX_AXIS_VALUES:
                continue
            raw = np.asarray(f[p][()])
            if raw.dtype.kind in "iuf":
                info["values"][axis] = [float(v) for v in raw]
                if axis in ("time", "freq") and raw.size:
                    info[f"{axis}_range"] = [float(raw.min()), float(raw.max())]
            elif raw.dtype.kind in "SU":
                info["values"][axis] = [v.decode() if isinstance(v, bytes) else str(v) for v in raw.tolist()]
        soltabs[tab] = info
        solsets.setdefault(
            solset, {"tables": [t for t in (f"{solset}/antenna", f"{solset}/source") if t in datasets]}
        )
    return {"solsets": solsets, "soltabs": soltabs} if soltabs else {}


# --- reads ----------------------------------------------------------------------------------------
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


def cut(
    requests: Sequence[tuple[int, int]], datas: Sequence[bytes], ranges: Sequence[tuple[int, int]]
) -> list[bytes]:
    """The bytes of each range, taken from the fetched requests that cover them."""
    import bisect

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
        except (ValueError, zlib.error) as exc:
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


def covering(values: Sequence[Any], block: Sequence[Any]) -> list[int]:
    """[i0, i1) of the axis ``values`` covering the block of reference values: numbers from the last
    value at or before the block's first to the first at or after its last (so nearest and linear
    interpolation inside the block need nothing else), names from the first to the last one present."""
    v = np.asarray(values)
    if v.dtype.kind == "f":
        lo, hi = min(block), max(block)
        order = np.argsort(v, kind="stable")
        sv = v[order]
        j0 = max(int(np.searchsorted(sv, lo, "right")) - 1, 0)
        j1 = min(int(np.searchsorted(sv, hi, "left")), len(v) - 1)
        idx = order[j0 : j1 + 1]
    else:
        idx = np.flatnonzero(np.isin(v, np.asarray(block)))
    return [int(idx.min()), int(idx.max()) + 1] if idx.size else [0, 0]


def write_h5(fh: Any, arrays: dict[str, Any], titles: dict[str, str]) -> None:
    """The loaded datasets as an HDF5 file under their own paths: ``path@AXES`` become ``AXES``
    attributes, soltab groups get their ``TITLE`` and solsets an ``h5parm_version``, so h5py, losoto
    and DP3 read a partition as they read the source file."""
    import h5py

    with h5py.File(fh, "w") as f:
        for path, value in arrays.items():
            if "@" not in path:
                f.create_dataset(path, data=value)
        for key, value in arrays.items():
            path, _, attr = key.partition("@")
            if attr:
                f[path].attrs[attr] = np.bytes_(str(value))
        for tab, title in titles.items():
            if tab in f:
                f[tab].attrs["TITLE"] = np.bytes_(title)
                f[tab.split("/")[0]].attrs["h5parm_version"] = np.bytes_("1.0")


class Hdf5Format(Format):
    """HDF5 files and h5parm calibration solutions, partitioned along a named or numbered axis."""

    name = "hdf5"
    kind = "object"
    version = 2  # 2: axis values kept per soltab
    extensions = (".h5", ".hdf5", ".h5parm", ".he5")
    axes = (*H5PARM_AXES, "rows")
    outputs = ("h5", "npz")  # h5: a valid h5parm (or HDF5 file) per partition

    def sniff(self, name: str, head: bytes, members: Sequence[str] | None = None) -> float:
        if any(head[o : o + 8] == MAGIC for o in (0, 512, 1024, 2048)):  # superblock offsets
            return 0.95
        return 0.3 if name.lower().endswith(self.extensions) else 0.0

    def index(self, target: Source | Tree) -> dict[str, Any]:
        if not isinstance(target, Source):
            raise FormatError(target.uri, "an HDF5 file is one object, not a folder")
        fobj: SourceFile | None = None
        before = target.stats.bytes
        try:
            f, fobj = _open(target)
            with f:
                datasets: dict[str, dict[str, Any]] = {}

                def visit(name: str, obj: Any) -> None:
                    if hasattr(obj, "dtype") and hasattr(obj, "shape"):
                        datasets[name] = _dataset_entry(obj)

                f.visititems(visit)
                index: dict[str, Any] = {"datasets": datasets}
                index.update(_h5parm(f, datasets))
        except FormatError:
            raise
        except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError on bad files
            where = fobj.tell() if fobj is not None else 0
            raise FormatError(
                target.uri, f"unreadable HDF5 metadata: {type(exc).__name__}: {exc}", offset=where
            ) from None
        index["metadata_bytes"] = target.stats.bytes - before
        return index

    # --- planning ---------------------------------------------------------------------------
    def plan(self, index: dict[str, Any], by: str, n: int, **opts: Any) -> list[Partition]:
        datasets = index["datasets"]
        soltabs = index.get("soltabs", {})
        if opts.get("dataset") is None and soltabs:
            return self._plan_solset(index, by, n, opts)
        path = opts.get("dataset")
        if path is None:
            candidates = [p for p, e in datasets.items() if e["shape"]]
            if not candidates:
                raise PluginError(f"{index['uri']}: no dataset with at least one dimension")
            path = max(candidates, key=lambda p: math.prod(datasets[p]["shape"]))
        path = str(path).strip("/")
        if path not in datasets:
            raise PluginError(f"{index['uri']}: no dataset {path!r}")
        entry = datasets[path]
        names = entry["AXES"].split(",") if "AXES" in entry else []
        axis = self._axis(index, by, names, len(entry["shape"]))
        blocks = split_even(entry["shape"][axis], n)
        return [
            self._partition(
                index,
                i,
                len(blocks),
                {"dataset": path, "by": by, "axis": axis, "range": [a, b]},
                [make_read(path, entry, axis, a, b)],
            )
            for i, (a, b) in enumerate(blocks)
        ]

    def _axis(self, index: dict[str, Any], by: str, names: Sequence[str], ndim: int) -> int:
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

    def _plan_solset(self, index: dict[str, Any], by: str, n: int, opts: dict[str, Any]) -> list[Partition]:
        """Blocks of one solset along ``by``: every soltab with that axis gets the slice covering the
        block's values (by value, so soltabs with other time or freq axes line up), the others whole."""
        soltabs, datasets = index["soltabs"], index["datasets"]
        if opts.get("soltab"):
            tab = str(opts["soltab"]).strip("/")
            if tab not in soltabs:
                raise PluginError(f"{index['uri']}: no soltab {tab!r} (known: {', '.join(soltabs)})")
            solset, tabs = tab.split("/")[0], [tab]
        else:
            solset = self._solset(index, opts.get("solset"))
            tabs = [t for t in soltabs if t.split("/")[0] == solset]
        if by == "rows" and len({soltabs[t]["axes"][0] for t in tabs}) == 1:
            by = soltabs[tabs[0]]["axes"][0]  # rows: the first stored axis, when every soltab agrees
        having = [t for t in tabs if by in soltabs[t]["axes"]]
        if by == "rows" or by.startswith("axis:") or not having:
            if len(tabs) > 1:
                raise PluginError(
                    f"{index['uri']}: no soltab of {solset} has an axis {by!r} "
                    f"(axes: {', '.join(sorted({a for t in tabs for a in soltabs[t]['axes']}))}); "
                    "name one with soltab= to cut it by rows or axis:N"
                )
            having = tabs
            self._axis(index, by, soltabs[tabs[0]]["axes"], len(soltabs[tabs[0]]["axes"]))
        ref = max(having, key=lambda t: self._length(index, soltabs[t], by))
        length = self._length(index, soltabs[ref], by)
        blocks = split_even(length, n)
        ref_values = soltabs[ref].get("values", {}).get(by)
        parts = []
        for i, (a, b) in enumerate(blocks):
            ranges: dict[str, list[int]] = {}
            reads: list[dict[str, Any]] = []
            axes_meta: dict[str, str] = {}
            for tab in tabs:
                info = soltabs[tab]
                if tab not in having:
                    span = None
                elif tab == ref:
                    span = [a, b]
                else:
                    own = self._length(index, info, by)
                    values = info.get("values", {}).get(by)
                    if ref_values is None or values is None:  # no values to match: by index if alike
                        span = [a, b] if own == length else [0, own]
                    else:
                        span = covering(values, ref_values[a:b])
                if span is not None:
                    ranges[tab] = span
                reads += self._soltab_reads(index, tab, by if span else None, span)
                for path in info["arrays"]:
                    axes_meta[path] = datasets[path].get("AXES", ",".join(info["axes"]))
            reads += [make_read(t, datasets[t], None, 0, 0) for t in index["solsets"][solset]["tables"]]
            selection: dict[str, Any] = {"solset": solset, "soltab": ref, "by": by, "range": [a, b]}
            if ref_values is not None and isinstance(ref_values[0], float):
                selection["interval"] = [ref_values[a], ref_values[b - 1]]
            selection["soltabs"] = ranges
            titles = {t: soltabs[t]["type"] for t in tabs}
            parts.append(
                self._partition(index, i, len(blocks), selection, reads, axes=axes_meta, titles=titles)
            )
        return parts

    @staticmethod
    def _solset(index: dict[str, Any], name: str | None) -> str:
        solsets = list(index["solsets"])
        if name is None:
            if len(solsets) > 1:
                raise PluginError(
                    f"{index['uri']}: {len(solsets)} solsets ({', '.join(solsets)}); choose one with solset="
                )
            return solsets[0]
        if name.strip("/") not in solsets:
            raise PluginError(f"{index['uri']}: no solset {name!r} (known: {', '.join(solsets)})")
        return name.strip("/")

    def _length(self, index: dict[str, Any], info: dict[str, Any], by: str) -> int:
        axis = self._axis(index, by, info["axes"], len(info["axes"]))
        return int(info["shape"][axis])

    def _soltab_reads(
        self, index: dict[str, Any], tab: str, by: str | None, span: list[int] | None
    ) -> list[dict[str, Any]]:
        """val/weight of a soltab sliced along ``by`` (whole when None), and its axis datasets."""
        info, datasets = index["soltabs"][tab], index["datasets"]
        a, b = span or (0, 0)
        reads = []
        name = None
        if by is not None:
            name = info["axes"][self._axis(index, by, info["axes"], len(info["axes"]))]
        for path in info["arrays"]:
            entry = datasets[path]
            names = entry.get("AXES", ",".join(info["axes"])).split(",")
            if name is not None and name not in names:
                raise FormatError(index["uri"], f"{path} has no axis {name!r} (AXES={entry.get('AXES')})")
            reads.append(make_read(path, entry, None if name is None else names.index(name), a, b))
        for axis_name, path in info["axis_paths"].items():
            sliced = axis_name == name and datasets[path]["shape"]
            reads.append(make_read(path, datasets[path], 0 if sliced else None, a, b))
        return reads

    def _partition(
        self,
        index: dict[str, Any],
        i: int,
        count: int,
        selection: dict[str, Any],
        reads: list[dict[str, Any]],
        **meta: Any,
    ) -> Partition:
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

    # --- loading ------------------------------------------------------------------------------
    def load(self, partition: Partition, target: Source | Tree, as_: str = "arrays") -> Any:
        """{HDF5 path: array} for every dataset of the partition, plus ``path@AXES`` names."""
        if not isinstance(target, Source):
            raise FormatError(target.uri, "an HDF5 file is one object, not a folder")
        if as_ != "arrays":
            raise PluginError(f"{partition.uri}: HDF5 loads as 'arrays', not {as_!r}")
        reads = partition.meta["reads"]
        wanted = [read_ranges_of(r) for r in reads]
        flat = [r for rs in wanted for r in rs]
        requests = plan_requests(reads)  # the plan's ranges, recomputed: what it shows is what is read
        datas = cut(requests, target.read_ranges(requests, max_gap=0), flat) if flat else []
        out: dict[str, Any] = {}
        pos = 0
        fallback = [r for r in reads if r.get("h5py")]
        for read, rs in zip(reads, wanted, strict=True):
            if not read.get("h5py"):
                out[read["p"]] = assemble(read, datas[pos : pos + len(rs)], target.uri)
            pos += len(rs)
        if fallback:
            out.update(self._h5py_reads(fallback, target))
        for path, names in partition.meta.get("axes", {}).items():
            out[f"{path}@AXES"] = np.array(names)
        return {r["p"]: out[r["p"]] for r in reads} | {k: v for k, v in out.items() if "@" in k}

    @staticmethod
    def _h5py_reads(reads: list[dict[str, Any]], source: Source) -> dict[str, np.ndarray]:
        """Compact, variable-length or fill-value datasets, read with h5py over ranged reads."""
        out = {}
        try:
            f, _ = _open(source)
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
            raise FormatError(
                source.uri, f"HDF5 read failed: {type(exc).__name__}: {exc}", offset=0
            ) from None
        return out

    def write(self, partition: Partition, target: Source | Tree, out: Path, as_: str) -> list[Path]:
        if as_ not in self.outputs:
            raise PluginError(f"{partition.uri}: HDF5 writes {' or '.join(self.outputs)}, not {as_!r}")
        arrays = self.load(partition, target)
        if as_ == "npz":
            path = out.with_suffix(".npz")
            atomic_npz(path, arrays)
            return [path]
        path = out.with_suffix(".h5")
        with atomic_file(path) as fh:
            write_h5(fh, arrays, partition.meta.get("titles", {}))
        return [path]

    # --- catalogue ---------------------------------------------------------------------------
    def describe(self, index: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"access_format": "application/x-hdf5"}
        soltabs = index.get("soltabs", {})
        if not soltabs:
            return out
        out["dataproduct_type"] = "measurements"
        out["dataproduct_subtype"] = "h5parm"
        times = [t["time_range"] for t in soltabs.values() if "time_range" in t]
        freqs = [t["freq_range"] for t in soltabs.values() if "freq_range" in t]
        if times:
            out["t_min"] = min(t[0] for t in times) / 86400.0
            out["t_max"] = max(t[1] for t in times) / 86400.0
        if freqs and min(f[0] for f in freqs) > 0:
            out["em_min"] = C / max(f[1] for f in freqs)
            out["em_max"] = C / min(f[0] for f in freqs)
        lengths = {a: n for t in soltabs.values() for a, n in zip(t["axes"], t["shape"], strict=True)}
        if "time" in lengths:
            out["t_xel"] = lengths["time"]
        if "freq" in lengths:
            out["em_xel"] = lengths["freq"]
        if "ant" in lengths:
            out["instr_tel_number"] = lengths["ant"]
        return out

    def summary(self, index: dict[str, Any]) -> dict[str, Any]:
        return {
            "datasets": {
                p: {
                    "shape": e["shape"],
                    "layout": e["layout"],
                    "filters": [f[0] for f in e.get("filters", [])],
                }
                for p, e in index["datasets"].items()
            },
            "soltabs": {
                t: {"axes": s["axes"], "shape": s["shape"]} for t, s in index.get("soltabs", {}).items()
            },
            "metadata_bytes": index.get("metadata_bytes"),
        }
