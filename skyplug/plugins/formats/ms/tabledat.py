"""``table.dat`` of a casacore table: row count, data managers and which column each one stores.

The file is one big-endian AipsIO object "Table": ``nrow, endian flag, table type``, the TableDesc
object (skipped by its length, except for its column class names, which say scalar or array),
then the ColumnSet: version, nrow, data-manager list ``(type name, seqnr)`` and one entry per
column ``(2, name, 1, dm seqnr[, has-shape flag, IPosition])``. Read without casacore so that an
unsupported storage manager is reported by column before anything else is fetched.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

MAGIC = 0xBEBEBEBE
_CLASS = re.compile(rb"(Scalar|Array)ColumnDesc<")


class Truncated(ValueError):
    """The bytes end before the structure does (``offset`` = where more was needed)."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(f"{what} at byte {offset}")
        self.offset = offset


class Reader:
    """Sequential big-endian AipsIO reads over bytes."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise Truncated(f"truncated {what}", self.pos)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self, what: str = "integer") -> int:
        return struct.unpack(">I", self.take(4, what))[0]

    def i32(self, what: str = "integer") -> int:
        return struct.unpack(">i", self.take(4, what))[0]

    def u64(self, what: str = "integer") -> int:
        return struct.unpack(">Q", self.take(8, what))[0]

    def string(self, what: str = "string") -> str:
        n = self.u32(what)
        if n > 1 << 20:
            raise Truncated(f"implausible {what} length {n}", self.pos - 4)
        return self.take(n, what).decode("latin1")

    def object_start(self, what: str) -> tuple[int, str, int]:
        """(end offset, type name, version) of an AipsIO object starting here."""
        start = self.pos
        length = self.u32(f"{what} length")
        name = self.string(f"{what} type")
        version = self.u32(f"{what} version")
        return start + length, name, version


@dataclass(frozen=True)
class TableDat:
    """What skyplug needs from ``table.dat``."""

    nrow: int
    big_endian: bool
    table_type: str
    managers: dict[int, str]  # seqnr -> data-manager type
    columns: dict[str, int]  # column -> seqnr of its data manager
    array_columns: tuple[str, ...]


def parse_table_dat(data: bytes) -> TableDat:
    """Parse ``table.dat``; raises :class:`Truncated` (with the offset) or ``ValueError``."""
    r = Reader(data)
    if len(data) < 4 or r.u32("magic") != MAGIC:
        raise ValueError("no AipsIO magic (0xBEBEBEBE) at byte 0: not a casacore table.dat")
    end, name, version = r.object_start("Table object")
    if name != "Table":
        raise ValueError(f"top object is {name!r}, not 'Table'")
    if end > len(data):
        raise Truncated(f"truncated: the Table object needs {end} bytes, the file has {len(data)}", len(data))
    nrow = r.u64("row count") if version >= 3 else r.u32("row count")
    big_endian = r.u32("endian flag") != 0
    table_type = r.string("table type")
    desc_start = r.pos
    desc_end, desc_name, _ = r.object_start("TableDesc")
    if desc_name != "TableDesc" or desc_end > end:
        raise ValueError(f"no TableDesc at byte {desc_start}")
    kinds = [
        m.group(1) == b"Array"
        for m in _CLASS.finditer(data, desc_start, desc_end)
        if _is_aipsio_string(data, m.start())
    ]
    r.pos = desc_end
    cs_version = -r.i32("ColumnSet version")
    if cs_version >= 3:
        r.u64("ColumnSet rows")
        r.take(8, "storage option")
    elif cs_version >= 1:
        r.u32("ColumnSet rows")
    r.u32("data-manager count")
    managers = {}
    for _ in range(r.u32("data-manager list")):
        dm_type = r.string("data-manager type")
        managers[r.u32("data-manager seqnr")] = dm_type
    columns, arrays = {}, []
    for is_array in kinds:
        r.u32("column version")
        col = r.string("column name")
        r.u32("column data version")
        columns[col] = r.u32("column data-manager seqnr")
        if is_array:
            arrays.append(col)
            if r.take(1, "shape flag") != b"\x00":
                obj_end, _, _ = r.object_start("IPosition")
                r.pos = obj_end
    return TableDat(nrow, big_endian, table_type, managers, columns, tuple(arrays))


def _is_aipsio_string(data: bytes, pos: int) -> bool:
    """Whether a length-prefixed string starts at ``pos`` (its u32 length precedes it)."""
    if pos < 4:
        return False
    (n,) = struct.unpack_from(">I", data, pos - 4)
    return 16 <= n <= 64
