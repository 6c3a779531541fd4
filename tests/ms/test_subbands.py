"""``skyplug.open_ms`` over 4 zipped NenuFAR-like subbands equals xradio's reading of the local
ones concatenated along frequency; mismatched subbands are one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import skyplug
from skyplug.core.errors import SkyplugError
from tests.ms.msv4_compare import MAIN, xradio_tree

pytest.importorskip("xradio")


@pytest.fixture(scope="module")
def subbands(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skyplug.synthetic.ms import zip_ms
    from skyplug.synthetic.taska import make_subbands

    root = tmp_path_factory.mktemp("sb")
    make_subbands(root, 4, ntime=8, nchan=8, nant=4, zip=False)
    (root / "zips").mkdir()
    for ms in _local(root):
        zip_ms(ms, root / "zips" / f"{ms.name}.zip", "stored")
    return root


def _local(root: Path) -> list[Path]:
    return sorted(p for p in (root / "target").glob("SB*.ms") if p.is_dir())


def test_four_zipped_subbands_equal_xradio_concatenation(subbands: Path) -> None:
    locals_ = _local(subbands)
    assert len(locals_) == 4
    got = skyplug.open_ms(str(subbands / "zips" / "SB*.ms.zip"), chunks={"time": 4})
    refs = []
    for ms in locals_:
        tree = xradio_tree(str(ms))
        refs.append(tree[next(iter(tree.children))].to_dataset())
    refs.sort(key=lambda d: float(d.frequency.values[0]))
    ref = xr.concat(refs, dim="frequency", data_vars="minimal", coords="minimal", compat="override",
                    join="override", combine_attrs="drop_conflicts").compute()  # fmt: skip
    assert dict(got.sizes) == dict(ref.sizes) and got.sizes["frequency"] == 4 * refs[0].sizes["frequency"]
    assert np.array_equal(got.frequency.values, ref.frequency.values)
    assert got.VISIBILITY.data.numblocks[2] == 4  # the chunks stay the subbands' partitions
    for v in MAIN:
        assert np.array_equal(got[v].values, ref[v].values, equal_nan=True), v
    n = refs[0].sizes["frequency"]
    cross = got.VISIBILITY.isel(frequency=slice(n - 2, n + 2)).compute()  # two subbands
    assert np.array_equal(cross.values, ref.VISIBILITY.values[:, :, n - 2 : n + 2], equal_nan=True)


def test_mismatched_subbands_name_both(subbands: Path, tmp_path: Path) -> None:
    from skyplug.synthetic.ms import make_ms

    (first,) = _local(subbands)[:1]
    make_ms(tmp_path / "SB999.ms", "tcsm", ntime=5)
    (tmp_path / "SB100.ms").symlink_to(first)
    with pytest.raises(SkyplugError) as err:
        skyplug.open_ms(str(tmp_path / "SB*.ms"))
    msg = str(err.value)
    assert "\n" not in msg and "SB999" in msg and "SB100" in msg and "differ" in msg
    with pytest.raises(SkyplugError, match="no object matches"):
        skyplug.open_ms(str(tmp_path / "nothing*.ms"))


@pytest.mark.s3
def test_glob_over_s3_equals_the_local_concatenation(subbands: Path, s3env) -> None:  # type: ignore[no-untyped-def]
    """``s3://bucket/obs/SB*.ms.zip``: the listing is globbed, other objects are left out, and the
    lazy concatenation equals the one of the same zips on local disk."""
    for z in sorted((subbands / "zips").glob("SB*.ms.zip")):
        s3env.upload(z, f"obs/{z.name}")
    s3env.upload(next((subbands / "zips").glob("SB*.ms.zip")), "obs/other/SB000.ms.zip")  # not matched
    s3env.upload(next((subbands / "zips").glob("SB*.ms.zip")), "obs/notes-SB1.txt")
    remote = skyplug.open_ms(f"s3://{s3env.bucket}/obs/SB*.ms.zip", chunks={"time": 4})
    local = skyplug.open_ms(str(subbands / "zips" / "SB*.ms.zip"), chunks={"time": 4})
    assert dict(remote.sizes) == dict(local.sizes) and remote.VISIBILITY.data.numblocks[2] == 4
    for v in MAIN:
        assert np.array_equal(remote[v].values, local[v].values, equal_nan=True), v
    with pytest.raises(SkyplugError, match="no object matches"):
        skyplug.open_ms(f"s3://{s3env.bucket}/obs/XX*.ms.zip")
