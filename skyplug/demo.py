"""``skyplug demo``: the main job on the embedded default, with nothing to install or start.

Two local folder sites (``edge`` at the telescope, ``lake`` in the cloud). Datasets as a NenuFAR
pipeline stages them (a zipped Measurement Set, an h5parm, a FITS cube, a dynamic spectrum) are
placed on the edge site, indexed from their metadata, partitioned, and each partition is fetched
by its own byte ranges and checked against the library that wrote it. Every dataset is then
catalogued (ObsCore + radio extension, SQLite) and queried in ADQL.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.config import Config, get_config, set_config
from skyplug.core.dataset import Dataset
from skyplug.core.errors import SkyplugError
from skyplug.core.load import fetch_partition
from skyplug.core.partition import Partition
from skyplug.plugins.locators.local import local_options

Echo = Callable[[str], None] | None
Check = Callable[[list[Partition], list[dict[str, Any]]], bool]


@dataclass
class Step:
    """One dataset of the demo: how to make it, how to cut it, how to check the pieces."""

    name: str
    needs: str  # the extra that provides the library writing and checking it
    by: str
    n: int
    as_: str
    make: Callable[[Path, Path], tuple[str, Check]]  # (build dir, edge bucket dir) -> (uri, check)


def _sites(root: Path) -> Config:
    raw: dict[str, Any] = {"default_site": "edge", "client_site": "lake", "sites": {}}
    for name in ("edge", "lake"):
        path = root / "sites" / name
        (path / "demo").mkdir(parents=True, exist_ok=True)
        raw["sites"][name] = {"type": "local", "path": str(path)}
    (root / "skyplug.toml").write_text(
        'default_site = "edge"\nclient_site = "lake"\n\n'
        + "".join(f'[sites.{n}]\ntype = "local"\npath = "{s["path"]}"\n\n' for n, s in raw["sites"].items())
    )
    return Config.from_dict(raw, root / "skyplug.toml")


def _dynspec(build: Path, bucket: Path) -> tuple[str, Check]:
    """A (time, channel) dynamic spectrum as .npy."""
    spectrum = np.random.default_rng(226).normal(size=(1536, 64)).astype("<f4")
    np.save(bucket / "SB226_dynspec.npy", spectrum)

    def check(parts: list[Partition], results: list[dict[str, Any]]) -> bool:
        got = np.concatenate([np.load(r["outputs"][0]) for r in results])
        return bool(np.array_equal(got, spectrum))

    return "s3://demo/SB226_dynspec.npy", check


def _ms(build: Path, bucket: Path) -> tuple[str, Check]:
    """A DP3-like Measurement Set, zipped STORED as the pipelines ship it."""
    from casacore import tables

    from skyplug.synthetic.ms import make_ms, zip_ms

    ms = make_ms(build / "SB226.ms", "tcsm", nant=12, ntime=24, nchan=16, tile_rows=64)
    zip_ms(ms, bucket / "SB226.ms.zip", "stored")
    with tables.table(str(ms), ack=False) as tab:
        times, data = tab.getcol("TIME"), tab.getcol("DATA")

    def check(parts: list[Partition], results: list[dict[str, Any]]) -> bool:
        ok = True
        for p, r in zip(parts, results, strict=True):
            with tables.table(r["outputs"][0], ack=False) as out:  # a valid MS casacore opens
                t0, t1 = p.selection["time"]
                rows = np.flatnonzero((times >= t0) & (times <= t1))
                ok &= bool(np.array_equal(out.getcol("DATA"), data[rows], equal_nan=True))  # NaN stay NaN
        return ok and sum(p.selection["nrows"] for p in parts) == len(times)

    return "s3://demo/SB226.ms.zip", check


def _h5parm(build: Path, bucket: Path) -> tuple[str, Check]:
    """DP3-style calibration solutions (contiguous soltabs)."""
    import h5py

    from skyplug.synthetic.h5parm import make_all

    shutil.copy(make_all(build / "h5")["dp3"], bucket / "SB226.h5")

    def check(parts: list[Partition], results: list[dict[str, Any]]) -> bool:
        soltab = parts[0].selection["soltab"]
        with h5py.File(bucket / "SB226.h5", "r") as f:
            val = f[f"{soltab}/val"]
            axis = val.attrs["AXES"].decode().split(",").index("time")  # DP3 orders axes its own way
            whole = val[()]
        got = np.concatenate([np.load(r["outputs"][0])[f"{soltab}/val"] for r in results], axis=axis)
        return bool(np.array_equal(got, whole, equal_nan=True))

    return "s3://demo/SB226.h5", check


def _fits(build: Path, bucket: Path) -> tuple[str, Check]:
    """A 4-axis image cube with a full WCS (Stokes, frequency, Dec, RA)."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from skyplug.synthetic.fits import make_all

    shutil.copy(make_all(build / "fits")["cube4"], bucket / "SB226-cube.fits")
    with fits.open(bucket / "SB226-cube.fits") as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # astropy's note that it set MJD-OBS
        cube, wcs = hdul[0].data.copy(), WCS(hdul[0].header)

    def check(parts: list[Partition], results: list[dict[str, Any]]) -> bool:
        ok = True
        for p, r in zip(parts, results, strict=True):
            a, b = p.selection["range"]
            with fits.open(r["outputs"][0]) as hdul, warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                ok &= bool(np.array_equal(hdul[0].data, cube[:, a:b]))
                sky = WCS(hdul[0].header).pixel_to_world_values(3, 5, 0, 0)
                ok &= bool(np.allclose(sky, wcs.pixel_to_world_values(3, 5, a, 0)))
        return ok

    return "s3://demo/SB226-cube.fits", check


