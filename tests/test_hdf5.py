"""HDF5/h5parm plugin: exact against h5py for contiguous, chunked (gzip, shuffle, lzf, fletcher32) and
compact layouts along every named axis; metadata-only index; bounded bytes; errors and fuzz."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skyplug
from skyplug.core.errors import FormatError, PluginError
from skyplug.core.load import fetch_partition
from skyplug.core.source import BytesSource
from skyplug.plugins.formats.hdf5.filters import fletcher32, lzf_decompress
from skyplug.plugins.formats.hdf5.format import Hdf5Format
from skyplug.plugins.formats.hdf5.reads import MAX_OVERREAD, read_ranges_of
from skyplug.synthetic.h5parm import make_all, make_solutions

h5py = pytest.importorskip("h5py")
AXES = ("time", "freq", "ant", "dir", "pol")
GENERIC = (
    "extra/lzf",
    "extra/lzf_shuffle_f64",
    "extra/fletcher_only",
    "extra/big_endian",
    "extra/compact",
    "extra/names",
)


@pytest.fixture(scope="session")
def h5_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_all(tmp_path_factory.mktemp("h5"))


def _check_soltab_partitions(uri: str, local: Path, tab: str, by: str, n: int) -> None:
    parts = skyplug.open(uri).plan(by, n, soltab=tab)
    with h5py.File(local, "r") as f:
        axes = f[f"{tab}/val"].attrs["AXES"].decode().split(",")
        assert (
            sum(p.selection["range"][1] - p.selection["range"][0] for p in parts) == f[f"{tab}/{by}"].shape[0]
        )
        for p in parts:
            a, b = p.selection["range"]
            got = p.load()
            for name in ("val", "weight"):
                index = [slice(None)] * len(axes)
                index[axes.index(by)] = slice(a, b)
                want = f[f"{tab}/{name}"][tuple(index)]
                assert got[f"{tab}/{name}"].dtype == want.dtype
                assert np.array_equal(got[f"{tab}/{name}"], want), (tab, name, by, a, b)
                assert str(got[f"{tab}/{name}@AXES"]) == ",".join(axes)
            for axis in axes:
                want = f[f"{tab}/{axis}"][a:b] if axis == by else f[f"{tab}/{axis}"][()]
                assert np.array_equal(got[f"{tab}/{axis}"], want), axis
            for table in ("sol000/antenna", "sol000/source"):
                assert np.array_equal(got[table], f[table][()])


@pytest.mark.parametrize("name", ["dp3", "chunked"])
@pytest.mark.parametrize("tab", ["sol000/phase000", "sol000/amplitude000"])
@pytest.mark.parametrize("by", AXES)
def test_soltab_partitions_exact(h5_files: dict[str, Path], name: str, tab: str, by: str) -> None:
    _check_soltab_partitions(str(h5_files[name]), h5_files[name], tab, by, 3)


@pytest.mark.parametrize("dataset", GENERIC)
def test_generic_datasets_exact(h5_files: dict[str, Path], dataset: str) -> None:
    ds = skyplug.open(str(h5_files["chunked"]))
    with h5py.File(h5_files["chunked"], "r") as f:
        parts = ds.plan("rows", 4, dataset=dataset)
        assert len(parts) == min(4, f[dataset].shape[0])
        for p in parts:
            a, b = p.selection["range"]
            assert np.array_equal(p.load()[dataset], f[dataset][a:b])
        if f[dataset].ndim == 2:
            for p in ds.plan("axis:1", 2, dataset=dataset):
                a, b = p.selection["range"]
                assert np.array_equal(p.load()[dataset], f[dataset][:, a:b])


def test_index_reads_metadata_only(h5_files: dict[str, Path]) -> None:
    for name in ("dp3", "chunked"):
        ds = skyplug.open(str(h5_files[name]))
        index = ds.index()
        layouts = {p: e["layout"] for p, e in index["datasets"].items()}
        assert layouts["sol000/phase000/val"] == ("contiguous" if name == "dp3" else "chunked")
        assert ds.index_stats["bytes_read"] < h5_files[name].stat().st_size / 8
        assert index["soltabs"]["sol000/amplitude000"]["axes"] == ["freq", "ant", "time", "pol", "dir"]
    chunked = skyplug.open(str(h5_files["chunked"])).index()["datasets"]
    assert [f[0] for f in chunked["sol000/phase000/weight"]["filters"]] == [2, 1, 3]
    assert chunked["extra/compact"]["layout"] == "compact"


def test_bytes_fetched_bounded(h5_files: dict[str, Path], tmp_path: Path) -> None:
    ds = skyplug.open(str(h5_files["dp3"]))
    for p in ds.plan("time", 4, soltab="sol000/phase000"):
        payload = sum(v.nbytes for k, v in p.load().items() if "@" not in k)
        report = fetch_partition(p, tmp_path / "dp3")
        assert p.expected_bytes == payload
        assert payload <= report["bytes_fetched"] <= payload + 2 * 4096 * 5, report
    ds = skyplug.open(str(h5_files["chunked"]))
    index = ds.index()
    for p in ds.plan("time", 4, soltab="sol000/phase000"):
        report = fetch_partition(p, tmp_path / "chunked")
        a, b = p.selection["range"]
        chunk = index["datasets"]["sol000/phase000/val"]["chunks"][0]
        stored = sum(
            k[-1]
            for path in ("val", "weight")
            for k in index["datasets"][f"sol000/phase000/{path}"]["chunk_list"]
            if k[0] < b and k[0] + chunk > a
        )
        assert report["bytes_fetched"] <= stored + 2 * 4096 * 5 + 4096, report


def test_npz_under_hdf5_paths(h5_files: dict[str, Path], tmp_path: Path) -> None:
    (p,) = skyplug.open(str(h5_files["chunked"])).plan("freq", 4, soltab="sol000/phase000")[1:2]
    (path,) = p.write(tmp_path, as_="npz")
    with np.load(path) as npz, h5py.File(h5_files["chunked"], "r") as f:
        for key in (
            "sol000/phase000/val",
            "sol000/phase000/weight",
            "sol000/phase000/time",
            "sol000/phase000/freq",
            "sol000/antenna",
        ):
            assert key in npz.files
        assert np.array_equal(npz["sol000/phase000/val"], f["sol000/phase000/val"][:, 4:8])


def test_partitions_roundtrip_small(h5_files: dict[str, Path]) -> None:
    for name in ("dp3", "chunked"):
        for by in AXES:
            for p in skyplug.open(str(h5_files[name])).plan(by, 3):
                # about 1 KB per soltab (more with many chunks), plus one (member, start, end) per request
                assert len(p.to_json()) < 1500 * len(p.meta["axes"]) // 2 + 24 * len(p.ranges)
                assert type(p).from_json(p.to_json()) == p
                assert pickle.loads(pickle.dumps(p)) == p


def test_describe_h5parm(h5_files: dict[str, Path]) -> None:
    d = skyplug.open(str(h5_files["dp3"])).describe()
    with h5py.File(h5_files["dp3"], "r") as f:
        t, fr = f["sol000/phase000/time"][()], f["sol000/phase000/freq"][()]
    assert d["t_min"] == pytest.approx(t.min() / 86400) and d["t_max"] == pytest.approx(t.max() / 86400)
    assert d["em_min"] == pytest.approx(299_792_458.0 / fr.max())
    assert d["em_max"] == pytest.approx(299_792_458.0 / fr.min())
    assert d["dataproduct_type"] == "measurements" and d["instr_tel_number"] == 10


def test_filters_decode_against_known_values() -> None:
    assert lzf_decompress(bytes([2]) + b"abc" + bytes([0x20, 2]), 6) == b"abcabc"
    with pytest.raises(ValueError, match="corrupt LZF data"):  # a back-reference before the start
        lzf_decompress(bytes([0x40, 9]), 4)
    assert fletcher32(b"") == 0 and fletcher32(b"\x00\x01") == (1 << 16) | 1


def _src(data: bytes) -> BytesSource:
    return BytesSource("mem://bad.h5", data, "v1")


def test_bad_input_errors(h5_files: dict[str, Path]) -> None:
    fmt = Hdf5Format()
    good = h5_files["chunked"].read_bytes()
    for data, message in (
        (b"\x00" * 8 + good[8:], "unreadable HDF5"),
        (np.random.default_rng(2).bytes(5000), "unreadable HDF5"),
        (good[:3000], "unreadable HDF5"),
        (good.replace(b"TREE", b"TRE\x00"), "unreadable HDF5"),
    ):
        with pytest.raises(FormatError, match=message) as err:
            fmt.index(_src(data))
        assert err.value.obj == "mem://bad.h5" and err.value.offset is not None
    index = fmt.index(_src(good))
    index.update({"uri": "mem://bad.h5", "version": "v1", "format": "hdf5"})
    (p,) = fmt.plan(index, "rows", 1, dataset="sol000/phase000/val")
    first = p.meta["reads"][0]["k"]
    start, size = first[0], first[1]
    corrupt = good[:start] + bytes(size) + good[start + size :]
    with pytest.raises(FormatError, match="cannot be decoded") as err:
        fmt.load(p, _src(corrupt))
    assert err.value.offset == start
    with pytest.raises(FormatError, match="outside the object"):
        fmt.load(p, _src(good[: start + size // 2]))


@settings(max_examples=500, deadline=10000, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    which=st.sampled_from(["dp3", "chunked"]),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
    metadata_bias=st.booleans(),
)
def test_fuzz_only_format_errors(
    h5_files: dict[str, Path],
    which: str,
    edits: list[tuple[float, int]],
    cut: float | None,
    metadata_bias: bool,
) -> None:
    data = bytearray(_fuzz_base(h5_files, which))
    for where, value in edits:
        span = min(len(data), 8192) if metadata_bias else len(data)
        data[int(where * (span - 1))] = value
    if cut is not None:
        data = data[: max(1, int(cut * len(data)))]
    fmt, src = Hdf5Format(), _src(bytes(data))
    try:
        index = fmt.index(src)
        index.update({"uri": src.uri, "version": "v1", "format": "hdf5"})
        if index.get("soltabs"):
            for p in fmt.plan(index, "time", 2):
                fmt.load(p, src)
    except FormatError as exc:
        assert exc.obj == "mem://bad.h5"


_BASES: dict[str, bytes] = {}


def _fuzz_base(h5_files: dict[str, Path], which: str) -> bytes:
    """A small copy of each test file (fewer times) so that 500 examples run in seconds."""
    if which not in _BASES:
        with h5py.File(h5_files[which], "r") as f:
            import io

            buf = io.BytesIO()
            with h5py.File(buf, "w") as g:
                for tab in ("sol000/phase000",):
                    for name in ("time", "freq", "ant", "dir", "pol"):
                        g[f"{tab}/{name}"] = (
                            f[f"{tab}/{name}"][:8] if name == "time" else f[f"{tab}/{name}"][()]
                        )
                    for name in ("val", "weight"):
                        src = f[f"{tab}/{name}"]
                        opts = (
                            {
                                "chunks": (4, *src.shape[1:]),
                                "compression": "gzip",
                                "shuffle": True,
                                "fletcher32": name == "weight",
                            }
                            if src.chunks
                            else {}
                        )
                        g.create_dataset(f"{tab}/{name}", data=src[:8], **opts)
                        g[f"{tab}/{name}"].attrs["AXES"] = src.attrs["AXES"]
                g["sol000/antenna"] = f["sol000/antenna"][()]
            _BASES[which] = buf.getvalue()
    return _BASES[which]


@pytest.mark.s3
def test_s3_soltab_partitions_exact(h5_files: dict[str, Path], s3env: Any) -> None:
    for name in ("dp3", "chunked"):
        uri = s3env.upload(h5_files[name])
        ds = skyplug.open(uri)
        assert ds.index()["metadata_bytes"] < h5_files[name].stat().st_size / 8
        for by in ("time", "ant"):
            _check_soltab_partitions(uri, h5_files[name], "sol000/phase000", by, 3)


# --- whole solsets, as DP3 and losoto write them ---------------------------------------------------
INNER = ("freq", "ant", "dir", "time", "pol")  # time not the leading axis
SOLUTIONS = {
    "dp3": {"order": AXES},
    "dp3_gzip": {"order": AXES, "chunked": True},
    "inner": {"order": INNER},
    "inner_gzip": {"order": INNER, "chunked": True},
}


@pytest.fixture(scope="session")
def solutions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sols")
    out = {name: make_solutions(root / f"{name}.h5", **opts) for name, opts in SOLUTIONS.items()}
    out["two"] = make_solutions(root / "two.h5", solsets=2)
    return out


def _slice(f: Any, tab: str, name: str, axis: str, a: int, b: int) -> np.ndarray:
    axes = f[f"{tab}/val"].attrs["AXES"].decode().split(",")
    index = [slice(None)] * len(axes)
    if axis in axes:
        index[axes.index(axis)] = slice(a, b)
    return f[f"{tab}/{name}"][tuple(index)]


@pytest.mark.parametrize("name", list(SOLUTIONS))
@pytest.mark.parametrize("by", ["time", "freq", "ant", "pol"])
def test_solset_partitions_hold_every_soltab(solutions: dict[str, Path], name: str, by: str) -> None:
    """One partition holds every soltab of the solset (what applycal needs), each exact against h5py."""
    parts = skyplug.open(str(solutions[name])).plan(by, 4)
    with h5py.File(solutions[name], "r") as f:
        tabs = [f"sol000/{t}" for t in f["sol000"] if isinstance(f[f"sol000/{t}"], h5py.Group)]
        assert len(tabs) == 3
        for p in parts:
            got = p.load()
            for tab in tabs:
                axes = f[f"{tab}/val"].attrs["AXES"].decode().split(",")
                a, b = p.selection["soltabs"].get(tab, [0, f[f"{tab}/{by}"].shape[0] if by in axes else 0])
                if by not in axes:
                    assert tab not in p.selection["soltabs"]  # a tec000 without freq: whole
                for arr in ("val", "weight"):
                    want = _slice(f, tab, arr, by, a, b)
                    assert got[f"{tab}/{arr}"].dtype == want.dtype
                    assert np.array_equal(got[f"{tab}/{arr}"], want), (tab, arr, a, b)
                    assert str(got[f"{tab}/{arr}@AXES"]) == ",".join(axes)
                for axis in axes:
                    want = f[f"{tab}/{axis}"][a:b] if axis == by else f[f"{tab}/{axis}"][()]
                    assert np.array_equal(got[f"{tab}/{axis}"], want), (tab, axis)
            for table in ("sol000/antenna", "sol000/source"):
                assert np.array_equal(got[table], f[table][()])
        ref = f[f"{parts[0].selection['soltab']}/{by}"][()]
        assert sum(p.selection["range"][1] - p.selection["range"][0] for p in parts) == len(ref)


def test_slow_soltab_sliced_by_time_values(solutions: dict[str, Path]) -> None:
    """A slow amplitude gets the solutions bracketing each fast-phase block, found by time value."""
    parts = skyplug.open(str(solutions["inner"])).plan("time", 4)
    with h5py.File(solutions["inner"], "r") as f:
        fast, slow = f["sol000/phase000/time"][()], f["sol000/amplitude000/time"][()]
    assert len(fast) == 4 * len(slow) // 1 and all(p.selection["soltab"] == "sol000/phase000" for p in parts)
    for p in parts:
        a, b = p.selection["range"]
        lo, hi = p.selection["interval"]
        assert (lo, hi) == (fast[a], fast[b - 1])
        i0, i1 = p.selection["soltabs"]["sol000/amplitude000"]
        assert slow[i0] <= lo or i0 == 0
        assert slow[i1 - 1] >= hi or i1 == len(slow)
        assert i0 == 0 or slow[i0 + 1] > lo  # the tightest bracket
        assert i1 == len(slow) or slow[i1 - 2] < hi
        got = p.load()["sol000/amplitude000/time"]
        assert np.array_equal(got, slow[i0:i1])


def test_cli_fetch_writes_every_soltab(solutions: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from skyplug.cli import cli

    args = ["fetch", str(solutions["dp3"]), "--by", "time", "-n", "4", "--out", str(tmp_path), "--as", "npz"]
    run = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert run.exit_code == 0, run.output
    with np.load(tmp_path / "part-0002.npz") as npz:
        for tab in ("amplitude000", "phase000", "tec000"):
            assert f"sol000/{tab}/val" in npz.files and f"sol000/{tab}/weight" in npz.files
            assert f"sol000/{tab}/time" in npz.files
        assert "sol000/antenna" in npz.files and "sol000/source" in npz.files


def test_solset_and_soltab_options(solutions: dict[str, Path]) -> None:
    ds = skyplug.open(str(solutions["two"]))
    with pytest.raises(PluginError, match=r"2 solsets \(sol000, sol001\).*solset="):
        ds.plan("time", 2)
    (p, _) = ds.plan("time", 2, solset="sol001")
    assert {k.split("/")[0] for k in p.load()} == {"sol001"}
    (p, _) = ds.plan("time", 2, soltab="sol001/amplitude000")
    assert set(p.selection["soltabs"]) == {"sol001/amplitude000"}
    with pytest.raises(PluginError, match="no solset 'sol009'"):
        ds.plan("time", 2, solset="sol009")


@pytest.mark.parametrize("name", list(SOLUTIONS))
def test_slices_fetch_only_their_bytes(solutions: dict[str, Path], name: str, tmp_path: Path) -> None:
    """Along any axis: contiguous runs or intersecting chunks only; bytes requested near the payload."""
    ds = skyplug.open(str(solutions[name]))
    for by in ("time", "freq"):
        for p in ds.plan(by, 4):
            report = fetch_partition(p, tmp_path / by, as_="npz")
            assert report["bytes_fetched"] == p.fetch_bytes  # the plan shows what is read
            # stored bytes of the runs or of the chunks the slice intersects (compressed: whole chunks)
            payload = sum(e - s for r in p.meta["reads"] for s, e in read_ranges_of(r))
            assert payload == p.expected_bytes
            assert report["bytes_fetched"] <= (1 + MAX_OVERREAD) * payload, (by, p.index, report)


@pytest.mark.parametrize("name", ["dp3", "inner_gzip"])
def test_native_h5parm_output_opens_with_h5py_and_losoto(
    solutions: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """``--as native`` writes a valid h5parm per partition, every soltab in it, as losoto reads them."""
    from losoto import h5parm as losoto

    parts = skyplug.open(str(solutions[name])).plan("time", 4)
    for p in parts[1:3]:
        (path,) = p.write(tmp_path, as_="native")
        assert path.suffix == ".h5"
        want = p.load()
        with h5py.File(path, "r") as f:
            for key, value in want.items():
                if "@" in key:
                    path_, _, attr = key.partition("@")
                    assert f[path_].attrs[attr].decode() == str(value)
                else:
                    assert np.array_equal(f[key][()], value), key
        h = losoto.h5parm(str(path))
        try:
            solset = h.getSolset("sol000")
            assert sorted(solset.getSoltabNames()) == ["amplitude000", "phase000", "tec000"]
            assert len(solset.getAnt()) == 12 and len(solset.getSou()) == 2
            for tab in ("amplitude000", "phase000"):
                st = solset.getSoltab(tab)
                assert st.getType() == tab[:-3]
                vals, axes = st.getValues()
                stored = want[f"sol000/{tab}/val"]
                assert st.getAxesNames() == str(want[f"sol000/{tab}/val@AXES"]).split(",")
                assert np.array_equal(vals, stored)
                assert np.array_equal(axes["time"], want[f"sol000/{tab}/time"])
        finally:
            h.close()
