"""``--workers N``: sync queries run on worker processes, with the same answers, errors and limits."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from astropy.io.votable import parse

from skyplug.catalog.db import open_catalog
from skyplug.catalog.server import TapServer


@pytest.fixture(scope="module")
def two_workers(backend_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TapServer]:
    cat = open_catalog(backend_url)
    server = TapServer(cat, port=0, jobs_dir=Path(tmp_path_factory.mktemp("wjobs")), workers=2).start()
    yield server
    server.stop()
    cat.close()


TOP3 = "SELECT TOP 3 obs_id FROM ivoa.obscore"
CONE = (
    "SELECT obs_publisher_did FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 30, 10, 10))"
)


def test_workers_answer_like_the_server(two_workers: TapServer, tap_url: str) -> None:
    pool = two_workers.service.pool
    assert pool is not None
    pids = {p.pid for p in pool.pool._processes.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    sets = []
    for url in (two_workers.url, tap_url):
        r = requests.post(f"{url}/sync", data={"LANG": "ADQL", "QUERY": CONE}, timeout=60)
        assert r.status_code == 200
        sets.append(set(parse(io.BytesIO(r.content)).get_first_table().array["obs_publisher_did"]))
    assert sets[0] == sets[1] and len(sets[0]) > 10


def test_workers_errors_and_async(two_workers: TapServer) -> None:
    url = two_workers.url
    bad = requests.post(f"{url}/sync", data={"LANG": "ADQL", "QUERY": "SELEKT 1"}, timeout=60)
    assert bad.status_code == 400 and b'value="ERROR"' in bad.content
    missing = requests.post(
        f"{url}/sync", data={"LANG": "ADQL", "QUERY": "SELECT nosuch FROM ivoa.obscore"}, timeout=60
    )
    assert missing.status_code == 400 and b"nosuch" in missing.content
    td = requests.post(
        f"{url}/sync",
        data={"LANG": "ADQL", "QUERY": TOP3, "RESPONSEFORMAT": "votable/td"},
        timeout=60,
    )
    assert b"<TABLEDATA>" in td.content and len(parse(io.BytesIO(td.content)).get_first_table().array) == 3
    # async jobs still run in the server process
    r = requests.post(
        f"{url}/async",
        data={"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM ivoa.obscore", "PHASE": "RUN"},
        allow_redirects=False,
        timeout=60,
    )
    job = r.headers["Location"]
    requests.get(job, params={"WAIT": "20", "PHASE": "EXECUTING"}, timeout=60)
    requests.get(job, params={"WAIT": "20", "PHASE": "QUEUED"}, timeout=60)
    assert requests.get(f"{job}/phase", timeout=60).text == "COMPLETED"
    result = requests.get(f"{job}/results/result", timeout=60).content
    assert int(parse(io.BytesIO(result)).get_first_table().array["n"][0]) == 2000
