"""The zip container, opened in place: STORED members are ranges of the zip object.

The index reads the tail (EOCD, ZIP64 locator and record), the central directory, and the 30-byte
local header of every member in one batched round (name and extra lengths may differ from the
central copy). DEFLATE members cannot be read by range: they are read whole, with a warning.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skyplug.core.errors import FormatError, NotFound, SkyplugWarning
from skyplug.core.source import BytesSource, Source, Tree, WindowSource

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
STORED, DEFLATED = 0, 8
TAIL = 65536 + 22 + 20  # largest comment + EOCD + ZIP64 locator


@dataclass(frozen=True)
class Member:
    """One zip entry: where its data lies in the zip object."""

    name: str
    method: int
    compressed_size: int
    size: int
    header_offset: int
    crc: int
    data_offset: int = -1


def read_central_directory(src: Source) -> list[Member]:
    """Members of the zip ``src`` with their data offsets (3 read rounds, whatever the count)."""
    size = src.size
    if size < 22:
        raise FormatError(src.uri, f"not a zip: {size} bytes is shorter than an end record")
    tail_start = max(0, size - TAIL)
    tail = src.read(tail_start, size)
    pos = tail.rfind(EOCD_SIG)
    if pos < 0 or len(tail) - pos < 22:
        raise FormatError(src.uri, "not a zip: no end-of-central-directory record")
    (_, disk, cd_disk, _, count, cd_size, cd_offset, _) = struct.unpack_from("<4s4H2LH", tail, pos)
    if disk != 0 or cd_disk != 0:
        raise FormatError(src.uri, "multi-disk zip archives are not supported")
    if 0xFFFF in (count,) or 0xFFFFFFFF in (cd_size, cd_offset):
        count, cd_size, cd_offset = _zip64_end(src, tail, tail_start, pos)
    if cd_offset + cd_size > size:
        raise FormatError(
            src.uri,
            f"central directory ({cd_size} bytes at {cd_offset}) runs past the end ({size})",
            offset=cd_offset,
        )
    cd = (
        tail[cd_offset - tail_start : cd_offset - tail_start + cd_size]
        if cd_offset >= tail_start
        else src.read(cd_offset, cd_offset + cd_size)
    )
    members = _parse_central(src.uri, cd, count, cd_offset)
    return _with_data_offsets(src, members)


def _zip64_end(src: Source, tail: bytes, tail_start: int, eocd_pos: int) -> tuple[int, int, int]:
    loc = eocd_pos - 20
    if loc < 0 or tail[loc : loc + 4] != ZIP64_LOCATOR_SIG:
        raise FormatError(src.uri, "ZIP64 fields without a ZIP64 locator", offset=tail_start + eocd_pos)
    (rec_offset,) = struct.unpack_from("<Q", tail, loc + 8)
    rec = src.read(rec_offset, min(rec_offset + 56, src.size))
    if len(rec) < 56 or rec[:4] != ZIP64_EOCD_SIG:
        raise FormatError(src.uri, "broken ZIP64 end-of-central-directory record", offset=rec_offset)
    count, cd_size, cd_offset = struct.unpack_from("<3Q", rec, 32)
    return count, cd_size, cd_offset


def _parse_central(uri: str, cd: bytes, count: int, base: int) -> list[Member]:
    members, pos = [], 0
    for _ in range(count):
        if cd[pos : pos + 4] != CENTRAL_SIG or pos + 46 > len(cd):
            raise FormatError(uri, "broken central directory: bad entry signature", offset=base + pos)
        (method, crc, csize, usize, nlen, xlen, clen, lho) = struct.unpack_from("<10xH4xLLLHHH8xL", cd, pos)
        flags = struct.unpack_from("<H", cd, pos + 8)[0]
        raw_name = cd[pos + 46 : pos + 46 + nlen]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        extra = cd[pos + 46 + nlen : pos + 46 + nlen + xlen]
        usize, csize, lho = _zip64_extra(extra, usize, csize, lho)
        members.append(Member(name, method, csize, usize, lho, crc))
        pos += 46 + nlen + xlen + clen
    return members


def _zip64_extra(extra: bytes, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            vals = iter(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if usize == 0xFFFFFFFF:
                usize = next(vals)
            if csize == 0xFFFFFFFF:
                csize = next(vals)
            if lho == 0xFFFFFFFF:
                lho = next(vals)
            break
        pos += 4 + length
    return usize, csize, lho


def _with_data_offsets(src: Source, members: list[Member]) -> list[Member]:
    for m in members:
        if m.header_offset + 30 > src.size:
            raise FormatError(
                src.uri, f"member {m.name!r}: local header past the end", offset=m.header_offset
            )
    heads = src.read_ranges([(m.header_offset, m.header_offset + 30) for m in members])
    out = []
    for m, head in zip(members, heads, strict=True):
        if head[:4] != LOCAL_SIG:
            raise FormatError(
                src.uri, f"member {m.name!r}: bad local header signature", offset=m.header_offset
            )
        nlen, xlen = struct.unpack_from("<HH", head, 26)
        data_offset = m.header_offset + 30 + nlen + xlen
        if data_offset + m.compressed_size > src.size:
            raise FormatError(
                src.uri, f"member {m.name!r}: data runs past the end of the zip", offset=data_offset
            )
        out.append(Member(m.name, m.method, m.compressed_size, m.size, m.header_offset, m.crc, data_offset))
    return out


class ZipTree(Tree):
    """A zip object seen as a tree of members, read in place."""

    def __init__(self, src: Source, members: Sequence[Member] | None = None, complete: bool = True) -> None:
        """``members`` known in advance (a partition's) spare the central directory read until a
        member outside them is asked for, unless ``complete``."""
        super().__init__(src.uri)
        self.zip = src
        listed = members if members is not None else read_central_directory(src)
        self._members = {m.name: m for m in listed if not m.name.endswith("/")}
        self._complete = complete or members is None
        self._inflated: dict[str, BytesSource] = {}

    def _read_all(self) -> None:
        if not self._complete:
            self._members = {m.name: m for m in read_central_directory(self.zip) if not m.name.endswith("/")}
            self._complete = True

    def container(self, names: Sequence[str]) -> dict[str, Any]:
        """The zip's size and where the named members lie: a worker reads no central directory."""
        return {"zip": self.packed(names), "size": self.zip.size}

    def packed(self, names: Sequence[str]) -> dict[str, list[int]]:
        """Where the named members lie, small enough for a partition descriptor."""
        out = {}
        for name in names:
            m = self.member(name)
            out[name] = [m.method, m.data_offset, m.compressed_size, m.size, m.crc]
        return out

    @classmethod
    def from_packed(cls, src: Source, packed: dict[str, list[int]]) -> ZipTree:
        """A tree over ``src`` that knows the packed members and reads the rest on demand."""
        members = [Member(n, m, c, s, -1, crc, off) for n, (m, off, c, s, crc) in packed.items()]
        return cls(src, members, complete=False)

    @property
    def version(self) -> str:
        return self.zip.version

    def members(self) -> dict[str, int]:
        self._read_all()
        return {name: m.size for name, m in self._members.items()}

    def member(self, name: str) -> Member:
        if name not in self._members:
            self._read_all()
        try:
            return self._members[name]
        except KeyError:
            raise NotFound(f"{self.uri}: no member {name!r} in the zip") from None

    def _sources(self) -> list[Source]:
        return [self.zip]

    def source(self, member: str) -> Source:
        m = self.member(member)
        uri = f"{self.uri}!/{member}"
        if m.method == STORED:
            return WindowSource(uri, self.zip, m.data_offset, m.size)
        if m.method != DEFLATED:
            raise FormatError(self.uri, f"member {member!r}: compression method {m.method} is not supported")
        if member not in self._inflated:
            warnings.warn(
                f"{uri}: DEFLATE member read whole ({m.compressed_size} bytes); store it "
                "uncompressed (ZIP_STORED) for ranged reads",
                SkyplugWarning,
                stacklevel=2,
            )
            raw = self.zip.read(m.data_offset, m.data_offset + m.compressed_size)
            try:
                data = zlib.decompress(raw, -15)
            except zlib.error as exc:
                raise FormatError(
                    self.uri, f"member {member!r}: corrupt DEFLATE data: {exc}", offset=m.data_offset
                ) from exc
            if len(data) != m.size or zlib.crc32(data) != m.crc:
                raise FormatError(
                    self.uri, f"member {member!r}: size or CRC mismatch after inflating", offset=m.data_offset
                )
            self._inflated[member] = BytesSource(uri, data, self.zip.version)
        return self._inflated[member]

    def read_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """STORED members map to ranges of the zip, so all requests coalesce in one plan."""
        stored = [i for i, (name, _, _) in enumerate(requests) if self.member(name).method == STORED]
        out: list[bytes] = [b""] * len(requests)
        zip_ranges = []
        for i in stored:
            name, start, end = requests[i]
            m = self._members[name]
            if not 0 <= start <= end <= m.size:
                raise FormatError(self.uri, f"member {name!r}: range [{start}, {end}) outside {m.size} bytes")
            zip_ranges.append((m.data_offset + start, m.data_offset + end))
        for i, data in zip(stored, self.zip.read_ranges(zip_ranges), strict=True):
            out[i] = data
        for i, (name, start, end) in enumerate(requests):
            if i not in set(stored):
                out[i] = self.source(name).read(start, end)
        return out
