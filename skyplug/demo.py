"""``skyplug demo``: the main job on the embedded default, with nothing to install or start.

Two local folder sites (``edge`` at the telescope, ``lake`` in the cloud). Datasets as a NenuFAR
pipeline stages them (a zipped Measurement Set, an h5parm, a FITS cube, a dynamic spectrum) are
placed on the edge site, indexed from their metadata, partitioned, and each partition is fetched
by its own byte ranges and checked against the library that wrote it. The MS is then copied into
the ``sky://`` namespace (a verified replica pushed to the lake site), cut by a job on the local
engine reading the lake's replica, and the provenance store says what a product came from. Every
dataset and product is catalogued (ObsCore + radio extension, SQLite; the product pointing at its
parent) and one ADQL cone query runs over a TAP service started for it. Everything (cache, location
DB, provenance, catalogue) lives in the demo's folder: the user's folders are not touched.
"""

from __future__ import annotations

import json
import os
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
from skyplug.core.errors import ConfigError, SkyplugError
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
    """Two local sites, and every folder skyplug writes (cache, location DB, trace, provenance) in
    ``root``: the demo leaves nothing in the user's folders."""
    sites = {name: {"type": "local", "path": str(root / "sites" / name)} for name in ("edge", "lake")}
    for site in sites.values():
        (Path(site["path"]) / "demo").mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        "default_site": "edge",
        "client_site": "lake",
        "cache_dir": str(root / "cache"),
        "sites": sites,
        "provenance": {"url": f"sqlite:///{root / 'provenance.db'}"},
        "multisite": {
            "db": f"sqlite:///{root / 'multisite' / 'locations.db'}",
            "trace": str(root / "multisite" / "trace.csv"),
            "policies": {"demo": {"policy": "push", "targets": ["lake"]}},
        },
    }
    q = json.dumps  # a JSON string is a TOML basic string
    toml = [
        f"default_site = {q('edge')}",
        f"client_site = {q('lake')}",
        f"cache_dir = {q(raw['cache_dir'])}",
        "",
    ]
    for name, site in sites.items():
        toml += [f"[sites.{name}]", f"type = {q('local')}", f"path = {q(site['path'])}", ""]
    toml += ["[provenance]", f"url = {q(raw['provenance']['url'])}", ""]
    toml += [
        "[multisite]",
        f"db = {q(raw['multisite']['db'])}",
        f"trace = {q(raw['multisite']['trace'])}",
        "",
    ]
    toml += ["[multisite.policies]", 'demo = { policy = "push", targets = ["lake"] }', ""]
    (root / "skyplug.toml").write_text("\n".join(toml))
    config = Config.from_dict(raw, root / "skyplug.toml")
    config.cache_dir = root / "cache"  # even when SKYPLUG_CACHE_DIR names the user's own
    return config


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


SKY_URI = "sky://demo/SB226.ms.zip"


def _replicate(uri: str, echo: Echo) -> dict[str, Any]:
    """Copy the MS from the edge site into the ``sky://`` namespace: the ``push`` policy of ``demo/``
    writes the base copy at edge and a verified replica at lake; a client at lake reads lake's."""
    from skyplug.core import plugins
    from skyplug.core.source import Source
    from skyplug.core.uri import parse_uri
    from skyplug.plugins.locators.multisite.context import get_context
    from skyplug.plugins.locators.multisite.locator import SkySource, open_sky
    from skyplug.plugins.locators.multisite.placement import rank
    from skyplug.plugins.locators.multisite.write import put_object

    ctx, edge = get_context(), get_config().site("edge")
    src = plugins.find("locators", edge.type).open(parse_uri(uri), edge, version=None, hint=None)
    assert isinstance(src, Source)  # the zip's bytes as one object (open_target would open the zip)
    u = parse_uri(SKY_URI)
    obj, replicas = put_object(ctx, src, u.bucket, u.key, "edge")
    sky = open_sky(u, "lake", ctx=ctx)
    assert isinstance(sky, SkySource)
    order = [c.replica.site for c in rank(ctx.settings, ctx.db, sky.obj, "lake")]
    if echo:
        echo(f"replicated {uri} -> {obj.uri} ({obj.version[:19]}..., {obj.size} bytes)")
        echo(
            f"  replicas at {', '.join(r.site for r in replicas)}; "
            f"a client at lake reads {' then '.join(order)}"
        )
    return {
        "uri": obj.uri,
        "version": obj.version,
        "size": obj.size,
        "replicas": [r.site for r in replicas],
        "read_order": order,
    }


def _job(out: Path, echo: Echo) -> dict[str, Any]:
    """A partitioned job on an engine: the sky:// MS cut by time, each part written as an MS by a task."""
    from skyplug.core.load import fetch_partitions

    ds = Dataset(SKY_URI)
    parts = ds.plan("time", 2)
    results = fetch_partitions(parts, out, "ms", engine="local")
    if echo:
        echo(f"job on engine local: {SKY_URI} by time into {len(parts)} partitions")
        for p, r in zip(parts, results, strict=True):
            echo(
                f"  task {p.index}: {p.selection['nrows']} rows, "
                f"{r['bytes_fetched']} bytes -> {r['outputs'][0]}"
            )
    return {
        "uri": SKY_URI,
        "engine": "local",
        "partitions": len(parts),
        "bytes_fetched": sum(r["bytes_fetched"] for r in results),
        "outputs": [o for r in results for o in r["outputs"]],
    }


