"""Bytes: the index reads only small files; a partition fetches exactly its planned ranges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import skyplug
from skyplug.core import config
from skyplug.core.dataset import bytes_read, open_target
from skyplug.core.load import fetch_partition, load_partition
from skyplug.core.source import Source
from skyplug.core.zip import ZipTree
from skyplug.plugins.formats.ms.load import LOAD_SUBTABLES
from skyplug.plugins.formats.ms.plan import requests
from skyplug.plugins.locators.local import LocalSource
from skyplug.synthetic.ms import make_ms, zip_ms


@pytest.fixture
def fetch_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every local read as (file, start, end); coalescing off so reads are exactly the plan."""
    log: list[tuple[str, int, int]] = []
    original = LocalSource._fetch

    def logged(self: LocalSource, start: int, end: int, version: str) -> bytes:
        log.append((str(self.path), start, end))
        return original(self, start, end, version)

    monkeypatch.setattr(LocalSource, "_fetch", logged)
    monkeypatch.setattr(Source, "max_gap", 0)
    return log


def bulk_spans(uri: str) -> dict[str, tuple[str, int, int]]:
    """Bulk members (tiles, Dysco blocks) -> (file, first byte, end) where their bytes lie."""
    ds = skyplug.open(uri)
    index, target = ds.index(), ds.target
    out = {}
    for name in index["big"]:
        member = index["root"] + name
        if isinstance(target, ZipTree):
            m = target.member(member)
            out[member] = (target.zip.uri, m.data_offset, m.data_offset + m.compressed_size)
        else:
            out[member] = (str(Path(uri) / member), 0, target.members()[member])
    return out


def tile_bytes_read(
    log: list[tuple[str, int, int]], spans: dict[str, tuple[str, int, int]], allowed: int = 0
) -> int:
    """Bytes read inside bulk members, beyond the first ``allowed`` bytes (a Dysco header)."""
    total = 0
    for path, s, e in log:
        for fpath, fs, fe in spans.values():
            if path == fpath:
                lo, hi = max(s, fs + allowed), min(e, fe)
                total += max(0, hi - lo)
    return total


@pytest.mark.parametrize("zipped", [None, "stored"])
@pytest.mark.parametrize("layout", ["tcsm", "tssm", "dysco", "twospw"])
def test_index_reads_no_tile_data(ms_factory, fetch_log, layout: str, zipped: str | None) -> None:
    uri = str(ms_factory(layout, zip=zipped))
    spans = bulk_spans(uri)
    ds = skyplug.open(uri)
    assert ds.target is not None  # the zip's own structure is read here, by the container
    fetch_log.clear()
    index = ds.index(refresh=True)
    dysco_head = 4096 if layout == "dysco" else 0
    assert tile_bytes_read(fetch_log, spans, allowed=dysco_head) == 0
    assert ds.index_stats["bytes_read"] == index["small_bytes"] + dysco_head


@pytest.mark.parametrize("layout", ["tcsm", "chansplit", "tssm", "dysco", "twospw", "unsorted"])
def test_partition_fetches_exactly_its_ranges(ms_factory, fetch_log, layout: str) -> None:
    plain = skyplug.open(str(ms_factory(layout)))
    zipped = skyplug.open(str(ms_factory(layout, zip="stored")))
    for by, n in [("time", 4), ("chan", 3), ("rows", 2)]:
        for p, q in zip(plain.plan(by, n), zipped.plan(by, n), strict=True):
            assert p.expected_bytes == q.expected_bytes > 0
            target = open_target(p.uri, version=p.version)
            load_partition(p, target=target)
            assert bytes_read(target) == p.expected_bytes
            ztarget = open_target(q.uri, version=q.version)
            structure = bytes_read(ztarget)  # the zip's central directory and local headers
            load_partition(q, target=ztarget)
            assert bytes_read(ztarget) - structure == p.expected_bytes


def test_channel_blocks_fetch_only_their_tiles(ms_factory, fetch_log) -> None:
    ds = skyplug.open(str(ms_factory("chansplit")))
    whole = ds.plan("rows", 1)[0].expected_bytes
    blocks = ds.plan("chan", 4)
    assert all(p.expected_bytes < whole / 2 for p in blocks)
    assert len(blocks[0].to_json()) < 2048


