"""Bad input gives a FormatError naming the object, the column and the storage manager."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.errors import FormatError, SkyplugError
from skyplug.core.load import fetch_partition
from skyplug.plugins.formats.ms.tabledat import Reader, parse_table_dat
from skyplug.synthetic.ms import zip_ms
from tests.ms.conftest import assert_equal_columns, reference


@pytest.fixture
def ms_copy(ms_factory, tmp_path: Path):
    def copy(layout: str = "tcsm") -> Path:
        dst = tmp_path / f"{layout}.ms"
        shutil.copytree(ms_factory(layout), dst)
        return dst

    return copy


def rename_manager(table_dat: Path, old: str, new: str) -> None:
    """Rename a data manager in the ColumnSet of ``table.dat``, fixing the Table object length."""
    data = table_dat.read_bytes()
    r = Reader(data)
    r.u32(), r.object_start("Table"), r.u32(), r.u32(), r.string()  # magic, header, nrow, endian, type
    desc_end = r.pos + struct.unpack_from(">I", data, r.pos)[0]
    old_s = struct.pack(">I", len(old)) + old.encode()
    pos = data.index(old_s, desc_end)
    data = data[:pos] + struct.pack(">I", len(new)) + new.encode() + data[pos + len(old_s) :]
    length = struct.unpack_from(">I", data, 4)[0] + len(new) - len(old)
    table_dat.write_bytes(data[:4] + struct.pack(">I", length) + data[8:])


def test_truncated_table_dat(ms_copy) -> None:
    ms = ms_copy()
    path = ms / "table.dat"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(FormatError, match="truncated") as err:
        skyplug.open(str(ms)).index()
    assert str(path) in str(err.value) and err.value.offset is not None


def test_unknown_storage_manager(ms_copy) -> None:
    ms = ms_copy()
    rename_manager(ms / "table.dat", "IncrementalStMan", "LofarStMan")
    assert "LofarStMan" in parse_table_dat((ms / "table.dat").read_bytes()).managers.values()
    with pytest.raises(FormatError) as err:
        skyplug.open(str(ms)).index()
    msg = str(err.value)
    assert str(ms / "table.dat") in msg and "LofarStMan" in msg and "column TIME" not in msg
    assert "column ARRAY_ID is stored by LofarStMan" in msg


def test_missing_tile_file(ms_copy) -> None:
    ms = ms_copy()
    (ms / "table.f3_TSM0").unlink()
    with pytest.raises(FormatError) as err:
        skyplug.open(str(ms)).index()
    msg = str(err.value)
    assert "table.f3_TSM0" in msg and "DATA" in msg and "TiledColumnStMan" in msg and "missing" in msg


@pytest.mark.parametrize(
    "layout,name,manager",
    [
        ("tcsm", "table.f3_TSM0", "TiledColumnStMan"),
        ("twospw", "table.f3_TSM2", "TiledShapeStMan"),
        ("dysco", "table.f3", "DyscoStMan"),
    ],
)
def test_tile_file_shorter_than_layout(ms_copy, layout: str, name: str, manager: str) -> None:
    ms = ms_copy(layout)
    with (ms / name).open("r+b") as fh:
        fh.truncate((ms / name).stat().st_size - 100)
    with pytest.raises(FormatError) as err:
        skyplug.open(str(ms)).index()
    msg = str(err.value)
    assert str(ms / name) in msg and "DATA" in msg and manager in msg and "needs" in msg


def test_tile_file_shrunk_after_indexing_fails_loudly(ms_copy) -> None:
    ms = ms_copy()
    parts = skyplug.open(str(ms)).plan("time", 2)
    with (ms / "table.f3_TSM0").open("r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(skyplug.core.errors.SkyplugError):
        parts[1].load()


def test_zip_with_broken_central_directory(ms_factory, tmp_path: Path) -> None:
    z = zip_ms(ms_factory("tcsm"), tmp_path / "SB226.ms.zip")
    data = bytearray(z.read_bytes())
    cd_offset = struct.unpack_from("<I", data, len(data) - 22 + 16)[0]
    data[cd_offset : cd_offset + 4] = b"XXXX"
    z.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="central directory") as err:
        skyplug.open(str(z)).index()
    assert str(z) in str(err.value)


def test_absent_subtable_is_reported_not_fatal(ms_copy, tmp_path: Path) -> None:
    ms = ms_copy()
    shutil.rmtree(ms / "FIELD")
    ds = skyplug.open(str(ms))
    assert "FIELD" in ds.index()["missing_subtables"]
    assert "s_ra" not in ds.describe()
    p = ds.plan("time", 2)[0]
    got = p.load()
    assert_equal_columns(got, reference(ms, got["ROWID"]))
    assert np.isfinite(got["TIME"]).all()
    out = tmp_path / "out"
    fetch_partition(p, out, as_="ms")
    assert (out / "part-0000.ms" / "table.dat").exists()


def grow_sparse(path: Path, size: int) -> None:
    """Make ``path`` ``size`` bytes long without writing them (a hole)."""
    with path.open("r+b") as fh:
        fh.truncate(size)


@pytest.mark.parametrize("member", ["ANTENNA/table.f0", "table.f0", "table.dat"])
def test_huge_small_file_is_refused_before_reading(ms_copy, monkeypatch, member: str) -> None:
    """A "small" file of 300 MB (a subtable file, an SSM file, table.dat) passes the default
    256 MiB bound: one FormatError naming the object and the member, nothing read whole."""
    from skyplug.plugins.locators.local import LocalSource

    ms = ms_copy()
    grow_sparse(ms / member, 300 * 1024 * 1024)
    read: list[int] = []
    original = LocalSource._fetch

    def counted(self: LocalSource, start: int, end: int, version: str) -> bytes:
        read.append(end - start)
        return original(self, start, end, version)

    monkeypatch.setattr(LocalSource, "_fetch", counted)
    with pytest.raises(FormatError) as err:
        skyplug.open(str(ms)).index()
    msg = str(err.value)
    assert str(ms) in msg and f"member {member} " in msg and "max_small_bytes" in msg
    assert sum(read) < 1024 * 1024


def test_small_file_limit_is_configurable(ms_copy, ms_factory) -> None:
    from skyplug.core import config

    ms = ms_copy()
    small = skyplug.open(str(ms)).index()["small_bytes"]
    config.set_config(config.Config.from_dict({"formats": {"ms": {"max_small_bytes": small // 2}}}))
    with pytest.raises(FormatError, match=r"over the limit of \d+ \(\[formats.ms\] max_small_bytes"):
        skyplug.open(str(ms)).index(refresh=True)
    config.set_config(config.Config.from_dict({"formats": {"ms": {"max_small_bytes": "lots"}}}))
    with pytest.raises(skyplug.core.errors.ConfigError, match="max_small_bytes"):
        skyplug.open(str(ms)).index(refresh=True)
    config.set_config(config.Config.from_dict({"formats": {"ms": {"max_small_bytes": small}}}))
    assert skyplug.open(str(ms)).index(refresh=True)["small_bytes"] == small


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize("manager", ["LofarStMan", "AdiosStMan", "SiscoStMan"])
def test_undecoded_storage_manager_is_one_line(ms_copy, tmp_path: Path, manager: str, zipped: bool) -> None:
    """A storage manager skyplug does not decode (LOFAR raw data, ADIOS2, Sisco-compressed DATA):
    the CLI prints one line naming the object, the column and the manager, and exits non-zero."""
    import re

    from click.testing import CliRunner

    from skyplug.cli import cli

    ms = ms_copy()
    rename_manager(ms / "table.dat", "TiledColumnStMan", manager)
    uri = str(zip_ms(ms, tmp_path / "SB.ms.zip") if zipped else ms)
    for args in (
        ["index", uri],
        ["fetch", uri, "--by", "time", "-n", "3", "--as", "ms", "--out", str(tmp_path / "out")],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        found = re.search(rf"column (\w+) is stored by {manager}, which skyplug cannot read", lines[0])
        assert found and found.group(1) in {"UVW", "DATA", "FLAG", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA"}
        assert uri in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cold_worker_checks_the_small_file_limit(ms_factory, monkeypatch, tmp_path: Path) -> None:
    """A worker with an empty cache reads the small files whole too: the same bound holds there."""
    from skyplug.core import config

    uri = str(ms_factory("tcsm", zip="stored"))
    p = skyplug.open(uri).plan("time", 2)[0]
    monkeypatch.setenv("SKYPLUG_CACHE_DIR", str(tmp_path / "worker-cache"))
    config.set_config(config.Config.from_dict({"formats": {"ms": {"max_small_bytes": 1000}}}))
    with pytest.raises(FormatError, match=r"member \S+ \(\d+ bytes\).*max_small_bytes") as err:
        p.load()
    assert uri in str(err.value)


@pytest.mark.parametrize("how", ["missing", "a folder"])
def test_missing_main_table_dat_never_indexes_a_subtable(ms_copy, tmp_path: Path, how: str) -> None:
    """Without the main table.dat, the shallowest subtable (ANTENNA/) must not pass for the MS."""
    ms = ms_copy()
    (ms / "table.dat").unlink()
    if how == "a folder":
        (ms / "table.dat").mkdir()
    with pytest.raises(FormatError, match=r"table\.dat is missing") as info:
        skyplug.open(str(ms)).index()
    assert str(ms) in str(info.value)
    zipped = zip_ms(ms, tmp_path / "vis.ms.zip")  # not sniffed as an MS at all: also one clear line
    with pytest.raises(SkyplugError, match=r"table\.dat is missing|no format plugin recognises"):
        skyplug.open(str(zipped)).index()
