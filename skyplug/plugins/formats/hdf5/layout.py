"""Where an HDF5 file's datasets lie: h5py walks the superblock, object headers, B-trees and chunk
index through ranged reads, and the index keeps offsets, chunk lists, filter pipelines and dtypes.

h5py cannot read an S3 object by range on its own: it opens a local file or a Python file object,
and libhdf5 then asks that object for one small read at a time as it walks the file. Through
fsspec (or any file object) each of those reads is a blocking round trip, issued in order, never
coalesced with the next one nor run concurrently: fine for a few metadata blocks, far too slow for
data. So h5py walks only the metadata here, through ``SourceFile`` (aligned 64 KiB blocks in an LRU
cache, every read conditional on the object's version: a handful of requests per file), and the
data is read by ``reads.py`` from the planned ranges, coalesced and fetched concurrently.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from skyplug.core.source import Source, SourceFile
from skyplug.plugins.formats.hdf5.filters import SUPPORTED

MAGIC = b"\x89HDF\r\n\x1a\n"
SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048)  # where a superblock may start (after a user block)


# --- dtypes in JSON -----------------------------------------------------------------------------
def dtype_to_json(dt: np.dtype) -> Any:
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


# --- metadata ------------------------------------------------------------------------------------
def open_h5(source: Source):  # type: ignore[no-untyped-def]
    """h5py's view of the object through ranged reads, and the file object (for its position)."""
    import h5py

    fobj = SourceFile(source)
    return h5py.File(fobj, "r"), fobj


def dataset_entry(ds: Any) -> dict[str, Any]:
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


def dataset_entries(f: Any) -> dict[str, dict[str, Any]]:
    """Every dataset of an open file, by HDF5 path, in h5py's visiting order."""
    datasets: dict[str, dict[str, Any]] = {}

    def visit(name: str, obj: Any) -> None:
        if hasattr(obj, "dtype") and hasattr(obj, "shape"):
            datasets[name] = dataset_entry(obj)

    f.visititems(visit)
    return datasets
