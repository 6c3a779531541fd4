"""The format contract suite (skyplug.testing.format_suite) run against the built-in formats and
against the plugin guide's example (docs/plugins.md), as a third party would run it."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skyplug.core import plugins
from skyplug.core.partition import Partition
from skyplug.testing.format_suite import FormatSample, FormatTests

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _block(ref: np.ndarray, p: Partition, axis: int) -> np.ndarray:
    """``ref`` cut to the partition's ``range`` along numpy ``axis``."""
    index = [slice(None)] * ref.ndim
    index[axis] = slice(*p.selection["range"])
    return ref[tuple(index)]


class TestNpy(FormatTests):
    format_name = "npy"

    @pytest.fixture(scope="class")
    @classmethod
    def sample(cls, tmp_path_factory: pytest.TempPathFactory) -> FormatSample:
        data = np.random.default_rng(3).normal(size=(50, 6, 2)).astype("<f4")
        path = tmp_path_factory.mktemp("npy") / "cube.npy"
        np.save(path, data)
        return FormatSample(
            str(path),
            [("rows", 4, {}), ("rows", 1, {})],
            lambda p: {"array": data[slice(*p.selection["rows"])]},
        )


class TestFits(FormatTests):
    format_name = "fits"

    @pytest.fixture(scope="class")
    @classmethod
    def sample(cls, tmp_path_factory: pytest.TempPathFactory) -> FormatSample:
        from astropy.io import fits

        from skyplug.synthetic.fits import make_all

        path = make_all(tmp_path_factory.mktemp("fits"))["cube4"]
        with fits.open(path) as hdul:
            ref = hdul[0].data.copy()  # STOKES, FREQ, DEC, RA

        def expected(p: Partition) -> dict[str, Any]:
            return {"data": _block(ref, p, ref.ndim - p.selection["axis"])}

        return FormatSample(
            str(path),
            [("channel", 5, {}), ("stokes", 3, {})],
            expected,
            load="array",
            pick=lambda a: {"data": a},
        )


class TestHdf5(FormatTests):
    format_name = "hdf5"

    @pytest.fixture(scope="class")
    @classmethod
    def sample(cls, tmp_path_factory: pytest.TempPathFactory) -> FormatSample:
        import h5py

        from skyplug.synthetic.h5parm import make_all

        path = make_all(tmp_path_factory.mktemp("h5"))["chunked"]
        tab = "sol000/phase000"
        with h5py.File(path, "r") as f:
            axes = f[f"{tab}/val"].attrs["AXES"].decode().split(",")
            ref = {name: f[f"{tab}/{name}"][()] for name in ("val", "weight")}

        def expected(p: Partition) -> dict[str, Any]:
            axis = axes.index(p.selection["by"])
            return {f"{tab}/{name}": _block(ref[name], p, axis) for name in ref}

        plans = [(by, 3, {"soltab": tab}) for by in ("time", "freq", "ant")]
        return FormatSample(str(path), plans, expected)


def _example_module() -> types.ModuleType:
    """The plugin guide's example, imported from the page (the guide's own test installs it)."""
    text = (DOCS / "plugins.md").read_text()
    (code,) = re.findall(r"<!-- file: skyplug_recfile.py -->\n```python\n(.*?)```", text, re.S)
    module = types.ModuleType("skyplug_recfile")
    exec(compile(code, "docs/plugins.md:skyplug_recfile.py", "exec"), module.__dict__)
    return module


class TestGuideExample(FormatTests):
    """A third party's format: the example of docs/plugins.md, registered for this class only."""

    format_name = "rec"

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def registered(cls) -> Any:
        module = _example_module()
        sys.modules["skyplug_recfile"] = module
        pm = plugins.get_plugin_manager()
        pm.register(module, "recfile-suite")
        plugins.registered.cache_clear()
        yield
        pm.unregister(name="recfile-suite")
        plugins.registered.cache_clear()
        del sys.modules["skyplug_recfile"]

    @pytest.fixture(scope="class")
    @classmethod
    def sample(cls, tmp_path_factory: pytest.TempPathFactory) -> FormatSample:
        import struct

        records = np.random.default_rng(8).integers(0, 255, (40, 12), dtype=np.uint8)
        path = tmp_path_factory.mktemp("rec") / "data.rec"
        path.write_bytes(b"RECS" + struct.pack("<IQ", 12, 40) + records.tobytes())
        return FormatSample(
            str(path), [("records", 6, {})], lambda p: {"records": records[slice(*p.selection["records"])]}
        )


class TestMs(FormatTests):
    """A Measurement Set in a STORED zip (one object, read in place), against python-casacore."""

    format_name = "ms"

    @pytest.fixture(scope="class")
    @classmethod
    def sample(cls, tmp_path_factory: pytest.TempPathFactory) -> FormatSample:
        from casacore import tables

        from skyplug.synthetic.ms import make_ms, zip_ms

        root = tmp_path_factory.mktemp("ms")
        make_ms(root / "tcsm.ms", "tcsm")
        path = zip_ms(root / "tcsm.ms", root / "tcsm.ms.zip", "stored")
        with tables.table(str(root / "tcsm.ms"), ack=False) as tab:
            ref = {col: tab.getcol(col) for col in ("TIME", "ANTENNA1", "ANTENNA2", "DATA", "FLAG")}

        def expected(p: Partition) -> dict[str, Any]:
            a, b = p.selection["span"]  # rows [a, b): this layout is sorted by time
            c0, c1 = p.selection.get("chan", (0, None))
            return {k: v[a:b, c0:c1] if v.ndim == 3 else v[a:b] for k, v in ref.items()}

        return FormatSample(str(path), [("rows", 3, {}), ("time", 2, {}), ("chan", 2, {})], expected)
