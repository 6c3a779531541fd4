"""The zip container: EOCD, central directory, ZIP64, local headers, broken archives."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from skyplug.core.errors import FormatError, NotFound
from skyplug.core.source import BytesSource
from skyplug.core.zip import STORED, ZipTree, read_central_directory


def _zip(members: dict[str, bytes]) -> bytes:
    """A STORED zip; names starting with ``big`` get ZIP64 extras, ones ending in 1 a local extra."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.extra = b"\xfe\xca\x04\x00abcd" if name.endswith("1") else b""
            with zf.open(info, "w", force_zip64=name.startswith("big")) as fh:
                fh.write(data)
        zf.comment = b"skyplug test"
    return buf.getvalue()


def test_members_and_offsets_match_zipfile() -> None:
    members = {f"SB.ms/f{i}": bytes([i]) * (100 * i + 1) for i in range(5)}
    raw = _zip(members)
    listed = {m.name: m for m in read_central_directory(BytesSource("mem.zip", raw, "v1"))}
    for name, data in members.items():
        m = listed[name]
        assert m.method == STORED and m.size == len(data)
        assert raw[m.data_offset : m.data_offset + m.size] == data


def test_zip64_members() -> None:
    members = {"big/a": b"A" * 1000, "big/b": b"B" * 10}
    raw = _zip(members)
    tree = ZipTree(BytesSource("z64.zip", raw, "v1"))
    assert tree.members() == {"big/a": 1000, "big/b": 10}
    assert tree.read_ranges([("big/a", 990, 1000), ("big/b", 0, 10)]) == [b"A" * 10, b"B" * 10]


def test_zip64_end_record(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(70000):  # more than 0xFFFF entries forces the ZIP64 end record
            zf.writestr(f"m/{i}", b"")
        zf.writestr("m/last", b"end")
    tree = ZipTree(BytesSource("many.zip", path.read_bytes(), "v1"))
    assert len(tree.members()) == 70001
    assert tree.read_member("m/last") == b"end"


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda raw: raw[:-30], "no end-of-central-directory"),
        (lambda raw: raw[:10], "not a zip"),
        (lambda raw: raw.replace(b"PK\x01\x02", b"PK\x01\x09", 1), "broken central directory"),
        (lambda raw: raw.replace(b"PK\x03\x04", b"XX\x03\x04", 1), "bad local header"),
        (lambda raw: b"\0" * 100, "no end-of-central-directory"),
    ],
)
def test_broken_archives_raise_format_error(mutate, match: str) -> None:
    raw = mutate(_zip({"SB.ms/table.dat": b"x" * 300, "SB.ms/table.f0": b"y" * 30}))
    with pytest.raises(FormatError, match=match) as info:
        ZipTree(BytesSource("s3://b/SB.ms.zip", raw, "v1"))
    assert "s3://b/SB.ms.zip" in str(info.value)


def test_truncated_member_data_names_the_member() -> None:
    raw = _zip({"SB.ms/table.f2_TSM0": b"z" * 5000})
    cd_at = raw.rfind(b"PK\x01\x02")
    # claim a bigger member in the central directory than the zip holds
    patched = bytearray(raw)
    patched[cd_at + 20 : cd_at + 28] = (10**6).to_bytes(4, "little") * 2
    with pytest.raises(FormatError, match=r"table\.f2_TSM0.*past the end"):
        ZipTree(BytesSource("SB.ms.zip", bytes(patched), "v1"))


def test_missing_member_is_not_found() -> None:
    tree = ZipTree(BytesSource("a.zip", _zip({"a": b"1"}), "v1"))
    with pytest.raises(NotFound, match="no member 'b'"):
        tree.source("b")


def test_packed_members_spare_the_central_directory(tmp_path: Path) -> None:
    """A worker given a partition's members reads only its ranges, yet can still ask for others."""
    from skyplug.plugins.locators.local import LocalSource

    path = tmp_path / "SB.ms.zip"
    path.write_bytes(_zip({"SB.ms/table.dat": b"t" * 300, "SB.ms/table.f2_TSM0": bytes(range(256)) * 40}))
    packed = ZipTree(LocalSource(path)).packed(["SB.ms/table.f2_TSM0"])
    worker = ZipTree.from_packed(LocalSource(path), packed)
    assert worker.read_ranges([("SB.ms/table.f2_TSM0", 256, 260)]) == [bytes(range(4))]
    assert worker.zip.stats.requests == 1 and worker.zip.stats.bytes == 4
    assert worker.read_member("SB.ms/table.dat") == b"t" * 300  # reads the directory on demand
    assert set(worker.members()) == {"SB.ms/table.dat", "SB.ms/table.f2_TSM0"}
