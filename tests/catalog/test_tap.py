"""The TAP service through pyvo and plain HTTP, on both backends."""

from __future__ import annotations

import io
import time

import pytest
import requests
from astropy.io.votable import parse

pyvo = pytest.importorskip("pyvo")

CONE = (
    "SELECT TOP 20 obs_id, s_ra, s_dec, s_region FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 10.0, 10.0, 10.0))"
)


def test_pyvo_run_sync(tap_url: str) -> None:
    result = pyvo.dal.TAPService(tap_url).run_sync(CONE)
    table = result.to_table()
    assert 0 < len(table) <= 20
    assert table["s_ra"].unit == "deg"
    assert str(table["s_region"][0]).startswith("POLYGON ICRS")


def test_pyvo_run_async(tap_url: str) -> None:
    table = pyvo.dal.TAPService(tap_url).run_async("SELECT COUNT(*) AS n FROM ivoa.obscore").to_table()
    assert int(table["n"][0]) == 2000


def test_pyvo_tables_and_capabilities(tap_url: str) -> None:
    svc = pyvo.dal.TAPService(tap_url)
    names = [t.name for t in svc.tables]
    assert {"ivoa.obscore", "ivoa.obscore_radio", "TAP_SCHEMA.columns"} <= set(names)
    cols = {c.name: c for c in svc.tables["ivoa.obscore"].columns}
    assert cols["em_min"].unit == "m" and cols["t_min"].ucd == "time.start;obs.exposure"
    assert svc.maxrec == 1000 and svc.hardlimit >= 1000


def test_pyvo_error_is_dal_query_error(tap_url: str) -> None:
    svc = pyvo.dal.TAPService(tap_url)
    with pytest.raises(pyvo.dal.DALQueryError, match="unknown column"):
        svc.run_sync("SELECT nope FROM ivoa.obscore")
    with pytest.raises(pyvo.dal.DALQueryError, match="only SELECT"):
        svc.run_sync("DELETE FROM ivoa.obscore")


def test_maxrec_overflow(tap_url: str) -> None:
    r = requests.post(
        f"{tap_url}/sync",
        data={
            "REQUEST": "doQuery",
            "LANG": "ADQL",
            "MAXREC": "5",
            "QUERY": "SELECT obs_id FROM ivoa.obscore",
        },
        timeout=30,
    )
    vot = parse(io.BytesIO(r.content))
    assert len(vot.get_first_table().array) == 5
    assert [i.value for i in vot.resources[0].infos if i.name == "QUERY_STATUS"] == ["OK", "OVERFLOW"]


@pytest.mark.parametrize(
    "fmt, ctype",
    [
        ("csv", "text/csv"),
        ("json", "application/json"),
        ("votable", "application/x-votable+xml"),
        ("votable/td", "application/x-votable+xml;serialization=TABLEDATA"),
        ("votable/b2", "application/x-votable+xml;serialization=BINARY2"),
    ],
)
def test_response_formats_get(tap_url: str, fmt: str, ctype: str) -> None:
    r = requests.get(
        f"{tap_url}/sync",
        params={"LANG": "ADQL", "RESPONSEFORMAT": fmt, "QUERY": "SELECT TOP 3 obs_id FROM ivoa.obscore"},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype)
    if fmt == "csv":
        assert r.text.splitlines()[0] == "obs_id" and len(r.text.splitlines()) == 4
    if fmt == "json":
        assert len(r.json()["data"]) == 3
    if fmt.startswith("votable"):
        assert len(parse(io.BytesIO(r.content)).get_first_table().array) == 3
        assert (b"<TABLEDATA>" in r.content) == (fmt == "votable/td")


def test_error_document(tap_url: str) -> None:
    r = requests.get(f"{tap_url}/sync", params={"LANG": "ADQL", "QUERY": "SELECT FROM WHERE"}, timeout=30)
    assert r.status_code == 400
    info = parse(io.BytesIO(r.content)).resources[0].infos[0]
    assert (info.name, info.value) == ("QUERY_STATUS", "ERROR") and "syntax" in info.content
    r = requests.get(f"{tap_url}/sync", params={"QUERY": "SELECT TOP 1 obs_id FROM ivoa.obscore"}, timeout=30)
    assert r.status_code == 400 and b"LANG" in r.content


def test_uws_lifecycle(tap_url: str) -> None:
    s = requests.Session()
    r = s.post(
        f"{tap_url}/async",
        data={"LANG": "ADQL", "QUERY": "SELECT TOP 2 obs_id FROM ivoa.obscore"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 303
    job = r.headers["Location"]
    assert s.get(f"{job}/phase", timeout=30).text == "PENDING"
    assert s.post(f"{job}/phase", data={"PHASE": "RUN"}, allow_redirects=False, timeout=30).status_code == 303
    xml = s.get(job, params={"WAIT": "10"}, timeout=30).text
    deadline = time.time() + 10
    while s.get(f"{job}/phase", timeout=30).text not in ("COMPLETED", "ERROR") and time.time() < deadline:
        time.sleep(0.05)
    assert s.get(f"{job}/phase", timeout=30).text == "COMPLETED"
    assert "<uws:jobId>" in xml
    result = s.get(f"{job}/results/result", timeout=30).content
    assert len(parse(io.BytesIO(result)).get_first_table().array) == 2
    assert 'id="result"' in s.get(f"{job}/results", timeout=30).text
    assert s.delete(job, allow_redirects=False, timeout=30).status_code == 303
    assert s.get(job, timeout=30).status_code == 404


def test_uws_error_job(tap_url: str) -> None:
    svc = pyvo.dal.TAPService(tap_url)
    job = svc.submit_job("SELECT nope FROM ivoa.obscore")
    job.run()
    job.wait(phases={"COMPLETED", "ERROR", "ABORTED"}, timeout=20)
    assert job.phase == "ERROR"
    r = requests.get(f"{job.url}/error", timeout=30)
    assert b"unknown column" in r.content
    job.delete()


def test_jobs_survive_a_restart(backend_url: str, tmp_path) -> None:
    from skyplug.catalog.db import open_catalog
    from skyplug.catalog.server import TapServer

    cat = open_catalog(backend_url)
    server = TapServer(cat, jobs_dir=tmp_path).start()
    job = pyvo.dal.TAPService(server.url).submit_job("SELECT TOP 1 obs_id FROM ivoa.obscore")
    job.run()
    job.wait(phases={"COMPLETED", "ERROR", "ABORTED"}, timeout=20)
    assert len(job.fetch_result().to_table()) == 1
    server.stop()
    server = TapServer(cat, jobs_dir=tmp_path).start()
    try:
        listing = requests.get(f"{server.url}/async", timeout=30).text
        assert f'id="{job.job_id}"' in listing and "COMPLETED" in listing
        assert len(pyvo.dal.AsyncTAPJob(f"{server.url}/async/{job.job_id}").fetch_result().to_table()) == 1
    finally:
        server.stop()
        cat.close()


def test_vosi_documents(tap_url: str) -> None:
    assert "<vosi:available>true</vosi:available>" in requests.get(f"{tap_url}/availability", timeout=30).text
    caps = requests.get(f"{tap_url}/capabilities", timeout=30).text
    assert "ivo://ivoa.net/std/ObsCore#core-1.1" in caps and "<form>CONTAINS</form>" in caps
    ex = requests.get(f"{tap_url}/examples", timeout=30).text
    assert 'property="query"' in ex
    one = requests.get(f"{tap_url}/tables/ivoa.obscore_radio", timeout=30).text
    assert "uv_distance_max" in one
