"""Hostile zips (tests/hostile.py) through ``skyplug index``, ``skyplug fetch --as ms`` and the API.

Each must fail with one line naming the zip (and the byte offset), exit 1, no traceback, write
nothing outside the test's folders (a canary folder and the whole pytest temp tree are checked)
and leave nothing in ``--out``; bombs stay within bounded memory. Zip slip through S3 keys and
crafted partition descriptors is refused too; valid zips keep working, ``verify=True`` included.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("casacore.tables")

import skyplug
from skyplug.core.errors import FormatError
from skyplug.core.paths import safe_join
from skyplug.plugins.formats.ms import mirror
from tests.hostile import build, corpus, entries_of
from tests.test_bad_input import assert_error, run

CASES = [
    "slip-dotdot",
    "slip-abs-after-root",
    "slip-absolute",
    "slip-nul",
    "slip-empty-component",
    "bad-utf8-name",
    "duplicate-name",
    "local-name-differs",
    "mis-pointed-member",
    "local-size-differs",
    "local-crc-differs",
    "local-method-differs",
    "bad-crc-small-member",
    "stored-size-exceeds-stored-bytes",
    "size-past-central-directory",
    "overlapping-members",
    "zip64-saturated-without-extra",
    "zip64-short-extra",
    "zip64-truncated-extra",
    "zip64-no-locator",
    "zip64-locator-past-end",
    "zip64-short-record",
    "eocd-truncated",
    "eocd-comment-lies",
    "eocd-huge-count",
    "eocd-counts-disagree",
    "central-directory-past-eof",
    "bomb-lying-size",
    "bomb-huge-declared",
]

# refused by the MS plugin's own limit on small files ([formats.ms] max_small_bytes) before the zip
# layer inflates anything: no byte offset applies (tests/test_zip.py checks the zip layer's cap)
NO_OFFSET = {"bomb-huge-declared"}


@pytest.fixture(scope="module")
def valid_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skyplug.synthetic.ms import make_ms, zip_ms

    root = tmp_path_factory.mktemp("valid-zip")
    return zip_ms(make_ms(root / "vis.ms", nant=4, ntime=6, nchan=8), root / "vis.ms.zip", "stored")


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every slip name aims: must stay empty."""
    return tmp_path_factory.mktemp("canary")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, valid_zip: Path, canary: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    out = {}
    for name, raw in corpus(valid_zip, canary).items():
        (root / f"{name}.ms.zip").write_bytes(raw)
        out[name] = root / f"{name}.ms.zip"
    assert set(out) == set(CASES)
    return out


