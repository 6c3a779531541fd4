"""A hostile-zip corpus: a valid zipped MS rewritten byte by byte into every lie a zip can tell.

``build`` writes a zip from entries whose every header field can be set apart, local and central
copies included; ``corpus`` derives the hostile cases from the members of a valid ``.ms.zip``:
slip and absolute names, mismatched headers, bad CRCs, lying sizes, ZIP64 oddities, bombs,
duplicate and overlapping members, broken end records.
"""

from __future__ import annotations

import dataclasses
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass
class Entry:
    """One member as written: ``data`` is the stored bytes; ``local`` / ``central`` override fields."""

    name: bytes
    data: bytes
    method: int = 0
    crc: int | None = None  # default: CRC-32 of data (STORED)
    size: int | None = None  # uncompressed size; default: len(data)
    flags: int = 0
    local_extra: bytes = b""
    central_extra: bytes = b""
    local: dict[str, Any] = field(default_factory=dict)  # name, method, crc, csize, size, flags
    central: dict[str, Any] = field(default_factory=dict)  # crc, csize, size, lho


def build(
    entries: list[Entry], *, comment: bytes = b"", end: dict[str, Any] | None = None, before_end: bytes = b""
) -> bytes:
    """A zip of ``entries``; ``end`` overrides end-record fields (here, count, cd_size, cd_offset,
    comment_len); ``before_end`` goes between the central directory and the end record."""
    out, central = bytearray(), bytearray()
    for e in entries:
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        size = len(e.data) if e.size is None else e.size
        lo = {
            "name": e.name,
            "method": e.method,
            "crc": crc,
            "csize": len(e.data),
            "size": size,
            "flags": e.flags,
            **e.local,
        }
        lho = len(out)
        out += struct.pack(
            "<4sHHHHHLLLHH",
            b"PK\x03\x04",
            20,
            lo["flags"],
            lo["method"],
            0,
            0x21,
            lo["crc"],
            lo["csize"],
            lo["size"],
            len(lo["name"]),
            len(e.local_extra),
        )
        out += lo["name"] + e.local_extra + e.data
        ce = {"crc": crc, "csize": len(e.data), "size": size, "lho": lho, **e.central}
        central += struct.pack(
            "<4sHHHHHHLLLHHHHHLL",
            b"PK\x01\x02",
            20,
            20,
            e.flags,
            e.method,
            0,
            0x21,
            ce["crc"],
            ce["csize"],
            ce["size"],
            len(e.name),
            len(e.central_extra),
            0,
            0,
            0,
            0,
            ce["lho"],
        )
        central += e.name + e.central_extra
    cd_offset = len(out)
    out += central + before_end
    f = {
        "here": len(entries),
        "count": len(entries),
        "cd_size": len(central),
        "cd_offset": cd_offset,
        "comment_len": len(comment),
        **(end or {}),
    }
    out += (
        struct.pack(
            "<4sHHHHLLH",
            b"PK\x05\x06",
            0,
            0,
            f["here"],
            f["count"],
            f["cd_size"],
            f["cd_offset"],
            f["comment_len"],
        )
        + comment
    )
    return bytes(out)


def entries_of(path: Path) -> list[Entry]:
    """The members of a valid STORED zip as entries."""
    with zipfile.ZipFile(path) as zf:
        return [Entry(i.filename.encode(), zf.read(i)) for i in zf.infolist()]


def deflated(total: int, chunk: int = MiB) -> bytes:
    """A raw DEFLATE stream of ``total`` zero bytes, built without holding them."""
    z, parts, zeros = zlib.compressobj(9, zlib.DEFLATED, -15), [], bytes(chunk)
    for start in range(0, total, chunk):
        parts.append(z.compress(zeros[: min(chunk, total - start)]))
    parts.append(z.flush())
    return b"".join(parts)


def _replace(entries: list[Entry], name: str, **changes: Any) -> list[Entry]:
    return [dataclasses.replace(e, **changes) if e.name == name.encode() else e for e in entries]


def _index(entries: list[Entry], name: str) -> int:
    return next(i for i, e in enumerate(entries) if e.name == name.encode())


def _zip64_end(entries: list[Entry], rec_offset_delta: int = 0, short_record: bool = False) -> bytes:
    """Entries closed by a ZIP64 end record and locator (the plain end record saturated)."""
    plain = build(entries)
    cd_offset = plain.index(b"PK\x01\x02")
    cd_end = plain.index(b"PK\x05\x06")
    body = plain[:cd_end]
    rec = struct.pack(
        "<4sQHHLLQQQQ",
        b"PK\x06\x06",
        44,
        45,
        45,
        0,
        0,
        len(entries),
        len(entries),
        cd_end - cd_offset,
        cd_offset,
    )
    if short_record:
        rec = rec[:30]
    loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, cd_end + rec_offset_delta, 1)
    eocd = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + rec + loc + eocd