STEPS = (
    Step("measurement set", "ms", "time", 4, "ms", _ms),
    Step("h5parm", "hdf5", "time", 4, "npz", _h5parm),
    Step("fits cube", "fits", "channel", 3, "fits", _fits),
    Step("dynamic spectrum", "", "rows", 4, "native", _dynspec),
)


def _run(step: Step, build: Path, edge: Path, out: Path, echo: Echo) -> dict[str, Any]:
    build.mkdir(parents=True, exist_ok=True)
    uri, check = step.make(build, edge / "demo")
    ds = Dataset(uri)
    index = ds.index()
    parts = ds.plan(step.by, step.n)
    results = [fetch_partition(p, out, step.as_) for p in parts]
    exact = check(parts, results)
    fetched, payload = sum(r["bytes_fetched"] for r in results), sum(p.expected_bytes for p in parts)
    if echo:
        echo(
            f"{step.name}: {uri} on site {ds.site.name if ds.site else '-'} ({ds.format.name}), "
            f"index {ds.index_stats['bytes_read']} bytes of {_size(edge, uri)}"
        )
        for p, r in zip(parts, results, strict=True):
            sel = ", ".join(f"{k}={v}" for k, v in p.selection.items() if k not in ("hdu", "by"))
            echo(f"  part {p.index}: {sel}: {r['bytes_fetched']} bytes -> {Path(r['outputs'][0]).name}")
        echo(f"  {'exact' if exact else 'MISMATCH'}: every partition equals the original's selection")
    return {
        "name": step.name,
        "uri": uri,
        "site": ds.site.name if ds.site else None,
        "format": ds.format.name,
        "index": ds.index_stats,
        "by": step.by,
        "partitions": len(parts),
        "as": step.as_,
        "bytes_fetched": fetched,
        "planned_bytes": payload,
        "exact": exact,
        "outputs": [o for r in results for o in r["outputs"]],
        "summary": ds.format.summary(index),
    }


def _size(edge: Path, uri: str) -> int:
    return (edge / uri.removeprefix("s3://")).stat().st_size


def _catalogue(root: Path, uris: list[str], echo: Echo) -> dict[str, Any]:
    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.service import record_for

    url = f"sqlite:///{root / 'catalog.db'}"
    with open_catalog(url) as cat:
        cat.add([record_for(u) for u in uris])
        adql = (
            "SELECT obs_publisher_did, dataproduct_type, access_format, t_min, em_min, em_max "
            "FROM ivoa.obscore ORDER BY dataproduct_type"
        )
        result = cat.query(adql)
    rows = [dict(zip([c.name for c in result.columns], row, strict=True)) for row in result.rows]
    if echo:
        echo(f"catalogue {url}: {len(rows)} records; ADQL: {adql}")
        _echo_rows(rows, echo)
    return {"url": url, "query": adql, "rows": rows}


def _echo_rows(rows: list[dict[str, Any]], echo: Echo) -> None:
    """Every queried column of every row, aligned, numbers at full precision (MJD also as UTC)."""
    from skyplug.catalog.commands import _fmt

    if not rows:
        return
    cells = [[_fmt(v, k) or "-" for k, v in row.items()] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(rows[0])]
    echo("  " + "  ".join(k.ljust(w) for k, w in zip(rows[0], widths, strict=True)).rstrip())
    for c in cells:
        echo("  " + "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def _available(extra: str) -> bool:
    import importlib.util

    module = {"ms": "casacore", "hdf5": "h5py", "fits": "astropy", "catalog": "sqlglot"}.get(extra)
    return module is None or importlib.util.find_spec(module) is not None


def run_demo(workdir: Path | None = None, echo: Echo = print) -> dict[str, Any]:
    """Build the demo sites and datasets, partition them, catalogue them; report what was read."""
    tmp = None if workdir else Path(tempfile.mkdtemp(prefix="skyplug-demo-"))
    root = workdir or tmp
    assert root is not None
    previous = get_config()
    try:
        config = _sites(root)
        set_config(config)
        edge, lake = (Path(local_options(config.sites[n]).path) for n in ("edge", "lake"))
        if echo:
            echo(f"sites: edge={edge}, lake={lake} (config {root / 'skyplug.toml'})")
        reports, skipped = [], []
        for step in STEPS:
            if not _available(step.needs):
                skipped.append(f"{step.name}: pip install 'skyplug[{step.needs}]'")
                if echo:
                    echo(f"{step.name}: skipped, needs pip install 'skyplug[{step.needs}]'")
                continue
            reports.append(_run(step, root / "build", edge, root / "out" / step.name.replace(" ", "-"), echo))
        bad = [r["name"] for r in reports if not r["exact"]]
        if bad:
            raise SkyplugError(f"demo: partitions differ from the original for {', '.join(bad)}")
        catalogue = _catalogue(root, [r["uri"] for r in reports], echo) if _available("catalog") else None
        return {
            "workdir": str(root) if workdir else None,
            "datasets": reports,
            "skipped": skipped,
            "catalogue": catalogue,
        }
    finally:
        set_config(previous)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