@pytest.fixture(autouse=True)
def private_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tempfile`` writes to a private folder, checked to hold no ``skyplug-*`` folder afterwards."""
    tmp = tmp_path_factory.mktemp("tempdir")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    yield tmp
    assert not list(tmp.glob("skyplug-*")), f"temp folders left behind: {list(tmp.iterdir())}"


def _tree(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES)
def test_cli_refuses_hostile_zip(
    case: str,
    hostile: dict[str, Path],
    canary: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path, out = hostile[case], tmp_path / "out"
    base = tmp_path_factory.getbasetemp()
    before = _tree(base)
    line = assert_error(run("index", path), str(path))
    assert "at byte" in line or case in NO_OFFSET, line
    line = assert_error(
        run("fetch", path, "--by", "time", "-n", "2", "--as", "ms", "--out", out, "--no-progress"), str(path)
    )
    assert "at byte" in line or case in NO_OFFSET, line
    assert not out.exists() or not list(out.iterdir())
    assert not list(canary.iterdir())
    assert _tree(base) - before <= {str(out)}, sorted(_tree(base) - before)


@pytest.mark.parametrize("case", CASES)
def test_api_refuses_hostile_zip(case: str, hostile: dict[str, Path], canary: Path) -> None:
    path = hostile[case]
    with pytest.raises(FormatError) as info:
        skyplug.open(str(path)).index()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert info.value.offset is not None or case in NO_OFFSET
    assert not list(canary.iterdir())


def _cli_rss(*args: str | os.PathLike[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """The CLI in a fresh process; (result, its peak RSS in KiB from ``resource.getrusage``)."""
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "skyplug.cli", *map(os.fspath, args)]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    lines = proc.stdout.splitlines()
    rss = int(lines[-1])
    return subprocess.CompletedProcess(proc.args, proc.returncode, "\n".join(lines[:-1]), proc.stderr), rss


@pytest.mark.parametrize("case", ["bomb-lying-size", "bomb-huge-declared"])
def test_bombs_stay_in_bounded_memory(
    case: str, hostile: dict[str, Path], valid_zip: Path, tmp_path: Path
) -> None:
    """A 300 MiB inflation hidden in a ~300 KB member costs no more memory than a valid index."""
    ok, valid_rss = _cli_rss("index", valid_zip, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    result, rss = _cli_rss("index", hostile[case], cwd=tmp_path)
    assert_error(result, str(hostile[case]))
    assert hostile[case].stat().st_size < 2 * 1024 * 1024
    assert rss < valid_rss + 64 * 1024, (rss, valid_rss)


def test_slip_through_cli_subprocess(hostile: dict[str, Path], canary: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, _ = _cli_rss(
        "fetch", hostile["slip-dotdot"], "--by", "time", "-n", "2", "--as", "ms", "--out", out, cwd=tmp_path
    )
    assert_error(result, str(hostile["slip-dotdot"]))
    assert not list(canary.iterdir()) and not (out.exists() and list(out.iterdir()))


# --- names that become local paths outside zips: S3 keys, partition descriptors -------------------------


@pytest.mark.parametrize("bad", ["../../PWNED", "/{canary}/PWNED", "ANTENNA/../../../PWNED"])
def test_s3_keys_cannot_slip(bad: str, s3env, valid_zip: Path, canary: Path, tmp_path: Path) -> None:
    key = "vis.ms/" + bad.format(canary=str(canary).lstrip("/"))
    folder = tmp_path / "vis.ms"
    import zipfile

    zipfile.ZipFile(valid_zip).extractall(tmp_path)
    uri = s3env.upload(folder, "vis.ms")
    s3env.client().put_object(Bucket=s3env.bucket, Key=key, Body=b"pwned")
    with pytest.raises(FormatError, match="refusing to write") as info:
        skyplug.open(uri).index()
    assert uri in str(info.value) and repr(key[len("vis.ms/") :]) in str(info.value)
    assert not list(canary.iterdir())
    assert not (tmp_path.parent / "PWNED").exists()


@pytest.mark.parametrize("big", [{"../../PWNED": 10}, {"{canary}/PWNED": 10}, {"ANTENNA/table.f0": 10}])
def test_crafted_partition_meta_cannot_slip(big: dict[str, int], valid_zip: Path, canary: Path) -> None:
    from skyplug.core.load import load_partition

    part = skyplug.open(str(valid_zip)).plan("time", 2)[0]
    big = {k.format(canary=canary): v for k, v in big.items()}
    crafted = dataclasses.replace(part, meta={**part.meta, "big": big})
    with pytest.raises(FormatError, match="plain file of the main table") as info:
        load_partition(crafted)
    assert str(valid_zip) in str(info.value)
    assert not list(canary.iterdir())


def test_crafted_partition_container_is_checked(valid_zip: Path) -> None:
    from skyplug.core.load import load_partition

    part = skyplug.open(str(valid_zip)).plan("time", 2)[0]
    name = next(iter(part.container["zip"]))
    packed = {**part.container["zip"], name: [0, 10**12, 5, 5, 0]}
    crafted = dataclasses.replace(part, container={**part.container, "zip": packed})
    with pytest.raises(FormatError, match="not a member of this zip"):
        load_partition(crafted)


@pytest.mark.parametrize("shift", ["member", "past_end", "negative"])
def test_crafted_partition_ranges_are_checked(shift: str, valid_zip: Path) -> None:
    """Ranges naming no bulk file, or lying past one, are a FormatError, never a KeyError."""
    from skyplug.core.load import load_partition

    part = skyplug.open(str(valid_zip)).plan("time", 2)[0]
    member, start, end = part.ranges[0]
    size = part.meta["big"][member[len(part.meta["root"]) :]]
    bad = {
        "member": (part.meta["root"] + "table.f99_TSM0", start, end),
        "past_end": (member, start, size + 10),
        "negative": (member, -8, end),
    }[shift]
    crafted = dataclasses.replace(part, ranges=(bad, *part.ranges[1:]))
    with pytest.raises(FormatError, match="lies outside its bulk files") as info:
        load_partition(crafted)
    assert str(valid_zip) in str(info.value)
    with pytest.raises(FormatError, match="lies outside its bulk files"):
        crafted.write(valid_zip.parent / "out", "ms")
    assert not (valid_zip.parent / "out").exists()


def test_store_refuses_before_writing(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "v1"
    with pytest.raises(FormatError, match=r"s3://b/vis\.ms.*'\.\./x'"):
        mirror.store(
            dest, "vis.ms/", {"vis.ms/table.dat": b"t", "vis.ms/../x": b"pwned"}, {}, obj="s3://b/vis.ms"
        )
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*"))
    assert not (tmp_path / "cache" / "x").exists()


def test_safe_join_refuses_symlink_escapes(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "ANTENNA").symlink_to(outside, target_is_directory=True)
    assert safe_join(root, "SPECTRAL_WINDOW/table.dat", "obj") == root / "SPECTRAL_WINDOW/table.dat"
    with pytest.raises(FormatError, match="symlink"):
        safe_join(root, "ANTENNA/table.f0", "obj")
    for bad in ("", "/etc/x", "a/../b", "a//b", "./a", "a\0b"):
        with pytest.raises(FormatError, match="refusing"):
            safe_join(root, bad, "obj")


# --- valid zips keep working; verify=True ------------------------------------------------------------


def test_valid_zip_still_indexes_and_fetches(valid_zip: Path, tmp_path: Path) -> None:
    from casacore import tables

    assert run("index", valid_zip).exit_code == 0
    result = run(
        "fetch", valid_zip, "--by", "time", "-n", "2", "--as", "ms", "--out", tmp_path / "o", "--no-progress"
    )
    assert result.exit_code == 0, result.stderr
    with tables.table(str(tmp_path / "o" / "part-0000.ms"), ack=False) as tab:
        assert tab.nrows() > 0


def _tile_member(path: Path) -> str:
    return next(e.name.decode() for e in entries_of(path) if b"_TSM" in e.name and len(e.data) > 1000)


def _flipped_tile(valid_zip: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the zip whose tile member has its last byte flipped (its recorded CRC kept)."""
    tile = _tile_member(valid_zip)
    bad = tmp_path / "flipped.ms.zip"
    flipped = [
        dataclasses.replace(e, data=e.data[:-1] + bytes([e.data[-1] ^ 0xFF]), crc=zlib.crc32(e.data))
        if e.name.decode() == tile
        else e
        for e in entries_of(valid_zip)
    ]
    bad.write_bytes(build(flipped))
    return bad, tile