def corpus(valid_zip: Path, canary: Path) -> dict[str, bytes]:
    """Hostile zips made from ``valid_zip`` (a STORED ``vis.ms.zip``); slips aim at ``canary``."""
    base = entries_of(valid_zip)
    root = base[0].name.split(b"/")[0] + b"/"
    small = root + b"table.dat"
    sname = small.decode()
    last = base[-1].name.decode()
    target = str(canary / "PWNED").encode()
    deep = b"../" * 40 + target.lstrip(b"/")
    i = _index(base, sname)
    bomb_stream = deflated(300 * MiB)
    cases: dict[str, bytes] = {
        # zip slip: names that would land outside the cache or output folder
        "slip-dotdot": build([*base, Entry(root + deep, b"pwned")]),
        "slip-abs-after-root": build([*base, Entry(root + target, b"pwned")]),
        "slip-absolute": build([*base, Entry(target, b"pwned")]),
        "slip-nul": build([*base, Entry(root + b"a\0b", b"pwned")]),
        "slip-empty-component": build([*base, Entry(root + b"ANTENNA//x", b"pwned")]),
        # names
        "bad-utf8-name": build([*base, Entry(root + b"\xff\xfe", b"x", flags=0x800)]),
        "duplicate-name": build([*base, Entry(small, base[i].data)]),
        # local header against central directory
        "local-name-differs": build(
            _replace(base, sname, local={"name": sname.replace("table", "tablX").encode()})
        ),
        "mis-pointed-member": build(
            _replace(base, sname, central={"lho": 0}) if i else _replace(base, last, central={"lho": 0})
        ),
        "local-size-differs": build(
            _replace(base, sname, local={"size": len(base[i].data) - 1, "csize": len(base[i].data) - 1})
        ),
        "local-crc-differs": build(_replace(base, sname, local={"crc": 0x12345678})),
        "local-method-differs": build(_replace(base, sname, local={"method": 8})),
        # CRCs and sizes
        "bad-crc-small-member": build(_replace(base, sname, crc=zlib.crc32(base[i].data) ^ 1)),
        "stored-size-exceeds-stored-bytes": build(_replace(base, sname, size=len(base[i].data) + 1000)),
        "size-past-central-directory": build(
            _replace(
                base, last, local={"csize": 10**6, "size": 10**6}, central={"csize": 10**6, "size": 10**6}
            )
        ),
        "overlapping-members": _overlap(base, i),
        # ZIP64 oddities
        "zip64-saturated-without-extra": build(_replace(base, sname, central={"size": 0xFFFFFFFF})),
        "zip64-short-extra": build(
            _replace(
                base,
                sname,
                central={"size": 0xFFFFFFFF, "csize": 0xFFFFFFFF},
                central_extra=struct.pack("<HHL", 1, 4, 7),
            )
        ),
        "zip64-truncated-extra": build(
            _replace(
                base, sname, central={"size": 0xFFFFFFFF}, central_extra=struct.pack("<HH", 1, 8) + b"\1\2"
            )
        ),
        "zip64-no-locator": build(base, end={"count": 0xFFFF, "here": 0xFFFF}),
        "zip64-locator-past-end": _zip64_end(base, rec_offset_delta=10**9),
        "zip64-short-record": _zip64_end(base, short_record=True),
        # end record
        "eocd-truncated": build(base)[:-5],
        "eocd-comment-lies": build(base, comment=b"hello", end={"comment_len": 500}),
        "eocd-huge-count": build(base, end={"count": 60000, "here": 60000}),
        "eocd-counts-disagree": build(base, end={"here": 1}),
        "central-directory-past-eof": build(base, end={"cd_size": 10**8}),
        # bombs: a small member that inflates to 300 MiB, claiming 1000 bytes; one claiming 2 GiB
        "bomb-lying-size": build(
            [*base, Entry(root + b"HISTORY/bomb", bomb_stream, method=8, crc=0, size=1000)]
        ),
        "bomb-huge-declared": build(
            [*base, Entry(root + b"HISTORY/bomb", bomb_stream, method=8, crc=0, size=2 * 1024 * MiB)]
        ),
    }
    return cases


def _overlap(base: list[Entry], i: int) -> bytes:
    """Member ``i``'s data holds a whole local header and data that a second central entry points at."""
    first = base[i]
    name = first.name.rsplit(b"/", 1)[0] + b"/evil"
    inner = (
        struct.pack(
            "<4sHHHHHLLLHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, zlib.crc32(b"evil"), 4, 4, len(name), 0
        )
        + name
        + b"evil"
    )
    entries = _replace(base, first.name.decode(), data=first.data + inner)
    raw = build(entries)
    lho = raw.index(inner)
    return build([*entries, Entry(name, b"evil", central={"lho": lho})])
