"""The TASKA workflow end to end with DP3 and WSClean: local folders, S3 sites, three engines, replay.

Every run is checked scientifically (gains within 1% of the injected ones, image peaks at the
sources with their flux within 2%: skyplug.workflow.science); the engines must give the same image
data and solutions within tolerance; products are catalogued (queried over TAP) and their
provenance goes back to the raw MS's byte ranges and to the h5parm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
pytest.importorskip("casacore.tables")  # never import dp3 in tests: its bundled casacore clashes

from skyplug.workflow import taska  # noqa: E402

pytestmark = pytest.mark.slow
SKYPLUG = str(Path(sys.executable).parent / "skyplug")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The workflow on local folder sites with the local engine (4 subbands, as the demo)."""
    root = tmp_path_factory.mktemp("taska-local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYPLUG_CACHE_DIR", str(root / "cache"))
        mp.setenv("SKYPLUG_DATA_DIR", str(root / "data"))
        report = taska.run_workflow(root / "run", engine="local")
    return report


def solutions(root: Path, subband: str) -> dict[str, np.ndarray]:
    with h5py.File(root / "products" / f"{subband}.h5") as f:
        return {t: f[f"sol000/{t}/val"][()] for t in ("amplitude000", "phase000")}


def test_local_run_passes_the_scientific_checks(local_run: dict[str, Any]) -> None:
    checks = local_run["checks"]
    assert checks["ok"], checks["lines"]
    assert [g["name"] for g in checks["gains"]] == ["SB226", "SB276", "SB326", "SB376"]
    assert [i["name"] for i in checks["images"]] == ["SB226", "SB276", "SB326", "SB376", "MFS"]
    assert all(g["max_amplitude_error"] < 0.01 and g["max_phase_error"] < 0.01 for g in checks["gains"])
    assert len(local_run["corrected"]) == 4 * taska.DEFAULTS["n"]  # time partitions per subband
    lake = Path(local_run["config"]).parent / "sites" / "lake" / taska.BUCKET
    assert {p.name for p in (lake / "images" / local_run["run"]).iterdir()} == {
        f"{i['name']}-image.fits" for i in local_run["images"]
    }


def test_products_are_catalogued_and_tap_queryable(local_run: dict[str, Any]) -> None:
    pyvo = pytest.importorskip("pyvo")
    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.server import TapServer

    root = Path(local_run["config"]).parent
    cat = open_catalog(f"sqlite:///{root / 'catalog.db'}")
    server = TapServer(cat, port=0, jobs_dir=root / "jobs", maxrec=1000).start()
    try:
        table = (
            pyvo.dal.TAPService(server.url)
            .run_sync(
                "SELECT skyplug_uri, dataproduct_type FROM ivoa.obscore WHERE skyplug_uri LIKE '%-image.fits'"
            )
            .to_table()
        )
    finally:
        server.stop()
        cat.close()
    assert sorted(table["skyplug_uri"]) == sorted(i["uri"] for i in local_run["images"])
    assert set(table["dataproduct_type"]) == {"image"}


