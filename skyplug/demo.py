"""``skyplug demo``: the main job on the embedded default, with nothing to install or start.

Two local folder sites (``edge`` at the telescope, ``lake`` in the cloud); datasets are placed on
the edge site, indexed from their metadata, partitioned, and each partition is fetched by its own
byte ranges and checked against the original.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from skyplug.core.config import Config, get_config, set_config
from skyplug.core.dataset import Dataset, fetch_partition


def _sites(root: Path) -> Config:
    raw = {
        "default_site": "edge",
        "client_site": "lake",
        "sites": {
            "edge": {"type": "local", "path": str(root / "sites" / "edge")},
            "lake": {"type": "local", "path": str(root / "sites" / "lake")},
        },
    }
    for site in raw["sites"].values():
        Path(site["path"], "demo").mkdir(parents=True, exist_ok=True)
    (root / "skyplug.toml").write_text(
        'default_site = "edge"\nclient_site = "lake"\n\n'
        + "".join(f'[sites.{n}]\ntype = "local"\npath = "{s["path"]}"\n\n' for n, s in raw["sites"].items())
    )
    return Config.from_dict(raw, root / "skyplug.toml")


def _npy_dataset(site_root: Path) -> tuple[str, np.ndarray]:
    """A (time, channel) dynamic spectrum, as a pipeline would stage it."""
    rng = np.random.default_rng(226)
    spectrum = rng.normal(size=(1536, 64)).astype("<f4")
    np.save(site_root / "demo" / "SB226_dynspec.npy", spectrum)
    return "s3://demo/SB226_dynspec.npy", spectrum


def _run_one(
    uri: str,
    by: str,
    n: int,
    out: Path,
    check: Callable[[list[dict[str, Any]]], bool],
    echo: Callable[[str], None] | None,
) -> dict[str, Any]:
    ds = Dataset(uri)
    index = ds.index()
    parts = ds.plan(by, n)
    results = [fetch_partition(p, out) for p in parts]
    ok = check(results)
    report = {
        "uri": uri,
        "site": ds.site.name if ds.site else None,
        "format": ds.format.name,
        "index": ds.index_stats,
        "partitions": len(parts),
        "by": by,
        "bytes_fetched": sum(r["bytes_fetched"] for r in results),
        "payload_bytes": sum(p.expected_bytes for p in parts),
        "exact": ok,
        "summary": ds.format.summary(index),
    }
    if echo:
        echo(f"{uri} on site {report['site']}: {ds.format.name}, index {ds.index_stats['bytes_read']} bytes")
        for p, r in zip(parts, results, strict=True):
            sel = ", ".join(f"{k}={v}" for k, v in p.selection.items())
            echo(f"  part {p.index}: {sel}: {r['bytes_fetched']} bytes -> {Path(r['outputs'][0]).name}")
        echo(f"  {'exact' if ok else 'MISMATCH'}: every partition equals the original's selection")
    return report


def run_demo(workdir: Path | None = None, echo: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Build the demo sites and datasets, partition them, and report what was read."""
    tmp = None if workdir else Path(tempfile.mkdtemp(prefix="skyplug-demo-"))
    root = workdir or tmp
    assert root is not None
    previous = get_config()
    try:
        config = _sites(root)
        set_config(config)
        edge = Path(config.sites["edge"].path or "")
        if echo:
            echo(f"sites: edge={edge}, lake={config.sites['lake'].path} (config {root / 'skyplug.toml'})")
        reports = []
        uri, spectrum = _npy_dataset(edge)

        def same(results: list[dict[str, Any]]) -> bool:
            got = np.concatenate([np.load(r["outputs"][0]) for r in results])
            return bool(np.array_equal(got, spectrum))

        reports.append(_run_one(uri, "rows", 4, root / "out" / "dynspec", same, echo))
        if not all(r["exact"] for r in reports):
            from skyplug.core.errors import SkyplugError

            raise SkyplugError("demo: a partition differs from the original")
        return {"workdir": str(root) if workdir else None, "datasets": reports}
    finally:
        set_config(previous)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