def test_verify_checks_ranged_members_once(valid_zip: Path, tmp_path: Path) -> None:
    """A flipped tile byte is not seen by ranged reads (documented), but is with verify=True."""
    from skyplug.core.load import load_partition

    bad, tile = _flipped_tile(valid_zip, tmp_path)
    parts = skyplug.open(str(bad)).plan("time", 2)
    load_partition(parts[0])  # ranged reads: not verified
    with pytest.raises(FormatError, match=r"CRC-32.*verify=True") as info:
        ds = skyplug.open(str(bad), verify=True)
        load_partition(ds.plan("time", 2)[0])
    assert str(bad) in str(info.value) and tile in str(info.value)

    import skyplug.core.zip as zipmod
    from skyplug.core.load import _partition_target

    good = skyplug.open(str(valid_zip), verify=True)
    first = good.plan("time", 2)[0]
    assert first.container.get("verify") is True
    cold = _partition_target(first)
    load_partition(first, target=cold)  # reads each tile member whole once
    zipmod._verified.clear()  # a new process: only the marker in the cache folder remains
    warm = _partition_target(first)
    load_partition(first, target=warm)
    assert warm.bytes_read == first.expected_bytes < cold.bytes_read, (warm.bytes_read, cold.bytes_read)


def test_cli_verify_flag(valid_zip: Path, tmp_path: Path) -> None:
    """``skyplug fetch --verify`` refuses a zip whose tile member fails its CRC; without it, the
    ranged read goes through (what docs/security.md says is not verified by default)."""
    from click.testing import CliRunner

    from skyplug.cli import cli

    bad, tile = _flipped_tile(valid_zip, tmp_path)
    args = ["fetch", str(bad), "--by", "time", "-n", "2", "--only", "0", "--no-progress"]
    plain = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    checked = CliRunner().invoke(cli, [*args, "--verify", "--out", str(tmp_path / "checked")])
    assert checked.exit_code != 0 and "CRC-32" in checked.output and tile in checked.output
    assert not (tmp_path / "checked").exists()
