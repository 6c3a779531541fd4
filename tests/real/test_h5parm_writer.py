"""A partition of a real LOFAR h5parm written by skyplug (``--as h5``) keeps the source's string
types (padding, character set, size) byte for byte, and DP3's own reader (applycal) finds every
antenna by its full name and corrects an MS exactly as with the source file.

h5py alone writes fixed-length strings NUL-padded: DP3 then read the PyTables-written
``RS106HBA`` (8 characters in 8 bytes, NUL-terminated in the source) as ``RS106HB``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import skyplug

pytest.importorskip("casacore.tables")  # never import dp3 in tests: its bundled casacore clashes

STRING_ATTRS = ("AXES", "TITLE", "h5parm_version")


def string_types(path: Path) -> dict[str, bytes]:
    """Every fixed-string dataset's and STRING_ATTRS attribute's encoded HDF5 type, by path."""
    out: dict[str, bytes] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "SV":
                out[name] = obj.id.get_type().encode()
            for attr in STRING_ATTRS:
                if attr in obj.attrs:  # type: ignore[attr-defined]
                    out[f"{name}@{attr}"] = h5py.h5a.open(obj.id, attr.encode()).get_type().encode()  # type: ignore[attr-defined]

        f.visititems(visit)
    return out


@pytest.mark.parametrize("key", ["dirtest1", "fulljones1"])
def test_partition_keeps_the_string_types(real_h5parm, tmp_path: Path, key: str) -> None:
    src = real_h5parm(key)
    part = skyplug.open(str(src)).plan("time", 2)[1]
    out = part.write(tmp_path / "p1", as_="h5")[0]
    want, got = string_types(src), string_types(out)
    assert set(got) <= set(want)
    assert {
        "sol000/antenna",
        "sol000/source",
        "sol000/amplitude000/ant",
        "sol000/amplitude000/val@AXES",
    } <= set(got)
    for name, tid in got.items():
        assert tid == want[name], f"{key}: {name} stored as another type than in the source"
        assert h5py.h5t.decode(tid) == h5py.h5t.decode(want[name])
    with h5py.File(src, "r") as a, h5py.File(out, "r") as b:
        for name in ("sol000/antenna", "sol000/source", "sol000/amplitude000/ant", "sol000/phase000/pol"):
            assert a[name][()].tobytes() == b[name][()].tobytes(), name
        names = [n.decode() for n in b["sol000/antenna"]["name"]]
        assert names == [n.decode() for n in a["sol000/antenna"]["name"]] and max(map(len, names)) == 8 + (
            key == "fulljones1"
        )  # the longest names fill their strings


def _tiny_ms(path: Path, h5: Path) -> Path:
    """A 4-antenna MS named after the h5parm's first antennas, at its first solution time and
    inside its band."""
    from casacore import tables

    from skyplug.synthetic.ms import make_ms

    make_ms(path, "tcsm", nant=4, ntime=4, nchan=4)
    with h5py.File(h5, "r") as f:
        names = [n.decode() for n in f["sol000/amplitude000/ant"][:4]]
        t0 = float(f["sol000/amplitude000/time"][0])
        freqs = f["sol000/amplitude000/freq"][()]
    with tables.table(str(path), readonly=False, ack=False) as ms:
        time = ms.getcol("TIME")
        ms.putcol("TIME", time - time.min() + t0)
        ms.putcol("TIME_CENTROID", time - time.min() + t0)
    with tables.table(str(path / "ANTENNA"), readonly=False, ack=False) as ant:
        ant.putcol("NAME", names)
    with tables.table(str(path / "SPECTRAL_WINDOW"), readonly=False, ack=False) as spw:
        spw.putcol("CHAN_FREQ", (freqs[0] + 1e5 * np.arange(4))[None, :])
        spw.putcol("REF_FREQUENCY", np.array([freqs[0]]))
    return path


def test_dp3_applycal_reads_the_full_names(real_h5parm, tmp_path: Path) -> None:
    """applycal with partition 0 (by time) of the real h5parm finds the MS's antennas (a truncated
    name is not found: DP3 fails) and gives the same CORRECTED_DATA as the source file."""
    from casacore import tables

    from skyplug.pipeline import dp3
    from skyplug.workflow.parsets import applycal

    src = real_h5parm("dirtest1")
    part = skyplug.open(str(src)).plan("time", 2)[0]
    h5 = part.write(tmp_path / "p0", as_="h5")[0]
    corrected = []
    for name, sols in (("part", h5), ("source", src)):
        ms = _tiny_ms(tmp_path / f"{name}.ms", src)
        dp3(applycal(sols, ms, "."), workdir=tmp_path, what=f"applycal with the {name}")
        with tables.table(str(ms), ack=False) as t:
            corrected.append(t.getcol("CORRECTED_DATA"))
            data = t.getcol("DATA")
        shutil.rmtree(ms)
    assert np.array_equal(corrected[0], corrected[1], equal_nan=True)
    assert not np.allclose(corrected[0], data)  # the gains were applied