def test_cold_worker_fetches_small_files_once(ms_factory, monkeypatch, tmp_path: Path) -> None:
    uri = str(ms_factory("tcsm"))
    parts = skyplug.open(uri).plan("time", 3)
    monkeypatch.setenv("SKYPLUG_CACHE_DIR", str(tmp_path / "worker-cache"))
    config.set_config(config.Config.from_dict({}))
    target = open_target(uri, version=parts[0].version)
    load_partition(parts[0], target=target)
    # the main table's small files and the subtables the arrays come from, not every subtable
    ms, big = Path(uri), set(parts[0].meta["big"])
    wanted = tuple(f"{s}/" for s in LOAD_SUBTABLES)
    needed = sum(
        f.stat().st_size
        for f in ms.rglob("*")
        if f.is_file()
        and (rel := f.relative_to(ms).as_posix()) not in big
        and ("/" not in rel or rel.startswith(wanted))
    )
    assert needed < parts[0].meta["small_bytes"]
    assert bytes_read(target) == parts[0].expected_bytes + needed
    target = open_target(uri, version=parts[1].version)
    load_partition(parts[1], target=target)
    assert bytes_read(target) == parts[1].expected_bytes


@pytest.fixture(scope="module")
def dp3_like(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str | None], Path]:
    """A DP3-like 64-channel MS (24 antennas, tiles of 512 rows), plain or zipped."""
    ms = make_ms(
        tmp_path_factory.mktemp("dp3") / "SB226.ms", "tcsm", nant=24, ntime=40, nchan=64, tile_rows=512
    )

    def get(zipped: str | None) -> Path:
        return ms if zipped is None else zip_ms(ms, ms.with_suffix(".ms.zip"))

    return get


@pytest.mark.parametrize("zipped", [None, "stored"])
def test_index_reads_under_two_percent_of_dp3_like(dp3_like, fetch_log, zipped: str | None) -> None:
    ds = skyplug.open(str(dp3_like(zipped)))
    index = ds.index()
    assert index["ms_bytes"] > 30e6
    assert ds.index_stats["bytes_read"] < 0.02 * index["ms_bytes"]
    p = ds.plan("time", 8)[3]
    payload = p.selection["nrows"] * 64 * 4 * (8 + 4 + 1 / 8) + 24 * p.selection["nrows"]
    assert p.expected_bytes < 1.5 * payload
    assert len(p.ranges) == len(index["big"])  # one range per tiled column


@pytest.mark.parametrize("by", ["time", "chan"])
@pytest.mark.parametrize("layout", ["tcsm", "casa", "ssm", "chansplit"])
def test_as_ms_from_zip_fetches_only_its_tiles(
    ms_factory, monkeypatch, tmp_path: Path, layout: str, by: str
) -> None:
    """Coalescing on (the default): a zip's members lie side by side, so one request across
    members would read the small files and other tiles between them again for every partition.
    A channel block reads only its channels' tiles (``chansplit`` splits channels over tiles)."""
    log: list[tuple[int, int]] = []
    original = LocalSource._fetch

    def logged(self: LocalSource, start: int, end: int, version: str) -> bytes:
        log.append((start, end))
        return original(self, start, end, version)

    monkeypatch.setattr(LocalSource, "_fetch", logged)
    parts = skyplug.open(str(ms_factory(layout, zip="stored"))).plan(by, 3)
    for p in parts:
        log.clear()
        report = fetch_partition(p, tmp_path, as_="ms")
        assert report["bytes_fetched"] == sum(e - s for s, e in log) == p.expected_bytes
        assert len(log) <= len(requests(p))  # no more requests than planned ranges


@pytest.mark.parametrize("layout", ["chansplit", "casa", "dysco"])
def test_partition_cli_shows_real_ranges(ms_factory, fetch_log, layout: str) -> None:
    """``skyplug partition`` prints each plan's real range count and bytes along every axis,
    also when the ranges travel as strided groups."""
    import re

    from click.testing import CliRunner

    from skyplug.cli import cli

    uri = str(ms_factory(layout))  # no coalescing (fetch_log): a channel block has a range per row tile
    strided = 0
    for by in ("time", "rows", "spw", "chan"):
        parts = skyplug.open(uri).plan(by, 4)
        result = CliRunner().invoke(cli, ["partition", uri, "--by", by, "-n", "4"])
        assert result.exit_code == 0, result.output
        shown = re.findall(r"(\d+) ranges  (\d+) bytes", result.output)
        assert len(shown) == len(parts)
        for p, (count, nbytes) in zip(parts, shown, strict=True):
            assert int(count) == len(requests(p)) > 0
            assert int(nbytes) == p.expected_bytes == sum(e - s for _, s, e in requests(p)) > 0
            strided += not p.ranges
    if layout == "chansplit":
        assert strided  # some plans keep their ranges in meta: counted all the same
