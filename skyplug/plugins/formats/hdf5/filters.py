"""HDF5 chunk filters (gzip, shuffle, Fletcher-32, LZF) undone on chunk bytes fetched by range.

libhdf5 runs its filter pipeline only on chunks it reads from a file itself, and h5py has no call
that decodes a buffer we fetched; hdf5plugin only registers filters with libhdf5 (and h5py, not
it, ships LZF). So the pipeline is replayed here with numcodecs (Zlib, Shuffle, Fletcher32: the
codecs zarr and kerchunk use for HDF5 chunks) and imagecodecs' liblzf (``lzf_decode``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import imagecodecs
import numcodecs

DEFLATE, SHUFFLE, FLETCHER32, LZF = 1, 2, 3, 32000
SUPPORTED = {DEFLATE, SHUFFLE, FLETCHER32, LZF}
NAMES = {DEFLATE: "gzip", SHUFFLE: "shuffle", FLETCHER32: "fletcher32", LZF: "lzf"}


def lzf_decompress(data: bytes, size: int) -> bytes:
    """A raw LZF stream (liblzf, as h5py's filter writes it) that decodes to at most ``size`` bytes."""
    if not data:
        return b""
    try:
        out = imagecodecs.lzf_decode(data, out=size)
    except imagecodecs.LzfError as exc:
        raise ValueError(f"corrupt LZF data ({exc})") from None
    return bytes(out)


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 (H5_checksum_fletcher32) of ``data``."""
    if not data:
        return 0
    return int.from_bytes(numcodecs.Fletcher32().encode(data)[-4:], "little")


def unshuffle(data: bytes, itemsize: int) -> bytes:
    """Undo the byte shuffle filter; trailing bytes short of a whole item stay as stored (as HDF5)."""
    count = len(data) // itemsize
    if itemsize <= 1 or count <= 1:
        return data
    body = numcodecs.Shuffle(elementsize=itemsize).decode(data[: count * itemsize])
    return bytes(body) + data[count * itemsize :]


def check_fletcher32(data: bytes) -> bytes:
    """The chunk without its trailing Fletcher-32, verified (either byte order, as HDF5 accepts)."""
    if len(data) < 4:
        raise ValueError("chunk too short for its Fletcher-32 checksum")
    body, stored = data[:-4], data[-4:]
    if fletcher32(body) not in (int.from_bytes(stored, "little"), int.from_bytes(stored, "big")):
        raise ValueError("Fletcher-32 checksum mismatch")
    return body


def _decoder(code: int, values: Sequence[int], size: int, itemsize: int) -> Callable[[bytes], bytes]:
    if code == DEFLATE:
        return lambda data: bytes(numcodecs.Zlib().decode(data))
    if code == SHUFFLE:
        return lambda data: unshuffle(data, int(values[0]) if values else itemsize)
    if code == FLETCHER32:
        return check_fletcher32
    if code == LZF:
        return lambda data: lzf_decompress(data, size)
    raise ValueError(f"unsupported HDF5 filter {code}")


def decode_chunk(raw: bytes, filters: Sequence[Sequence[Any]], mask: int, size: int, itemsize: int) -> bytes:
    """Undo a chunk's filter pipeline (in reverse order, skipping filters masked off); a filter that
    fails raises ValueError naming it."""
    data = raw
    for i in range(len(filters) - 1, -1, -1):
        if mask & (1 << i):
            continue
        code, values = int(filters[i][0]), filters[i][1]
        decode = _decoder(code, values, size, itemsize)
        try:
            data = decode(data)
        except Exception as exc:  # zlib.error, numcodecs' and imagecodecs' own errors
            raise ValueError(f"{NAMES[code]} filter: {exc}") from None
    if len(data) != size:
        raise ValueError(f"decoded chunk holds {len(data)} bytes, {size} expected")
    return data
