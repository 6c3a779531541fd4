"""``skyplug demo`` shows the whole product: datasets, a sky:// replica, a job on an engine, the
provenance of a product, the catalogue over TAP; in its own folder, nothing left in the user's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from casacore import tables

from skyplug.core import provenance as pv
from skyplug.demo import SKY_URI, run_demo


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    root = tmp_path_factory.mktemp("demo") / "kept"
    lines: list[str] = []
    report = run_demo(root, echo=lines.append)
    return root, report, lines


def test_the_ms_is_replicated_to_the_lake_through_sky(kept: tuple[Path, dict, list[str]]) -> None:
    root, report, _ = kept
    rep = report["replication"]
    assert rep["uri"] == SKY_URI and rep["replicas"] == ["edge", "lake"]
    assert rep["read_order"][0] == "lake"  # the client runs at the lake: its own replica first
    copies = list((root / "sites" / "lake").rglob("SB226.ms.zip*"))
    original = root / "sites" / "edge" / "demo" / "SB226.ms.zip"
    assert len(copies) == 1 and copies[0].read_bytes() == original.read_bytes()


def test_a_job_on_an_engine_writes_valid_measurement_sets(kept: tuple[Path, dict, list[str]]) -> None:
    _, report, _ = kept
    job = report["job"]
    assert job["engine"] == "local" and job["partitions"] == 2 and job["bytes_fetched"] > 0
    ms = next(d for d in report["datasets"] if d["format"] == "ms")
    nrows = 0
    for out in job["outputs"]:
        with tables.table(out, ack=False) as t:  # casacore opens what the tasks wrote
            nrows += t.nrows()
    with tables.table(ms["outputs"][0], ack=False) as first:
        assert first.nrows() > 0
    assert nrows == ms["summary"]["rows"]  # the two parts hold every row of the MS


def test_the_provenance_of_a_product_names_its_sky_parent(kept: tuple[Path, dict, list[str]]) -> None:
    root, report, lines = kept
    prov = report["provenance"]
    assert prov["store"] == f"sqlite:///{root / 'provenance.db'}"
    assert {"uri": SKY_URI, "version": report["replication"]["version"]} in prov["derived_from"]
    assert any(SKY_URI in line and report["replication"]["version"] in line for line in lines)


def test_the_catalogue_links_the_product_and_the_tap_query_runs(kept: tuple[Path, dict, list[str]]) -> None:
    _, report, lines = kept
    assert len(report["catalogue"]["rows"]) == 6  # four datasets, the sky:// object, one product
    tap = report["tap"]
    assert tap["url"].startswith(tap["service"] + "/sync?") and tap["service"].startswith("http://127.0.0.1:")
    rows = {r["access_url"]: r for r in tap["rows"]}
    product = Path(report["job"]["outputs"][0]).as_uri()
    assert set(rows) == {"s3://demo/SB226.ms.zip", SKY_URI, product}  # the cone finds the MS records
    assert rows[product]["obs_creator_did"] == rows[SKY_URI]["obs_publisher_did"]
    assert all(r["s_fov"] > 0 for r in rows.values())
    assert any(tap["query"] in line for line in lines) and any(tap["url"] in line for line in lines)


def _tree(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


def test_the_cli_demo_leaves_the_users_folders_unchanged(tmp_path: Path) -> None:
    cache, data = tmp_path / "cache", tmp_path / "data"
    (cache / "index").mkdir(parents=True)
    (cache / "index" / "mine.json").write_text("{}")
    data.mkdir()
    before = _tree(cache), _tree(data)
    env = {**os.environ, "SKYPLUG_CACHE_DIR": str(cache), "SKYPLUG_DATA_DIR": str(data)}
    env.pop(pv.DB_ENV, None)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "skyplug.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    assert (_tree(cache), _tree(data)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data"]  # nothing in the cwd either
    work = re.search(r"edge=(\S+)/sites/edge", res.stdout)
    assert work and not Path(work.group(1)).exists()  # its temporary folder is gone
    assert "TAP service http://127.0.0.1:" in res.stdout and "derived from" in res.stdout
    print(f"skyplug demo: {seconds:.1f} s")
    assert seconds < 60  # ~3-4 s on the CI machine; a generous bound against load from others


def test_keep_leaves_what_it_made(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "skyplug.cli", "demo", "--keep", str(tmp_path / "look"), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    look = tmp_path / "look"
    for name in (
        "skyplug.toml",
        "catalog.db",
        "provenance.db",
        "multisite/locations.db",
        "out/job/part-0000.ms",
    ):
        assert (look / name).exists(), name


def test_run_demo_restores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pv.DB_ENV, f"sqlite:///{tmp_path / 'theirs.db'}")
    monkeypatch.setenv(pv.RUN_ENV, "run-theirs")
    run_demo(None, echo=None)
    assert os.environ[pv.DB_ENV] == f"sqlite:///{tmp_path / 'theirs.db'}"
    assert os.environ[pv.RUN_ENV] == "run-theirs"
    assert not (tmp_path / "theirs.db").exists()


def test_keep_refuses_a_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    res = subprocess.run(
        [sys.executable, "-m", "skyplug.cli", "demo", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0 and "not an empty folder" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