def test_provenance_goes_back_to_raw_byte_ranges_and_h5parm(
    local_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyplug.core.config import load_config, set_config
    from skyplug.plugins.provenance.store import open_store

    set_config(load_config(local_run["config"]))
    root = Path(local_run["config"]).parent
    mfs = next(i for i in local_run["images"] if i["name"] == "MFS")
    with open_store(f"sqlite:///{root / 'catalog.db'}") as store:
        parents = {p["uri"] for p in store.parents_of(mfs["uri"], mfs["sha256"])}
        # the byte ranges of the raw target MSs and of the h5parms, as the workers read them
        ranges = [
            a
            for nid, (kind, a) in store.run_rows(local_run["run"])[0].items()
            if kind == "entity" and a.get("byteRanges")
        ]
    assert {c["uri"] for c in local_run["corrected"]} <= parents
    assert set(local_run["raw"]["target"]) <= parents
    assert {h["uri"] for h in local_run["h5parms"]} <= parents
    assert set(local_run["raw"]["cal"]) <= parents  # through the h5parms
    read = {r["location"] for r in ranges}
    assert set(local_run["raw"]["target"]) <= read and {h["uri"] for h in local_run["h5parms"]} <= read


def same_products(run: dict[str, Any], ref: dict[str, Any]) -> None:
    assert run["checks"]["ok"], run["checks"]["lines"]
    assert [i["data_sha256"] for i in run["images"]] == [i["data_sha256"] for i in ref["images"]]
    for sol in ref["h5parms"]:
        a = solutions(Path(run["config"]).parent, sol["subband"])
        b = solutions(Path(ref["config"]).parent, sol["subband"])
        for tab in a:
            np.testing.assert_allclose(a[tab], b[tab], rtol=1e-6, atol=1e-9)


def demo(engine: str, where: Path) -> dict[str, Any]:
    """``skyplug demo --workflow --engine ENGINE`` as a user runs it; its JSON report."""
    out = subprocess.run(
        [SKYPLUG, "demo", "--workflow", "--engine", engine, "--dir", str(where), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "SKYPLUG_CACHE_DIR": str(where / "cache")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_demo_workflow_on_dask_gives_the_same_products(local_run: dict[str, Any], tmp_path: Path) -> None:
    same_products(demo("dask", tmp_path), local_run)


def test_demo_workflow_on_lithops_gives_the_same_products(local_run: dict[str, Any], tmp_path: Path) -> None:
    same_products(demo("lithops", tmp_path), local_run)


def test_workflow_on_s3_sites(s3env: Any, tmp_path: Path) -> None:
    sites = {name: {"type": s.type, **s.options} for name, s in s3env.config.sites.items()}
    # on Lithops: worker processes reach the sites with the credentials of their environment only
    run = taska.run_workflow(tmp_path, engine="lithops", sites=sites, subbands=2)
    assert run["checks"]["ok"], run["checks"]["lines"]
    lake = s3env.client("lake")
    listing = lake.list_objects_v2(Bucket=taska.BUCKET, Prefix=f"images/{run['run']}/")
    keys = {o["Key"] for o in listing["Contents"]}
    assert keys == {f"images/{run['run']}/{n}-image.fits" for n in ("SB226", "SB276", "MFS")}
    edge = s3env.client("edge")
    raw = edge.head_object(Bucket=taska.BUCKET, Key="raw/target/SB226.ms.zip")
    assert raw["ContentLength"] > 0
    for product in [*run["h5parms"], *run["images"]]:
        assert product["site"] == "lake"
    # credentials came from the environment: none in the config, the catalogue/provenance or the report
    secrets = [svc.secret_key for svc in s3env.services.values()]
    stored = (
        b"".join(p.read_bytes() for p in tmp_path.glob("catalog.db*"))
        + (tmp_path / "skyplug.toml").read_bytes()
    )
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret not in json.dumps(run)


def test_replay_from_image_reruns_imaging_only(local_run: dict[str, Any]) -> None:
    root = Path(local_run["config"]).parent
    imaging = {**taska.DEFAULTS["imaging"], "niter": 10000}
    argv = [
        SKYPLUG,
        "replay",
        local_run["run"],
        "--from",
        "image",
        "--set",
        f"image.imaging={json.dumps(imaging)}",
    ]
    out = subprocess.run(
        [*argv, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
        env={**os.environ, "SKYPLUG_CACHE_DIR": str(root / "cache"), "SKYPLUG_DATA_DIR": str(root / "data")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["rerun"] == ["image"]
    assert report["reused"] == ["calibrate", "correct"]
    new = root / "sites" / "lake" / taska.BUCKET / "images" / report["run"]
    assert sorted(p.name for p in new.iterdir()) == sorted(
        f"{i['name']}-image.fits" for i in local_run["images"]
    )
    from skyplug.plugins.provenance.store import open_store

    with open_store(f"sqlite:///{root / 'catalog.db'}") as store:
        nodes, rels = store.run_rows(report["run"])
        tools = [a["name"] for kind, a in nodes.values() if kind == "activity" and a.get("type") == "tool"]
        mfs = f"s3://{taska.BUCKET}/images/{report['run']}/MFS-image.fits"
        parents = {p["uri"] for p in store.parents_of(mfs)}
    assert tools.count("wsclean") == len(local_run["images"]) and "dp3" not in tools  # only imaging ran
    assert {c["uri"] for c in local_run["corrected"]} <= parents  # the old run's corrected MSs
    assert any(k == "wasInformedBy" for k, *_ in rels)
