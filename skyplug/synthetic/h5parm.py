"""Generate h5parm test files with h5py: a DP3-style one (contiguous, uncompressed) and a chunked one
(gzip + shuffle, weight with Fletcher-32), plus generic datasets (lzf, compact, scalar, strings).

Run ``python skyplug/synthetic/h5parm.py DIR`` or call :func:`make_all`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SHAPE = {"time": 120, "freq": 16, "ant": 10, "dir": 3, "pol": 2}
ANTENNA = np.dtype([("name", "S16"), ("position", "<f4", (3,))])
SOURCE = np.dtype([("name", "S128"), ("dir", "<f4", (2,))])


def _axes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "time": 4.9e9 + np.arange(SHAPE["time"]) * 10.0,
        "freq": 44e6 + np.arange(SHAPE["freq"]) * 195312.5,
        "ant": np.array([f"CS{i:03d}HBA0".encode() for i in range(SHAPE["ant"])], dtype="S16"),
        "dir": np.array([f"[Patch_{i}]".encode() for i in range(SHAPE["dir"])], dtype="S128"),
        "pol": np.array([b"XX", b"YY"], dtype="S2"),
    }


def _solset(f: Any, rng: np.random.Generator, chunked: bool) -> None:
    import h5py

    sol = f.create_group("sol000")
    sol.attrs["h5parm_version"] = "1.0"
    ant = np.zeros(SHAPE["ant"], ANTENNA)
    ant["name"] = _axes(rng)["ant"]
    ant["position"] = rng.standard_normal((SHAPE["ant"], 3)) * 1000
    sol.create_dataset("antenna", data=ant)
    src = np.zeros(SHAPE["dir"], SOURCE)
    src["name"] = _axes(rng)["dir"]
    src["dir"] = rng.standard_normal((SHAPE["dir"], 2))
    sol.create_dataset("source", data=src)
    axes = _axes(rng)
    for tab, order, title in (
        ("phase000", ("time", "freq", "ant", "dir", "pol"), "phase"),
        ("amplitude000", ("freq", "ant", "time", "pol", "dir"), "amplitude"),
    ):
        grp = sol.create_group(tab)
        grp.attrs["TITLE"] = np.bytes_(title)
        for name in order:
            grp.create_dataset(name, data=axes[name])
        shape = tuple(SHAPE[a] for a in order)
        val = rng.standard_normal(shape)
        weight = rng.random(shape).astype(np.float32)
        opts: dict = {}
        if chunked:
            chunks = tuple(max(1, n // d) for n, d in zip(shape, (7, 2, 1, 1, 1), strict=True))
            opts = {"chunks": chunks, "compression": "gzip", "compression_opts": 4, "shuffle": True}
        v = grp.create_dataset("val", data=val, **opts)
        w = grp.create_dataset("weight", data=weight, fletcher32=chunked, **opts)
        for ds in (v, w):
            ds.attrs["AXES"] = np.bytes_(",".join(order))
    if chunked:
        extra = f.create_group("extra")
        extra.create_dataset(
            "lzf", data=rng.integers(0, 50, (300, 7), dtype=np.int32), chunks=(64, 7), compression="lzf"
        )
        extra.create_dataset(
            "lzf_shuffle_f64",
            data=np.cumsum(rng.random((97, 5)), 0),
            chunks=(10, 2),
            compression="lzf",
            shuffle=True,
        )
        extra.create_dataset("fletcher_only", data=rng.random((50, 3)), chunks=(8, 3), fletcher32=True)
        extra.create_dataset(
            "big_endian", data=np.arange(40, dtype=">i8").reshape(20, 2), chunks=(6, 2), compression="gzip"
        )
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((12, 4))
        dsid = h5py.h5d.create(extra.id, b"compact", h5py.h5t.NATIVE_INT16, space, dcpl=dcpl)
        h5py.Dataset(dsid)[...] = np.arange(48, dtype=np.int16).reshape(12, 4)
        extra.create_dataset("names", data=["alpha", "beta", "gamma"], dtype=h5py.string_dtype())
        extra.create_dataset("scalar", data=3.5)


JONES = np.array([b"XX", b"XY", b"YX", b"YY"], dtype="S2")


def make_solutions(
    path: Path,
    order: tuple[str, ...] = ("time", "freq", "ant", "dir", "pol"),
    *,
    chunked: bool = False,
    solsets: int = 1,
    times: tuple[int, int] = (64, 16),
) -> Path:
    """A DP3/losoto-like h5parm: per solset a fast ``phase000`` and a slow ``amplitude000`` (``times``
    values each, over the same span), full-Jones ``pol``, axes stored in ``order``, a ``tec000`` soltab
    without freq/pol, contiguous or chunked+gzip with small chunks (time in blocks of 4)."""
    import h5py

    rng = np.random.default_rng(11)
    nfreq, nant, ndir = 8, 12, 2
    start, span = 4.9e9, 640.0
    with h5py.File(path, "w") as f:
        for s in range(solsets):
            sol = f.create_group(f"sol{s:03d}")
            sol.attrs["h5parm_version"] = np.bytes_("1.0")
            ant = np.zeros(nant, ANTENNA)
            ant["name"] = [f"MR{i:03d}NEN".encode() for i in range(nant)]
            ant["position"] = rng.standard_normal((nant, 3)) * 1000
            sol.create_dataset("antenna", data=ant)
            src = np.zeros(ndir, SOURCE)
            src["name"] = [f"[Dir_{i}]".encode() for i in range(ndir)]
            src["dir"] = rng.standard_normal((ndir, 2))
            sol.create_dataset("source", data=src)
            for tab, title, ntime, axes in (
                ("phase000", "phase", times[0], order),
                ("amplitude000", "amplitude", times[1], order),
                ("tec000", "tec", times[0], tuple(a for a in order if a in ("time", "ant", "dir"))),
            ):
                step = span / ntime
                values = {
                    "time": start + step / 2 + np.arange(ntime) * step,
                    "freq": 44e6 + np.arange(nfreq) * 195312.5,
                    "ant": ant["name"],
                    "dir": src["name"],
                    "pol": JONES,
                }
                grp = sol.create_group(tab)
                grp.attrs["TITLE"] = np.bytes_(title)
                for name in axes:
                    grp.create_dataset(name, data=values[name])
                shape = tuple(len(values[a]) for a in axes)
                opts: dict[str, Any] = {}
                if chunked:
                    chunks = tuple(min(n, 4) if a == "time" else n for a, n in zip(axes, shape, strict=True))
                    chunks = tuple(min(c, 2) if a == "ant" else c for a, c in zip(axes, chunks, strict=True))
                    opts = {"chunks": chunks, "compression": "gzip", "compression_opts": 4, "shuffle": True}
                v = grp.create_dataset("val", data=np.round(rng.standard_normal(shape), 3), **opts)
                weight = (rng.random(shape) > 0.02).astype(np.float32)  # flagged (0) or not (1)
                w = grp.create_dataset("weight", data=weight, **opts)
                for ds in (v, w):
                    ds.attrs["AXES"] = np.bytes_(",".join(axes))
                v.attrs["HISTORY000"] = np.bytes_("synthetic solutions for tests")
    return path


def make_all(root: Path) -> dict[str, Path]:
    """``dp3`` (contiguous) and ``chunked`` (gzip/shuffle/fletcher32, lzf, compact) h5parm files."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, chunked in (("dp3", False), ("chunked", True)):
        out[name] = root / f"{name}.h5"
        with h5py.File(out[name], "w") as f:
            _solset(f, np.random.default_rng(5), chunked)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m skyplug.synthetic.h5parm [OUT]``: write the test h5parm files into OUT."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "out", nargs="?", default="h5-data", help="folder to write into (default %(default)s)"
    )
    for name, path in make_all(Path(parser.parse_args(argv).out)).items():
        print(name, path)


if __name__ == "__main__":
    main()
