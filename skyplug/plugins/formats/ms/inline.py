"""Small files carried inside partition descriptors, so that a cold worker need not fetch them.

Like kerchunk's ``inline_threshold``: the index keeps the tiny files a load reads (``table.dat``,
``table.info``, tiled-storage headers, the ANTENNA / DATA_DESCRIPTION / SPECTRAL_WINDOW subtables),
compressed together, and each partition carries them; a fresh worker then fetches only the larger
small files (the main table's StandardStMan / IncrementalStMan data) beside its tiles, with no
listing. zlib (stdlib) compresses the concatenation; unpacking inflates at most the declared sizes.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from typing import Any

MAX_FILE = 64 * 1024  # a small file larger than this is fetched, never inlined
MAX_PACKED = 48 * 1024  # bytes of compressed inline data a descriptor may carry


def pack(
    files: Mapping[str, bytes], max_file: int = MAX_FILE, max_packed: int = MAX_PACKED
) -> dict[str, Any]:
    """``{"files": [[member, size], ...], "z": base64}`` of the files that fit, smallest first."""
    chosen = sorted((len(data), name) for name, data in files.items() if len(data) <= max_file)
    while chosen:
        raw = b"".join(files[name] for _, name in chosen)
        packed = zlib.compress(raw, 9)
        if len(packed) <= max_packed:
            return {"files": [[name, size] for size, name in chosen], "z": base64.b64encode(packed).decode()}
        chosen = chosen[: len(chosen) * 3 // 4]  # drop the largest quarter and try again
    return {"files": [], "z": ""}


def unpack(packed: Mapping[str, Any], obj: str) -> dict[str, bytes]:
    """The files :func:`pack` stored; a malformed entry is a ValueError naming ``obj`` (never a
    decompression bomb: no more than the declared sizes are inflated)."""
    try:
        entries = [(str(name), int(size)) for name, size in packed.get("files", [])]
        if any(size < 0 or size > MAX_FILE for _, size in entries):
            raise ValueError("a file size is out of bounds")
        total = sum(size for _, size in entries)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(packed.get("z", ""), validate=True), total)
        if len(raw) != total or inflater.unconsumed_tail or not (inflater.eof or not entries):
            raise ValueError(f"holds other than the declared {total} bytes")
    except (TypeError, ValueError, zlib.error) as exc:
        raise ValueError(f"{obj}: corrupt inline small files in the partition: {exc}") from exc
    out, at = {}, 0
    for name, size in entries:
        out[name] = raw[at : at + size]
        at += size
    return out
