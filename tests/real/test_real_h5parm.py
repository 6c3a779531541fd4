"""Real LOFAR h5parms (phase, amplitude, full-Jones; facetselfcal): every soltab along every axis
equals h5py, a partition planned without naming a soltab holds every soltab, and a slice along any
axis fetches about its own bytes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import skyplug
from skyplug.core.load import fetch_partition
from skyplug.plugins.formats.hdf5.reads import MAX_REQUESTS
from tests.real.conftest import H5PARM
from tests.test_hdf5 import _check_soltab_partitions


def soltabs(path: Path) -> dict[str, list[str]]:
    """Soltab path -> its axis names, from h5py."""
    with h5py.File(path, "r") as f:
        return {
            f"{s}/{t}": f[f"{s}/{t}/val"].attrs["AXES"].decode().split(",")
            for s in f
            for t in f[s]
            if isinstance(f[s][t], h5py.Group) and "val" in f[s][t]
        }


@pytest.mark.parametrize("key", H5PARM)
def test_every_soltab_every_axis_exact(real_h5parm, key: str) -> None:
    path = real_h5parm(key)
    for tab, axes in soltabs(path).items():
        for by in axes:
            _check_soltab_partitions(str(path), path, tab, by, 3)


@pytest.mark.parametrize("key", H5PARM)
def test_partition_without_soltab_holds_every_soltab(real_h5parm, key: str) -> None:
    """``plan(by, n)`` with no soltab named slices every soltab that has axis ``by``."""
    path = real_h5parm(key)
    tabs = soltabs(path)
    for by in ("time", "freq", "ant"):
        parts = skyplug.open(str(path)).plan(by, 2)
        with h5py.File(path, "r") as f:
            for p in parts:
                got = p.load()
                a, b = p.selection["range"]
                for tab, axes in tabs.items():
                    assert f"{tab}/val" in got, f"{key} --by {by} part {p.index}: no {tab} in {sorted(got)}"
                    index = [slice(None)] * len(axes)
                    index[axes.index(by)] = slice(a, b)
                    for name in ("val", "weight"):
                        assert np.array_equal(got[f"{tab}/{name}"], f[f"{tab}/{name}"][tuple(index)]), (
                            tab,
                            name,
                        )


@pytest.mark.parametrize("key", H5PARM)
def test_slices_fetch_their_own_bytes(real_h5parm, tmp_path: Path, key: str) -> None:
    """A slice of a contiguous soltab along any axis fetches at most 1.25x its val/weight bytes (the
    whole soltab when the slice is half of it or more, or needs more contiguous runs than
    ``MAX_REQUESTS``), plus the small datasets it carries (axes;
    PyTables' 64 KiB antenna and source chunks) and 16 KiB: never the whole soltab for a thin slice
    along an inner axis."""
    path = real_h5parm(key)
    with h5py.File(path, "r") as f:
        stored = sum(f[name].id.get_storage_size() for name in ("sol000/antenna", "sol000/source"))
        shapes = {tab: f[f"{tab}/val"].nbytes for tab in soltabs(path)}
        dims = {tab: f[f"{tab}/val"].shape for tab in soltabs(path)}
    over = []
    for tab, axes in soltabs(path).items():
        for by in axes:
            for p in skyplug.open(str(path)).plan(by, 3, soltab=tab):
                a, b = p.selection["range"]
                got = p.load()
                slices = got[f"{tab}/val"].nbytes + got[f"{tab}/weight"].nbytes
                small = sum(got[f"{tab}/{x}"].nbytes for x in axes) + stored
                fetched = fetch_partition(p, tmp_path / f"{tab}-{by}")["bytes_fetched"]
                whole = 2 * shapes[tab]  # val + weight
                runs = int(np.prod(dims[tab][: axes.index(by)]))  # contiguous runs of the slice, per dataset
                # half a soltab or more, or more runs than a partition may request (a thin cut along
                # the last axis: 8-byte runs): the whole soltab is the floor; else 1.25x the slice
                budget = whole if 2 * slices >= whole or 2 * runs > MAX_REQUESTS else 1.25 * slices
                if fetched > budget + small + 16384:
                    over.append(f"{tab} --by {by} [{a}, {b}): {fetched} bytes for {slices} of val/weight")
    assert not over, f"{key}:\n" + "\n".join(over)
