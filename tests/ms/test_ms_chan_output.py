"""``--as ms`` of channel blocks: a standalone MS holding exactly the block's channels.

Every column equals python-casacore's ``getcolslice`` of the source, row by row and bit for bit
(undefined cells stay undefined), every subtable equals the source's but SPECTRAL_WINDOW, whose
window is cut to the block; the bytes fetched are the plan's; WSClean and AOFlagger use one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

import skyplug
from skyplug.core.load import fetch_partition
from skyplug.plugins.formats.ms import mirror
from skyplug.plugins.formats.ms.chanms import PER_CHANNEL
from skyplug.plugins.formats.ms.mirror import subtable_problems
from skyplug.synthetic.ms import LAYOUTS
from tests.consumers import aoflagger, wsclean
from tests.ms.conftest import all_rows, assert_equal_columns, reference


def cells(path: Path) -> dict[str, list[object]]:
    """Every cell of a table, column -> per-row value (None where undefined), arrays as raw bytes."""
    from casacore import tables

    out: dict[str, list[object]] = {}
    with tables.table(str(path), ack=False) as tab:
        for col in tab.colnames():
            values: list[object] = []
            for r in range(tab.nrows()):
                if not tab.iscelldefined(col, r):
                    values.append(None)
                    continue
                v = tab.getcell(col, r)
                values.append((v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v)
            out[col] = values
    return out


def cut_window(spw: dict[str, list[object]], row: int, chan: list[int]) -> dict[str, list[object]]:
    """The source's SPECTRAL_WINDOW cells with window ``row`` cut to ``chan`` (DP3's rules:
    REF_FREQUENCY kept, TOTAL_BANDWIDTH the sum of the block's EFFECTIVE_BW)."""
    want = {k: list(v) for k, v in spw.items()}
    for col in PER_CHANNEL:
        if col in want and want[col][row] is not None:
            dtype, _, raw = want[col][row]
            value = np.frombuffer(raw, np.dtype(dtype))[chan[0] : chan[1]]
            want[col][row] = (value.dtype.str, value.shape, value.tobytes())
    want["NUM_CHAN"][row] = chan[1] - chan[0]
    dtype, _, raw = want["EFFECTIVE_BW"][row]
    want["TOTAL_BANDWIDTH"][row] = float(np.sum(np.frombuffer(raw, np.dtype(dtype))))
    return want


def assert_chan_block(out: Path, ms: Path, rows: np.ndarray, chan: list[int]) -> None:
    """Row i of ``out`` is row ``rows[i]`` of ``ms`` cut to ``chan``; subtables as the source's but
    the block's spectral window."""
    from casacore import tables

    with tables.table(str(out), ack=False) as tab:
        assert tab.nrows() == len(rows)
        ddids = np.unique(tab.getcol("DATA_DESC_ID"))
        subs = [
            k
            for k in tab.keywordnames()
            if isinstance(tab.getkeyword(k), str) and tab.getkeyword(k).startswith("Table:")
        ]
    assert len(ddids) == 1  # a channel block holds one window's rows
    assert_equal_columns(reference(out, np.arange(len(rows))), reference(ms, rows, chan))
    bad = subtable_problems(ms)
    assert subs
    for name in subs:
        if name in bad:
            continue
        got, want = cells(out / name), cells(ms / name)
        if name == "SPECTRAL_WINDOW":
            with tables.table(str(ms / "DATA_DESCRIPTION"), ack=False) as dd:
                window = int(dd.getcell("SPECTRAL_WINDOW_ID", int(ddids[0])))
            want = cut_window(want, window, chan)
        assert got == want, name


