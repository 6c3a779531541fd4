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


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then sets flag bit 3 and writes data descriptors."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def,override]
        self.buf += b
        return len(b)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_data_descriptor_members_read(method: int) -> None:
    """Local headers with flag bit 3 hold zero CRC and sizes: accepted, the central copy is used."""
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w", method) as zf:
        zf.writestr("SB.ms/table.dat", b"t" * 300)
        zf.writestr("SB.ms/table.f0", bytes(range(256)) * 4)
    tree = ZipTree(BytesSource("dd.zip", bytes(stream.buf), "v1"))
    assert tree.member("SB.ms/table.dat").flags & 0x8
    assert tree.read_member("SB.ms/table.f0") == bytes(range(256)) * 4


def _patch_crc(raw: bytes, name: bytes) -> bytes:
    """``raw`` with the CRC of member ``name`` flipped in both headers (a consistent lie)."""
    out = bytearray(raw)
    for sig, at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        pos = out.find(sig)
        while not out[pos + (30 if sig == b"PK\x03\x04" else 46) :].startswith(name):
            pos = out.find(sig, pos + 1)
        out[pos + at] ^= 0xFF
    return bytes(out)


def test_whole_member_reads_check_the_crc() -> None:
    raw = _patch_crc(_zip({"SB.ms/table.dat": b"t" * 300, "SB.ms/x": b"y" * 10}), b"SB.ms/table.dat")
    tree = ZipTree(BytesSource("crc.zip", raw, "v1"))
    assert tree.read_ranges([("SB.ms/table.dat", 0, 10)]) == [b"t" * 10]  # a range: not checkable
    with pytest.raises(FormatError, match=r"crc\.zip at byte \d+: member 'SB.ms/table.dat': CRC-32"):
        tree.read_member("SB.ms/table.dat")
    with pytest.raises(FormatError, match="CRC-32"):
        tree.source("SB.ms/table.dat").read(0, 300)
    assert tree.read_member("SB.ms/x") == b"y" * 10


def _deflate_zip(data: bytes, declared: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m", data)
    raw = bytearray(buf.getvalue())
    if declared is not None:  # lie about the inflated size in both headers
        for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            pos = raw.find(sig)
            raw[pos + at : pos + at + 4] = declared.to_bytes(4, "little")
    return bytes(raw)


def test_inflation_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import skyplug.core.zip as zipmod

    data = bytes(4 * 1024 * 1024)
    with pytest.warns(match="DEFLATE"):
        assert ZipTree(BytesSource("ok.zip", _deflate_zip(data), "v1")).read_member("m") == data
    lying = ZipTree(BytesSource("lie.zip", _deflate_zip(data, declared=1000), "v1"))
    with pytest.warns(match="DEFLATE"), pytest.raises(FormatError, match="inflates past its declared 1000"):
        lying.read_member("m")
    short = ZipTree(BytesSource("short.zip", _deflate_zip(data, declared=len(data) + 1), "v1"))
    with pytest.warns(match="DEFLATE"), pytest.raises(FormatError, match="ends after"):
        short.read_member("m")
    monkeypatch.setattr(zipmod, "MAX_INFLATE", 1024 * 1024)
    with pytest.warns(match="DEFLATE"), pytest.raises(FormatError, match="more than skyplug inflates"):
        ZipTree(BytesSource("big.zip", _deflate_zip(data), "v1")).read_member("m")


def test_member_and_directory_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    import skyplug.core.zip as zipmod

    raw = _zip({f"m/{i}": b"x" for i in range(20)})
    monkeypatch.setattr(zipmod, "MAX_MEMBERS", 10)
    with pytest.raises(FormatError, match="20 members: more than skyplug accepts"):
        ZipTree(BytesSource("many.zip", raw, "v1"))
    monkeypatch.setattr(zipmod, "MAX_MEMBERS", 100)
    monkeypatch.setattr(zipmod, "MAX_CENTRAL", 100)
    with pytest.raises(FormatError, match=r"central directory of .* more than skyplug accepts"):
        ZipTree(BytesSource("many.zip", raw, "v1"))


def test_encrypted_and_unknown_methods_are_refused() -> None:
    raw = bytearray(_zip({"a": b"1", "b": b"2"}))
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # encryption bit on "a"
        raw[raw.find(sig) + at] |= 1
    tree = ZipTree(BytesSource("enc.zip", bytes(raw), "v1"))
    with pytest.raises(FormatError, match="'a' is encrypted"):
        tree.read_member("a")
    assert tree.read_member("b") == b"2"
