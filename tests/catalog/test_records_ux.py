"""Catalogue records that work: URLs as access_url, MS sky coverage from the primary beam (found by
ADQL cones over TAP with pyvo), derived products pointing at their parents, and the serve / --db UX."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skyplug.catalog.db import make_record, open_catalog
from skyplug.catalog.server import TapServer
from skyplug.catalog.service import catalog_url, record_for
from skyplug.cli import cli
from skyplug.core.dataset import Dataset
from skyplug.core.load import fetch_partition
from skyplug.synthetic.ms import make_ms

C = 299_792_458.0


@pytest.fixture(scope="module")
def ms_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ms(tmp_path_factory.mktemp("ms") / "SB100.ms", "tcsm", nant=6, ntime=8, nchan=8)


def _beam_fwhm_deg(ms: Path) -> tuple[float, float, float]:
    """(ra, dec, FWHM) in degrees from the MS itself, read with python-casacore: 1.02 lambda_max / D."""
    from casacore import tables

    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as t:
        freqs, widths = t.getcell("CHAN_FREQ", 0), np.abs(t.getcell("CHAN_WIDTH", 0))
    with tables.table(str(ms / "ANTENNA"), ack=False) as t:
        dish = float(np.median(t.getcol("DISH_DIAMETER")))
    with tables.table(str(ms / "FIELD"), ack=False) as t:
        ra, dec = t.getcell("PHASE_DIR", 0)[0]
    lam = C / float(np.min(freqs - widths / 2))
    return math.degrees(ra) % 360, math.degrees(dec), math.degrees(1.02 * lam / dish)


def test_ms_record_gets_fov_and_region_from_the_primary_beam(ms_path: Path) -> None:
    ra, dec, fwhm = _beam_fwhm_deg(ms_path)
    rec = record_for(str(ms_path))
    assert rec["s_fov"] == pytest.approx(fwhm, rel=1e-9)
    assert rec["s_ra"] == pytest.approx(ra) and rec["s_dec"] == pytest.approx(dec)
    assert rec["s_region"].startswith("POLYGON ICRS")


def test_access_url_is_a_url_never_a_bare_path(ms_path: Path) -> None:
    rec = record_for(str(ms_path))
    assert rec["access_url"] == ms_path.resolve().as_uri()
    assert rec["access_url"].startswith("file:///")
    odd = make_record({}, "/data/a #1%.ms", "1")
    assert odd["access_url"] == "file:///data/a%20%231%25.ms"  # a URL: reserved characters quoted
    for uri in ("s3://bucket/SB1.ms.zip", "sky://bucket/SB1.h5"):
        assert make_record({}, uri, "1")["access_url"] == uri


@pytest.fixture
def cone_tap(ms_path: Path, tmp_path: Path) -> Iterator[str]:
    """A TAP service over a catalogue holding the MS and a record on the other side of the sky."""
    with open_catalog(f"sqlite:///{tmp_path / 'cat.db'}") as cat:
        ms_rec = record_for(str(ms_path))
        far = make_record(
            {"s_ra": (ms_rec["s_ra"] + 180) % 360, "s_dec": -ms_rec["s_dec"], "s_fov": 1.0},
            "s3://bucket/far.fits",
            "1",
        )
        cat.add([ms_rec, far])
    cat = open_catalog(f"sqlite:///{tmp_path / 'cat.db'}")
    server = TapServer(cat, port=0, jobs_dir=tmp_path / "jobs", maxrec=100).start()
    yield server.url
    server.stop()
    cat.close()


def test_adql_cones_over_tap_find_the_ms(ms_path: Path, cone_tap: str) -> None:
    import pyvo

    ra, dec, fwhm = _beam_fwhm_deg(ms_path)
    svc = pyvo.dal.TAPService(cone_tap)
    inside = (ra + 0.3 * fwhm / math.cos(math.radians(dec))) % 360  # within the beam, off the centre
    found = svc.search(
        "SELECT access_url, s_fov FROM ivoa.obscore "
        f"WHERE 1 = CONTAINS(POINT('ICRS', {inside}, {dec}), s_region)"
    ).to_table()
    assert [str(u) for u in found["access_url"]] == [ms_path.resolve().as_uri()]
    touching = svc.search(
        "SELECT access_url FROM ivoa.obscore "
        f"WHERE 1 = INTERSECTS(CIRCLE('ICRS', {ra}, {dec + 0.5 * fwhm + 1.0}, 1.5), s_region)"
    ).to_table()
    assert ms_path.resolve().as_uri() in [str(u) for u in touching["access_url"]]
    away = svc.search(
        "SELECT access_url FROM ivoa.obscore "
        f"WHERE 1 = INTERSECTS(CIRCLE('ICRS', {ra}, {dec + 0.5 * fwhm + 5.0}, 1.0), s_region)"
    ).to_table()
    assert ms_path.resolve().as_uri() not in [str(u) for u in away["access_url"]]


def test_a_fetched_partition_points_at_its_parent(ms_path: Path, tmp_path: Path) -> None:
    parts = Dataset(str(ms_path)).plan("time", 2)
    product = Path(fetch_partition(parts[0], tmp_path / "out", "ms")["outputs"][0])
    with open_catalog(f"sqlite:///{tmp_path / 'cat.db'}") as cat:
        (parent,) = cat.add([record_for(str(ms_path))])
        (child,) = cat.add([record_for(str(product))])
        rows = cat.query(
            "SELECT obs_publisher_did, obs_creator_did FROM ivoa.obscore "
            f"WHERE obs_publisher_did = '{child['obs_publisher_did']}'"
        ).as_dicts()
    assert rows == [
        {"obs_publisher_did": child["obs_publisher_did"], "obs_creator_did": parent["obs_publisher_did"]}
    ]


def test_serve_without_a_catalogue_says_so(tmp_path: Path) -> None:
    for args, name in (
        (["--db", "missing.db"], "missing.db"),
        (["--db", "sqlite:///missing.db"], "missing.db"),
        ([], "catalog.db"),  # the default catalogue
    ):
        res = subprocess.run(
            [sys.executable, "-m", "skyplug.cli", "catalog", "serve", "--port", "0", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode != 0
        lines = (res.stdout + res.stderr).strip().splitlines()
        assert len(lines) == 1 and "no catalogue" in lines[0] and name in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_db_accepts_a_plain_path(ms_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["catalog", "add", str(ms_path), "--db", "cat.db", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cat.db").is_file()
    res = CliRunner().invoke(
        cli, ["catalog", "query", "SELECT access_url FROM ivoa.obscore", "--db", "cat.db", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert ms_path.resolve().as_uri() in res.output
    assert catalog_url("a%b.db") == f"sqlite:///{tmp_path}/a%25b.db"  # a URL: '%' quoted
    assert (
        catalog_url("sqlite:x.db") == "sqlite:x.db"
        and catalog_url("postgresql://h/db") == "postgresql://h/db"
    )


def test_fov_widens_over_several_fields_and_needs_dish_diameters() -> None:
    from skyplug.plugins.formats.ms.describe import describe

    index = {
        "spws": [{"freqs": [30e6, 40e6], "widths": [1e6, 1e6]}],
        "antennas": {"positions": [], "dish_diameters": [25.0, 25.0, 25.0]},
        "fields": [
            {"name": "A", "phase_dir": [0.0, 0.0]},
            {"name": "B", "phase_dir": [math.radians(4), 0.0]},
        ],
    }
    fwhm = math.degrees(1.02 * (C / 29.5e6) / 25.0)  # the lowest channel's lower edge
    assert describe(index)["s_fov"] == pytest.approx(fwhm + 2 * 4.0)
    index["antennas"]["dish_diameters"] = []
    assert "s_fov" not in describe(index)
    assert make_record(describe(index), "s3://b/k", "1")["s_region"] is None


def test_serve_of_an_empty_catalogue_warns_and_serves(tmp_path: Path) -> None:
    with open_catalog(f"sqlite:///{tmp_path / 'empty.db'}") as cat:
        cat.add([])
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyplug.cli", "catalog", "serve", "--port", "0", "--db", "empty.db"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, proc.kill)  # a server that never speaks fails the test, never hangs it
    watchdog.start()
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(2)]  # the warning, then the address served
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=30)
    assert "empty.db holds no records yet" in lines[0] and "warning" in lines[0]
    assert "skyplug TAP service at http://127.0.0.1:" in lines[1]
