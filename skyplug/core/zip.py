"""The zip container, opened in place: STORED members are ranges of the zip object.

The index reads the tail (EOCD, ZIP64 locator and record), the central directory, and the local
header (30 bytes and the name) of every member in one batched round; ZIP64 local extras cost a
second round only for the members that have them. DEFLATE members cannot be read by range: they
are inflated whole, streamed, with a warning.

Hand-written because no library opens a zip in place by range: ``zipfile`` wants a seekable file and
reads one member at a time through it (a round trip per read, every local header on its own), and
fsspec's zip filesystem wraps that; here the directory costs three batched rounds and a member's
tiles are plain ranges of the zip object, fetched with everything else a partition needs.

A zip is untrusted input; every inconsistency is a one-line :class:`FormatError` naming the zip,
the member and the byte offset. What is verified:

* end record: a comment length that fits exactly, one disk, agreeing entry counts, at most
  ``MAX_MEMBERS`` entries and ``MAX_CENTRAL`` bytes of central directory, which lies before the
  end record (and the ZIP64 record before its locator);
* central entries: bounds, UTF-8 names when flagged so, no duplicate, NUL, absolute or ``..``
  names, ZIP64 extras present and long enough where a field needs them;
* local headers against the central directory: name, method, encryption bit, CRC-32 and sizes
  (only when flag bit 3 leaves them 0: the data descriptor after the data is not compared),
  STORED sizes equal, data before the central directory and inside the object, no two members
  overlapping;
* a member read whole (the small files of an index, :meth:`ZipTree.read_member`): its CRC-32;
* DEFLATE: inflated with a cap (never more than the declared size + 1 byte, never more than
  ``MAX_INFLATE``), the size and CRC-32 checked at the end, so memory stays bounded.

Not verified by default: a STORED member read by ranges (tiles) is whatever bytes the zip holds
there; no CRC can be checked without reading the whole member. ``verify=True`` (on
``skyplug.open``, ``open_target`` or :class:`ZipTree`, carried to workers by the partition) reads
each STORED member whole, streamed, before its first ranged read and checks its CRC-32, once per
zip version (remembered in the cache folder). Partitions carry their members' offsets and CRCs
from the index: a worker trusts them (it reads no central directory) after checking their bounds.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import threading
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skyplug.core.config import get_config
from skyplug.core.errors import FormatError, NotFound, SkyplugWarning
from skyplug.core.paths import unsafe_reason
from skyplug.core.source import BytesSource, Range, Source, Tree, WindowSource

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
STORED, DEFLATED = 0, 8
TAIL = 65535 + 22 + 20  # largest comment + EOCD + ZIP64 locator
EOCD = struct.Struct("<4xHHHHLLH")  # disk, cd disk, entries here, entries, cd size, cd offset, comment
CENTRAL = struct.Struct("<4x4xHHHHLLLHHHHHLL")  # flags, method, time, date, crc, sizes, lengths, lho
LOCAL = struct.Struct("<4x2xHHHHLLLHH")  # flags, method, time, date, crc, csize, usize, nlen, xlen
MAX_MEMBERS = 1_000_000  # entries of a central directory
MAX_CENTRAL = 256 * 1024 * 1024  # bytes of a central directory
MAX_INFLATE = 512 * 1024 * 1024  # bytes a DEFLATE member may inflate to (it is held in memory)
CHUNK = 8 * 1024 * 1024  # bytes read at a time when streaming a whole member
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_UTF8 = 0x1, 0x8, 0x800
SATURATED = 0xFFFFFFFF


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
    flags: int = 0


@dataclass(frozen=True)
class _Entry:
    """A central-directory entry before its local header is read."""

    member: Member
    raw_name: bytes
    offset: int  # of the central entry


def read_central_directory(src: Source) -> list[Member]:
    """Members of the zip ``src`` with their data offsets, checked (3 read rounds, whatever the count)."""
    size = src.size
    if size < 22:
        raise FormatError(src.uri, f"not a zip: {size} bytes is shorter than an end record")
    tail_start = max(0, size - TAIL)
    tail = src.read(tail_start, size)
    pos = _find_end(src.uri, tail, tail_start)
    disk, cd_disk, here, count, cd_size, cd_offset, _ = EOCD.unpack_from(tail, pos)
    where = tail_start + pos
    if disk != 0 or cd_disk != 0:
        raise FormatError(src.uri, "multi-disk zip archives are not supported", offset=where)
    limit = where  # the central directory ends before the end record
    if 0xFFFF in (here, count) or SATURATED in (cd_size, cd_offset):
        here, count, cd_size, cd_offset, limit = _zip64_end(
            src, tail, tail_start, pos, (here, count, cd_size, cd_offset)
        )
    if here != count:
        raise FormatError(
            src.uri, f"end record counts {here} entries on this disk, {count} in all", offset=where
        )
    if count > MAX_MEMBERS:
        raise FormatError(
            src.uri, f"{count} members: more than skyplug accepts ({MAX_MEMBERS})", offset=where
        )
    if cd_size > MAX_CENTRAL:
        raise FormatError(
            src.uri,
            f"central directory of {cd_size} bytes: more than skyplug accepts ({MAX_CENTRAL})",
            offset=where,
        )
    if count * 46 > cd_size:
        raise FormatError(
            src.uri, f"{count} entries cannot fit in a central directory of {cd_size} bytes", offset=where
        )
    if cd_offset + cd_size > limit:
        raise FormatError(
            src.uri,
            f"central directory ({cd_size} bytes at {cd_offset}) runs past the end record at {limit} "
            f"(or the end of the zip, {size} bytes)",
            offset=cd_offset,
        )
    cd = (
        tail[cd_offset - tail_start : cd_offset - tail_start + cd_size]
        if cd_offset >= tail_start
        else src.read(cd_offset, cd_offset + cd_size)
    )
    entries = _parse_central(src.uri, cd, count, cd_offset)
    return _with_data_offsets(src, entries, cd_offset)


def _find_end(uri: str, tail: bytes, tail_start: int) -> int:
    """Position in ``tail`` of the end record whose comment reaches exactly the end of the zip."""
    end, lying, truncated = len(tail), None, None
    while (pos := tail.rfind(EOCD_SIG, 0, end)) >= 0:
        if len(tail) - pos >= 22:
            (comment,) = struct.unpack_from("<H", tail, pos + 20)
            if pos + 22 + comment == len(tail):
                return pos
            lying = lying or (pos, comment)
        else:
            truncated = pos
        end = pos + 3
    if lying is not None:
        pos, comment = lying
        raise FormatError(
            uri,
            f"no end-of-central-directory record fits: the one found claims a {comment}-byte comment, "
            f"{len(tail) - pos - 22} bytes follow it",
            offset=tail_start + pos,
        )
    if truncated is not None:
        raise FormatError(
            uri,
            f"not a zip: no end-of-central-directory record (one truncated to {len(tail) - truncated} bytes)",
            offset=tail_start + truncated,
        )
    raise FormatError(
        uri, f"not a zip: no end-of-central-directory record in the last {len(tail)} bytes", offset=tail_start
    )


def _zip64_end(
    src: Source, tail: bytes, tail_start: int, eocd_pos: int, fields: tuple[int, int, int, int]
) -> tuple[int, int, int, int, int]:
    """(entries here, entries, cd size, cd offset, where the ZIP64 record starts) from the ZIP64 end."""
    loc = eocd_pos - 20
    if loc < 0 or tail[loc : loc + 4] != ZIP64_LOCATOR_SIG:
        raise FormatError(src.uri, "ZIP64 fields without a ZIP64 locator", offset=tail_start + eocd_pos)
    disk, rec_offset, disks = struct.unpack_from("<4xLQL", tail, loc)
    if disk != 0 or disks > 1:
        raise FormatError(src.uri, "multi-disk zip archives are not supported", offset=tail_start + loc)
    if rec_offset + 56 > tail_start + loc:
        raise FormatError(
            src.uri, f"ZIP64 end record at {rec_offset} runs past its locator", offset=tail_start + loc
        )
    rec = src.read(rec_offset, rec_offset + 56)
    if rec[:4] != ZIP64_EOCD_SIG:
        raise FormatError(src.uri, "broken ZIP64 end-of-central-directory record", offset=rec_offset)
    disk, cd_disk, here, count, cd_size, cd_offset = struct.unpack_from("<LL4Q", rec, 16)
    if disk != 0 or cd_disk != 0:
        raise FormatError(src.uri, "multi-disk zip archives are not supported", offset=rec_offset)
    caps = (0xFFFF, 0xFFFF, SATURATED, SATURATED)
    for short, long, cap in zip(fields, (here, count, cd_size, cd_offset), caps, strict=True):
        if short != cap and short != long:
            raise FormatError(
                src.uri, f"end record says {short}, its ZIP64 record {long}", offset=tail_start + eocd_pos
            )
    return here, count, cd_size, cd_offset, rec_offset


def _parse_central(uri: str, cd: bytes, count: int, base: int) -> list[_Entry]:
    entries, names, pos = [], set(), 0
    for i in range(count):
        at = base + pos
        if pos + 46 > len(cd):
            raise FormatError(uri, f"broken central directory: entry {i} is truncated", offset=at)
        if cd[pos : pos + 4] != CENTRAL_SIG:
            raise FormatError(uri, "broken central directory: bad entry signature", offset=at)
        (flags, method, _, _, crc, csize, usize, nlen, xlen, clen, disk, _, _, lho) = CENTRAL.unpack_from(
            cd, pos
        )
        if pos + 46 + nlen + xlen + clen > len(cd):
            raise FormatError(uri, f"broken central directory: entry {i} runs past its end", offset=at)
        raw = cd[pos + 46 : pos + 46 + nlen]
        try:
            name = raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437")
        except UnicodeDecodeError:
            raise FormatError(
                uri, f"member name {raw!r} is flagged UTF-8 but is not", offset=at + 46
            ) from None
        why = unsafe_reason(name[:-1] if name.endswith("/") else name)
        if why:
            raise FormatError(uri, f"member {name!r}: unsafe name ({why})", offset=at)
        if name in names:
            raise FormatError(uri, f"member {name!r} appears twice in the central directory", offset=at)
        names.add(name)
        extra = cd[pos + 46 + nlen : pos + 46 + nlen + xlen]
        usize, csize, lho, disk = _zip64_extra(uri, name, extra, [usize, csize, lho, disk], at + 46 + nlen)
        if disk != 0:
            raise FormatError(uri, f"member {name!r} lies on disk {disk}: multi-disk zips are not supported")
        entries.append(_Entry(Member(name, method, csize, usize, lho, crc, flags=flags), raw, at))
        pos += 46 + nlen + xlen + clen
    return entries


def _zip64_extra(uri: str, name: str, extra: bytes, fields: list[int], at: int) -> list[int]:
    """``fields`` (uncompressed size, compressed size, header offset[, disk]) with the saturated ones
    taken, in that order, from the ZIP64 extra field (id 0x0001)."""
    caps = [SATURATED, SATURATED, SATURATED, 0xFFFF][: len(fields)]
    needed = [i for i, (v, cap) in enumerate(zip(fields, caps, strict=True)) if v == cap]
    if not needed:
        return fields
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            body = extra[pos + 4 : pos + 4 + length]
            widths = [4 if i == 3 else 8 for i in needed]
            if sum(widths) > len(body):
                raise FormatError(
                    uri,
                    f"member {name!r}: ZIP64 extra field of {len(body)} bytes, {sum(widths)} needed",
                    offset=at + pos,
                )
            out, cursor = list(fields), 0
            for i, width in zip(needed, widths, strict=True):
                out[i] = int.from_bytes(body[cursor : cursor + width], "little")
                cursor += width
            return out
        pos += 4 + length
    if needed:
        raise FormatError(
            uri, f"member {name!r}: 32-bit fields saturated but no ZIP64 extra field", offset=at
        )
    return fields


def _with_data_offsets(src: Source, entries: list[_Entry], cd_offset: int) -> list[Member]:
    """Members with their data offsets, each local header checked against its central entry."""
    uri = src.uri
    for e in entries:
        m = e.member
        if m.header_offset + 30 + len(e.raw_name) > cd_offset:
            raise FormatError(
                uri,
                f"member {m.name!r}: local header past the central directory or the end",
                offset=m.header_offset,
            )
    heads = src.read_ranges(
        [(e.member.header_offset, e.member.header_offset + 30 + len(e.raw_name)) for e in entries]
    )
    locals_: list[tuple[_Entry, list[int], int, int]] = []  # entry, [crc, csize, usize], nlen, xlen
    for e, head in zip(entries, heads, strict=True):
        m = e.member
        if head[:4] != LOCAL_SIG:
            raise FormatError(uri, f"member {m.name!r}: bad local header signature", offset=m.header_offset)
        flags, method, _, _, crc, csize, usize, nlen, xlen = LOCAL.unpack_from(head)
        if nlen != len(e.raw_name) or head[30:] != e.raw_name:
            local_name = head[30:].decode("cp437")
            raise FormatError(
                uri,
                f"member {m.name!r}: its local header names {local_name!r} (mis-pointed member)",
                offset=m.header_offset,
            )
        if method != m.method or (flags ^ m.flags) & FLAG_ENCRYPTED:
            raise FormatError(
                uri,
                f"member {m.name!r}: local header says method {method}, flags {flags:#x}; the central "
                f"directory method {m.method}, flags {m.flags:#x}",
                offset=m.header_offset,
            )
        locals_.append((e, [crc, csize, usize], nlen, xlen))
    wide = [x for x in locals_ if SATURATED in x[1][1:]]
    extras = src.read_ranges(
        [(e.member.header_offset + 30 + n, e.member.header_offset + 30 + n + x) for e, _, n, x in wide]
    )
    local_extra = {id(x[0]): extra for x, extra in zip(wide, extras, strict=True)}
    out = []
    for e, (crc, csize, usize), nlen, xlen in locals_:
        m = e.member
        data_offset = m.header_offset + 30 + nlen + xlen
        if data_offset + m.compressed_size > src.size:
            raise FormatError(
                uri, f"member {m.name!r}: data runs past the end of the zip", offset=data_offset
            )
        if data_offset + m.compressed_size > cd_offset:
            raise FormatError(
                uri, f"member {m.name!r}: data runs into the central directory", offset=data_offset
            )
        if id(e) in local_extra:
            usize, csize = _zip64_extra(
                uri, m.name, local_extra[id(e)], [usize, csize], m.header_offset + 30 + nlen
            )
        central = [m.crc, m.compressed_size, m.size]
        described = m.flags & FLAG_DESCRIPTOR and [crc, csize, usize] in ([0, 0, 0], [crc, 0, 0])
        if [crc, csize, usize] != central and not described:
            raise FormatError(
                uri,
                f"member {m.name!r}: local header says CRC {crc:#010x}, {csize} bytes stored, {usize} "
                f"bytes; the central directory CRC {m.crc:#010x}, {m.compressed_size} stored, {m.size}",
                offset=m.header_offset,
            )
        if m.method == STORED and m.compressed_size != m.size:
            raise FormatError(
                uri,
                f"member {m.name!r}: STORED, yet it declares {m.size} bytes and stores {m.compressed_size}",
                offset=data_offset,
            )
        out.append(
            Member(m.name, m.method, m.compressed_size, m.size, m.header_offset, m.crc, data_offset, m.flags)
        )
    _check_overlaps(uri, out)
    return out


def _check_overlaps(uri: str, members: list[Member]) -> None:
    """No member's local header may start inside another member's header or data."""
    spans = sorted((m.header_offset, m.data_offset + m.compressed_size, m.name) for m in members)
    for (_, end, name), (start, _, other) in itertools.pairwise(spans):
        if start < end:
            raise FormatError(uri, f"members {name!r} and {other!r} overlap", offset=start)


def _check_crc(uri: str, m: Member, data: bytes | bytearray | memoryview, at: int) -> None:
    if zlib.crc32(data) != m.crc:
        raise FormatError(
            uri, f"member {m.name!r}: CRC-32 {zlib.crc32(data):#010x}, the zip says {m.crc:#010x}", offset=at
        )


class _StoredMember(WindowSource):
    """A STORED member: a window of the zip whose whole-member reads are CRC-checked."""

    def __init__(self, uri: str, tree: ZipTree, m: Member) -> None:
        super().__init__(uri, tree.zip, m.data_offset, m.size)
        self.tree, self.m = tree, m

    def read_ranges(self, ranges: Sequence[Range], max_gap: int | None = None) -> list[bytes]:
        self.tree.verify_member(self.m)
        return self._crc_checked(ranges, super().read_ranges(ranges, max_gap))

    def read_buffers(self, ranges: Sequence[Range], max_gap: int | None = None) -> list[memoryview]:
        self.tree.verify_member(self.m)
        return self._crc_checked(ranges, super().read_buffers(ranges, max_gap))

    def _crc_checked(self, ranges: Sequence[Range], out: list[Any]) -> list[Any]:
        for (start, end), data in zip(ranges, out, strict=True):
            if (start, end) == (0, self.m.size):
                _check_crc(self.tree.uri, self.m, data, self.m.data_offset)
        return out


_verified: set[tuple[str, str, str]] = set()
_verified_lock = threading.Lock()


class ZipTree(Tree):
    """A zip object seen as a tree of members, read in place.

    ``verify`` checks the CRC-32 of every STORED member (read whole, streamed) before its first
    ranged read, once per zip version.
    """

    def __init__(
        self,
        src: Source,
        members: Sequence[Member] | None = None,
        complete: bool = True,
        *,
        verify: bool = False,
    ) -> None:
        """``members`` known in advance (a partition's) spare the central directory read until a
        member outside them is asked for, unless ``complete``."""
        super().__init__(src.uri)
        self.zip, self.verify = src, verify
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
        out: dict[str, Any] = {"zip": self.packed(names), "size": self.zip.size}
        if self.verify:
            out["verify"] = True
        return out

    def packed(self, names: Sequence[str]) -> dict[str, list[int]]:
        """Where the named members lie, small enough for a partition descriptor."""
        out = {}
        for name in names:
            m = self.member(name)
            out[name] = [m.method, m.data_offset, m.compressed_size, m.size, m.crc]
        return out

    @classmethod
    def from_packed(cls, src: Source, packed: dict[str, list[int]], *, verify: bool = False) -> ZipTree:
        """A tree over ``src`` that knows the packed members and reads the rest on demand.

        The packed fields come from a partition descriptor: checked to be integers inside the zip.
        """
        members = []
        for name, fields in packed.items():
            ok = (
                isinstance(fields, list)
                and len(fields) == 5
                and all(type(v) is int and v >= 0 for v in fields)
            )
            if not ok or fields[1] + fields[2] > src.size:
                raise FormatError(
                    src.uri, f"partition: member {name!r} is not a member of this zip: {fields!r}"
                )
            method, off, csize, size, crc = fields
            members.append(Member(name, method, csize, size, -1, crc, off))
        return cls(src, members, complete=False, verify=verify)

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

    def _readable(self, member: str) -> Member:
        """The member, refused if skyplug cannot read it (encrypted, unknown method)."""
        m = self.member(member)
        if m.flags & FLAG_ENCRYPTED:
            raise FormatError(self.uri, f"member {member!r} is encrypted", offset=m.header_offset)
        if m.method not in (STORED, DEFLATED):
            raise FormatError(self.uri, f"member {member!r}: compression method {m.method} is not supported")
        return m

    def source(self, member: str) -> Source:
        m = self._readable(member)
        uri = f"{self.uri}!/{member}"
        if m.method == STORED:
            return _StoredMember(uri, self, m)
        if member not in self._inflated:
            warnings.warn(
                f"{uri}: DEFLATE member read whole ({m.compressed_size} bytes); store it "
                "uncompressed (ZIP_STORED) for ranged reads",
                SkyplugWarning,
                stacklevel=2,
            )
            self._inflated[member] = BytesSource(uri, self._inflate(m), self.zip.version)
        return self._inflated[member]

    def _inflate(self, m: Member) -> bytes:
        """The member inflated, streamed with a cap: never more than its declared size + 1 byte."""
        if m.size > MAX_INFLATE:
            raise FormatError(
                self.uri,
                f"member {m.name!r}: DEFLATE member of {m.size} bytes, more than skyplug inflates "
                f"in memory ({MAX_INFLATE}); store it uncompressed (ZIP_STORED)",
                offset=m.data_offset,
            )
        inflater, out = zlib.decompressobj(-15), bytearray()
        end = m.data_offset + m.compressed_size
        try:
            for start in range(m.data_offset, end, CHUNK):
                raw = self.zip.read(start, min(end, start + CHUNK))
                while raw and not inflater.eof:
                    out += inflater.decompress(raw, m.size + 1 - len(out))
                    if len(out) > m.size:
                        raise FormatError(
                            self.uri,
                            f"member {m.name!r}: inflates past its declared {m.size} bytes",
                            offset=m.data_offset,
                        )
                    raw = inflater.unconsumed_tail
                if inflater.eof:
                    break
        except zlib.error as exc:
            raise FormatError(
                self.uri, f"member {m.name!r}: corrupt DEFLATE data: {exc}", offset=m.data_offset
            ) from exc
        if not inflater.eof or len(out) != m.size:
            raise FormatError(
                self.uri,
                f"member {m.name!r}: DEFLATE data ends after {len(out)} of its declared {m.size} bytes",
                offset=m.data_offset,
            )
        _check_crc(self.uri, m, out, m.data_offset)
        return bytes(out)

    def verify_member(self, m: Member) -> None:
        """With ``verify``: the CRC-32 of the whole STORED member, checked once per zip version."""
        if not self.verify:
            return
        key = (self.uri, self.zip.version, m.name)
        if key in _verified:
            return
        marker = (
            get_config().cache_dir / "zip-verified" / hashlib.sha256("\n".join(key).encode()).hexdigest()[:32]
        )
        if not marker.exists():
            crc = 0
            for start in range(m.data_offset, m.data_offset + m.size, CHUNK):
                crc = zlib.crc32(self.zip.read(start, min(m.data_offset + m.size, start + CHUNK)), crc)
            if crc != m.crc:
                raise FormatError(
                    self.uri,
                    f"member {m.name!r}: CRC-32 {crc:#010x}, the zip says {m.crc:#010x} (verify=True)",
                    offset=m.data_offset,
                )
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        with _verified_lock:
            _verified.add(key)

    def read_member(self, member: str) -> bytes:
        """A whole member, its CRC-32 checked."""
        return self.read_ranges([(member, 0, self.member(member).size)])[0]

    def read_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """STORED members map to ranges of the zip, so all requests coalesce in one plan.

        A request for a whole member has its CRC-32 checked.
        """
        return self._read_members(requests, writable=False)

    def read_buffers(self, requests: Sequence[tuple[str, int, int]]) -> list[memoryview]:
        """As :meth:`read_ranges`, each request's bytes as a writable memoryview."""
        return self._read_members(requests, writable=True)

    def _read_members(self, requests: Sequence[tuple[str, int, int]], writable: bool) -> list[Any]:
        stored = [i for i, (name, _, _) in enumerate(requests) if self._readable(name).method == STORED]
        out: list[Any] = [b""] * len(requests)
        zip_ranges = []
        for i in stored:
            name, start, end = requests[i]
            m = self._members[name]
            if not 0 <= start <= end <= m.size:
                raise FormatError(self.uri, f"member {name!r}: range [{start}, {end}) outside {m.size} bytes")
            self.verify_member(m)
            zip_ranges.append((m.data_offset + start, m.data_offset + end))
        got: list[Any] = self.zip.read_buffers(zip_ranges) if writable else self.zip.read_ranges(zip_ranges)
        for i, data in zip(stored, got, strict=True):
            name, start, end = requests[i]
            m = self._members[name]
            if (start, end) == (0, m.size):
                _check_crc(self.uri, m, data, m.data_offset)
            out[i] = data
        done = set(stored)
        for i, (name, start, end) in enumerate(requests):
            if i not in done:
                src = self.source(name)
                out[i] = src.read_buffers([(start, end)])[0] if writable else src.read(start, end)
        return out