@pytest.mark.parametrize("zipped", [None, "stored"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_chan_blocks_as_ms_are_exact(ms_factory, tmp_path: Path, layout: str, zipped: str | None) -> None:
    ms = ms_factory(layout)
    parts = skyplug.open(str(ms_factory(layout, zip=zipped))).plan("chan", 3)
    assert parts
    for p in parts:
        report = fetch_partition(p, tmp_path, as_="ms")
        assert report["bytes_fetched"] == p.expected_bytes
        out = Path(report["outputs"][0])
        assert out.name == f"part-{p.index:04d}.ms"
        assert_chan_block(out, ms, all_rows(p.load()), p.selection["chan"])
    assert sorted(x.name for x in tmp_path.iterdir()) == [f"part-{p.index:04d}.ms" for p in parts]


@pytest.mark.parametrize("layout", ["chansplit", "tssm", "dysco", "casa"])
def test_chan_blocks_never_read_unfetched_bytes(
    ms_factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout: str
) -> None:
    """Every bulk byte the plan does not fetch is 0xFF in the mirror (not a hole reading as zeros):
    the written blocks still equal the source, so nothing outside the block's tiles reaches them."""
    original = mirror.sparse_mirror

    @contextlib.contextmanager
    def poisoned(
        small: Path, sizes: dict[str, int], pieces: Sequence[tuple[str, int, bytes]]
    ) -> Iterator[Path]:
        with original(small, sizes, pieces) as ms:
            for name, size in sizes.items():
                buf = bytearray(b"\xff") * size
                for n, offset, data in pieces:
                    if n == name:
                        buf[offset : offset + len(data)] = data
                (ms / name).write_bytes(buf)
            yield ms

    monkeypatch.setattr(mirror, "sparse_mirror", poisoned)
    ms = ms_factory(layout)
    for p in skyplug.open(str(ms)).plan("chan", 3):
        out = Path(fetch_partition(p, tmp_path, as_="ms")["outputs"][0])
        assert_chan_block(out, ms, all_rows(p.load()), p.selection["chan"])


def test_chan_block_tiles_fit_the_block(ms_factory, tmp_path: Path) -> None:
    """Tiled columns stay tiled, with tiles no wider than the block (Dysco is written tiled)."""
    from casacore import tables

    for layout in ("tcsm", "dysco"):
        p = skyplug.open(str(ms_factory(layout))).plan("chan", 4)[1]
        out = Path(fetch_partition(p, tmp_path / layout, as_="ms")["outputs"][0])
        width = p.selection["chan"][1] - p.selection["chan"][0]
        with tables.table(str(out), ack=False) as tab:
            info = {c: v for v in tab.getdminfo().values() for c in v["COLUMNS"]}
            assert tab.getcell("DATA", 0).shape[0] == width
        assert info["DATA"]["TYPE"] == "TiledColumnStMan"
        assert int(info["DATA"]["SPEC"]["DEFAULTTILESHAPE"][1]) <= width


@pytest.fixture
def chan_block_ms(ms_factory, tmp_path: Path) -> Path:
    p = skyplug.open(str(ms_factory("tcsm", zip="stored"))).plan("chan", 2)[1]
    return Path(fetch_partition(p, tmp_path / "out", as_="ms")["outputs"][0])


@pytest.mark.consumers
def test_wsclean_images_a_chan_block(chan_block_ms: Path, tmp_path: Path) -> None:
    name = tmp_path / "img"
    wsclean(chan_block_ms, name, 128, "2amin")
    image = Path(f"{name}-image.fits")
    assert image.exists() and image.stat().st_size > 128 * 128 * 4


@pytest.mark.consumers
def test_aoflagger_flags_a_chan_block(chan_block_ms: Path) -> None:
    from casacore import tables

    with tables.table(str(chan_block_ms), ack=False) as tab:
        before = tab.getcol("FLAG")
    aoflagger(chan_block_ms)
    with tables.table(str(chan_block_ms), ack=False) as tab:
        after = tab.getcol("FLAG")
    # AOFlagger rewrites the flags of the block's 8 channels (it may clear some the source set)
    assert after.shape == before.shape == (before.shape[0], 8, 4) and not np.array_equal(after, before)
