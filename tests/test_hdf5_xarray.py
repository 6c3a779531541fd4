"""h5parm soltabs in xarray (skyplug.plugins.formats.hdf5.xarray): val and weight bit for bit as h5py
reads them, dims from AXES, axis coordinates decoded, every soltab in the DataTree, lazy chunks that
are partitions (a time block selected asks S3 for no byte of val or weight outside the block)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import skyplug
from skyplug.core.errors import PluginError
from skyplug.plugins.formats.hdf5.xarray import open_dataset, open_datatree
from skyplug.synthetic.h5parm import make_all


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_all(tmp_path_factory.mktemp("h5-xr"))


def soltabs(path: Path) -> list[str]:
    with h5py.File(path) as f:
        return [f"{s}/{t}" for s in f for t in f[s] if isinstance(f[s][t], h5py.Group) and "val" in f[s][t]]


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


def check_soltab(ds: Any, f: h5py.File, tab: str) -> None:
    """val/weight bytes, dims from AXES, coordinates as stored (bytes decoded)."""
    for name in ("val", "weight"):
        ref = f[f"{tab}/{name}"]
        assert ds[name].dims == tuple(ref.attrs["AXES"].decode().split(",")), (tab, name)
        assert same_bits(ds[name].values, ref[()]), (tab, name)
    for axis in ds[name].dims:
        want = f[f"{tab}/{axis}"][()]
        if want.dtype.kind == "S":
            want = np.char.decode(want, "utf-8")
        assert np.array_equal(ds[axis].values, want), (tab, axis)
        assert ds[axis].dtype == want.dtype


@pytest.mark.parametrize("name", ["dp3", "chunked"])
def test_every_soltab_equals_h5py(files: dict[str, Path], name: str) -> None:
    path = files[name]
    tree = open_datatree(str(path))
    with h5py.File(path) as f:
        tabs = soltabs(path)
        assert sorted(n.path.strip("/") for n in tree.subtree if "val" in n.dataset) == sorted(tabs)
        for tab in tabs:
            check_soltab(tree[tab].dataset, f, tab)
            check_soltab(open_dataset(str(path), soltab=tab), f, tab)
        ant = f["sol000/antenna"][()]
        node = tree["sol000"].dataset
        assert list(node["antenna"].values) == [n.decode() for n in ant["name"]]
        assert same_bits(node["antenna_position"].values, ant["position"])


def test_chunks_are_partitions_and_nan_kept(files: dict[str, Path], tmp_path: Path) -> None:
    """A copy with NaN in val (flagged solutions): kept, in every chunking."""
    path = tmp_path / "nan.h5"
    path.write_bytes(files["dp3"].read_bytes())
    with h5py.File(path, "r+") as f:
        tab = soltabs(path)[0]
        val = f[f"{tab}/val"]
        data = val[()]
        data.flat[::7] = np.nan
        val[...] = data
    ds = open_dataset(str(path), soltab=tab, chunks={"time": 7})
    along = ds["val"].data.chunks[ds["val"].dims.index("time")]  # near-equal blocks of <= 7 (split_even)
    assert max(along) <= 7 and len(along) == -(-ds.sizes["time"] // 7)
    assert same_bits(ds["val"].values, data)
    assert np.isnan(ds["val"].values).sum() == np.isnan(data).sum() > 0


def test_partition_load_as_xarray(files: dict[str, Path]) -> None:
    path = files["chunked"]
    tree = open_datatree(str(path))
    for p in skyplug.open(str(path)).plan("time", 3):
        got = p.load(as_="xarray")
        for tab, (a, b) in p.selection["soltabs"].items():
            want = tree[tab].to_dataset(inherit=False).isel(time=slice(a, b))
            part = got[tab].to_dataset(inherit=False)
            assert set(part.data_vars) == set(want.data_vars) and set(part.coords) == set(want.coords)
            for name in want.variables:
                assert part[name].dims == want[name].dims
                assert np.array_equal(part[name].values, want[name].values), (tab, name)


def test_time_block_on_s3_reads_only_its_bytes(files: dict[str, Path], s3env: Any) -> None:
    """A contiguous soltab cut in time blocks: computing one block asks for no byte of val or
    weight outside that block's rows (the other bytes asked are axes and small tables)."""
    path = files["dp3"]
    tab = next(t for t in soltabs(path) if t.endswith("phase000"))
    uri = s3env.upload(path, "dp3.h5")
    seen: list[Any] = []
    s3env.client().meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: seen.append(request.headers.get("Range"))
    )
    ds = open_dataset(uri, soltab=tab, chunks={"time": 10})
    seen.clear()
    got = ds.isel(time=slice(20, 30)).compute()
    spans = []
    for r in seen:
        text = r.decode() if isinstance(r, bytes) else str(r)
        lo, hi = text.removeprefix("bytes=").split("-")
        spans.append((int(lo), int(hi) + 1))
    assert spans, "nothing was fetched"
    with h5py.File(path) as f:
        for name in ("val", "weight"):
            d = f[f"{tab}/{name}"]
            assert d.attrs["AXES"].decode().split(",")[0] == "time" and d.chunks is None
            row = d.dtype.itemsize * int(np.prod(d.shape[1:]))
            start, end = d.id.get_offset(), d.id.get_offset() + d.id.get_storage_size()
            block = (start + 20 * row, start + 30 * row)
            for lo, hi in spans:
                before = max(0, min(hi, block[0]) - max(lo, start))
                after = max(0, min(hi, end) - max(lo, block[1]))
                outside = before + after
                assert outside == 0, f"{name}: request {lo}-{hi} reads rows outside [20, 30)"
            assert same_bits(got[name].values, d[20:30])
    assert sum(hi - lo for lo, hi in spans) < 2 * (30 - 20) * row + 64 * 1024


def test_bad_input_is_one_clear_error(files: dict[str, Path], tmp_path: Path) -> None:
    path = str(files["dp3"])
    with pytest.raises(PluginError, match=r"soltabs .*choose one with soltab="):
        open_dataset(path)
    with pytest.raises(PluginError, match=r"no soltab 'nope'"):
        open_dataset(path, soltab="nope")
    with pytest.raises(PluginError, match=r"no solset 'sol9'"):
        open_dataset(path, solset="sol9")
    with pytest.raises(PluginError, match=r"chunks name no axis \['chan'\]"):
        open_dataset(path, soltab=soltabs(files["dp3"])[0], chunks={"chan": 2})
    with pytest.raises(PluginError, match=r"takes solset, soltab, chunks and site, not decode_times"):
        open_dataset(path, soltab="phase000", decode_times=False)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(10)
    with pytest.raises(PluginError, match=r"no h5parm soltab here"):
        open_datatree(str(plain))
