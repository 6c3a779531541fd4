"""DyscoStMan: a little-endian header, then one block of ``block_size`` bytes per timestep.

Header: ``u32 headerSize, columnHeaderOffset, columnCount, u32 name length + name,
u32 rowsPerBlock, antennaCount, blockSize, ...``; block k holds rows ``[k*rowsPerBlock, ...)``
of every Dysco column and is decoded independently (by casacore, from the sparse mirror).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from skyplug.plugins.formats.ms.layout import merge

HEAD_READ = 4096  # bytes read at index time; the header is under 200 bytes


def header(data: bytes) -> dict[str, int]:
    """Header size, rows per block, block size and antenna count of a Dysco file."""
    if len(data) < 16:
        raise ValueError(f"Dysco header needs at least 16 bytes, got {len(data)}")
    header_size, _, _, name_len = struct.unpack_from("<4I", data, 0)
    pos = 16 + name_len
    if len(data) < pos + 12:
        raise ValueError("truncated Dysco header")
    rows_per_block, antennas, block_size = struct.unpack_from("<3I", data, pos)
    if rows_per_block == 0 or block_size == 0:
        raise ValueError("Dysco header with zero rows per block or zero block size")
    return {
        "header_size": header_size,
        "rows_per_block": rows_per_block,
        "block_size": block_size,
        "antennas": antennas,
    }


def ranges(dm: dict[str, Any], rows: np.ndarray) -> list[tuple[int, int]]:
    """The header and the blocks holding ``rows`` of a DyscoStMan file."""
    hs, rpb, bs = dm["header_size"], dm["rows_per_block"], dm["block_size"]
    return merge([(0, hs)] + [(hs + int(b) * bs, hs + (int(b) + 1) * bs) for b in np.unique(rows // rpb)])