def _provenance(product: str, echo: Echo) -> dict[str, Any]:
    """What the provenance store says one product was derived from (nearest first)."""
    from skyplug.plugins.provenance import store as prov_store

    url = prov_store.store_url()
    with prov_store.open_store(url) as store:
        parents = store.parents_of(product)
        runs = [r["run"] for r in store.runs()]
    if echo:
        echo(f"provenance ({url}, {len(runs)} run): {Path(product).name} was derived from")
        for ref in parents:
            echo(f"  {ref['uri']}  version {ref['version']}")
        echo(
            "  (skyplug prov ls / prov show; the whole run: "
            f"skyplug prov export {runs[0] if runs else 'RUN'})"
        )
    return {"product": product, "store": url, "derived_from": parents, "runs": runs}


def _catalogue(root: Path, uris: list[str], echo: Echo) -> dict[str, Any]:
    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.service import record_for

    url = f"sqlite:///{root / 'catalog.db'}"
    with open_catalog(url) as cat:
        cat.add([record_for(u) for u in uris])  # parents before products: a product points at its parent
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


def _tap(root: Path, echo: Echo) -> dict[str, Any]:
    """Serve the catalogue over TAP for one cone query (ADQL CONTAINS on s_region), then stop."""
    import urllib.parse
    import urllib.request

    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.server import TapServer

    with open_catalog(f"sqlite:///{root / 'catalog.db'}") as cat:
        ra, dec = cat.query(
            "SELECT s_ra, s_dec FROM ivoa.obscore WHERE dataproduct_type = 'visibility'"
        ).rows[0]
        adql = (
            "SELECT obs_publisher_did, obs_creator_did, access_url, s_fov FROM ivoa.obscore "
            f"WHERE 1 = CONTAINS(POINT('ICRS', {ra:.4f}, {dec:.4f}), s_region) ORDER BY access_url"
        )
        server = TapServer(cat, port=0, jobs_dir=root / "tap-jobs", maxrec=100).start()
        service = server.url
        try:
            params = {"REQUEST": "doQuery", "LANG": "ADQL", "RESPONSEFORMAT": "json", "QUERY": adql}
            query_url = f"{service}/sync?{urllib.parse.urlencode(params)}"
            with urllib.request.urlopen(query_url, timeout=30) as reply:  # our own loopback URL
                answer = json.load(reply)
        finally:
            server.stop()
    names = [c["name"] for c in answer["columns"]]
    rows = [dict(zip(names, r, strict=True)) for r in answer["data"]]
    if echo:
        echo(f"TAP service {service} (skyplug catalog serve --db {root / 'catalog.db'}), stopped after")
        echo(f"  ADQL: {adql}")
        echo(f"  GET {query_url}")
        _echo_rows(rows, echo)
    return {"service": service, "query": adql, "url": query_url, "rows": rows}


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
    """The whole product on the embedded default: datasets staged, indexed, partitioned and checked;
    one replicated through ``sky://``, cut by a job on an engine, its product's provenance shown,
    everything catalogued and queried over TAP. Everything lives in ``workdir`` (else a temporary
    folder, removed afterwards); the user's cache and data folders are not touched."""
    from skyplug.core import provenance as pv

    tmp = None if workdir else Path(tempfile.mkdtemp(prefix="skyplug-demo-"))
    root = (workdir or tmp or Path()).absolute()
    previous, saved_env = get_config(), {k: os.environ.get(k) for k in (pv.DB_ENV, pv.RUN_ENV)}
    if workdir and workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise ConfigError(f"{workdir}: not an empty folder; the demo makes its own in a new or empty one")
    try:
        root.mkdir(parents=True, exist_ok=True)
        config = _sites(root)
        set_config(config)
        os.environ[pv.DB_ENV] = config.raw["provenance"]["url"]  # workers record here, not elsewhere
        os.environ.pop(pv.RUN_ENV, None)  # the demo is one run of its own
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
        uris = [r["uri"] for r in reports]
        replica = job = prov = tap = None
        if any(r["format"] == "ms" for r in reports):
            replica = _replicate("s3://demo/SB226.ms.zip", echo)
            job = _job(root / "out" / "job", echo)
            prov = _provenance(job["outputs"][0], echo)
            uris += [SKY_URI, job["outputs"][0]]
        catalogue = _catalogue(root, uris, echo) if _available("catalog") else None
        if catalogue is not None and job is not None:
            tap = _tap(root, echo)
        if echo and workdir:
            echo(f"kept in {root}: sites/, out/, catalog.db, provenance.db, multisite/, skyplug.toml")
        return {
            "workdir": str(root) if workdir else None,
            "datasets": reports,
            "skipped": skipped,
            "replication": replica,
            "job": job,
            "provenance": prov,
            "catalogue": catalogue,
            "tap": tap,
        }
    finally:
        set_config(previous)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
