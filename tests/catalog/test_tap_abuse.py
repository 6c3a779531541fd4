"""The TAP service under abuse: every hostile request gets a VOTable error in bounded time and CPU.

The service runs as ``skyplug catalog serve`` in its own process on a free port of 127.0.0.1, so its
CPU time can be read from /proc around each request; the statement timeout is 2 s.
"""

from __future__ import annotations

import io
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from astropy.io.votable import parse

from skyplug.catalog import tap, uws

TIMEOUT = 2.0
TICK = os.sysconf("SC_CLK_TCK")
CONE = (
    "SELECT TOP 20 obs_id, s_ra, s_dec FROM ivoa.obscore WHERE "
    "1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 10.0, 10.0, 10.0))"
)
HEAVY = "SELECT COUNT(*) AS n FROM ivoa.obscore AS a, ivoa.obscore AS b, ivoa.obscore AS c"
BASE = "SELECT obs_id FROM ivoa.obscore WHERE "
ABUSE = {
    "in-list-8000": BASE + "obs_id IN (" + ",".join(f"'{i}'" for i in range(8000)) + ")",
    "polygon-20000": BASE
    + "1 = INTERSECTS(s_region, POLYGON('ICRS', "
    + ",".join(f"{i % 360}.0, {i % 170 - 85}.0" for i in range(20000))
    + "))",
    "or-chain-1MB": BASE + " OR ".join("s_ra > 1" for _ in range(110_000)),
    "or-chain-32KB": BASE + " OR ".join("s_ra > s_dec" for _ in range(2000)),
    "parentheses-60": BASE + "(" * 60 + "s_ra > 1" + ")" * 60,
    "integer-2^64": BASE + "s_ra > 18446744073709551616",
    "glob": "SELECT obs_id FROM ivoa.obscore WHERE glob('a*', obs_id) = 1",
    "glob-operator": BASE + "obs_id GLOB 'a*'",
    "polygon-2-vertices": BASE + "1 = INTERSECTS(s_region, POLYGON('ICRS', 1.0, 2.0, 3.0, 4.0))",
    "cross-join": HEAVY,
}


@dataclass
class Served:
    url: str
    pid: int

    def cpu(self) -> float:
        """Seconds of CPU (user + system) the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


@pytest.fixture(scope="module")
def served(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("abuse")
    cfg = root / "skyplug.toml"
    cfg.write_text(f'[catalog]\nurl = "{sqlite_url}"\ntimeout = {TIMEOUT}\nmaxrec = 1000\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyplug.cli", "--config", str(cfg), "catalog", "serve", "--port", "0",
         "--jobs", str(root / "jobs")],
        stderr=subprocess.PIPE, text=True, cwd=root,
    )  # fmt: skip
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert "TAP service at " in line, line
        url = line.split("TAP service at ", 1)[1].split()[0]
        yield Served(url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _status(body: bytes) -> tuple[str, str]:
    vot = parse(io.BytesIO(body))
    info = [i for r in vot.resources for i in r.infos if i.name == "QUERY_STATUS"]
    return info[0].value, str(info[0].content or "")


def sync(served: Served, query: str, session: requests.Session | None = None) -> requests.Response:
    data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}
    return (session or requests).post(f"{served.url}/sync", data=data, timeout=30)


@pytest.mark.parametrize("name", sorted(ABUSE))
def test_abuse_answered_with_a_votable_error_in_bounded_time_and_cpu(served: Served, name: str) -> None:
    cpu0, t0 = served.cpu(), time.monotonic()
    r = sync(served, ABUSE[name])
    wall, cpu = time.monotonic() - t0, served.cpu() - cpu0
    status, message = _status(r.content)
    assert r.status_code in (400, 413, 500) and status == "ERROR" and message, (r.status_code, message)
    assert wall < TIMEOUT + 2.0, f"{name}: {wall:.2f} s"
    if name == "cross-join":  # it ran, and was stopped by the statement timeout
        assert "timeout" in message and cpu < TIMEOUT + 1.0
    else:  # refused before any database work
        assert cpu < 0.5, f"{name}: {cpu:.2f} s of server CPU"
    assert sync(served, CONE).status_code == 200  # the server is still there


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("glob", "GLOB is not part of ADQL"),
        ("polygon-2-vertices", "POLYGON needs at least three vertices"),
        ("integer-2^64", "out of range"),
        ("parentheses-60", "parentheses deep"),
        ("in-list-8000", "bytes; at most"),
    ],
)
def test_abuse_messages_say_why(served: Served, name: str, match: str) -> None:
    assert match in _status(sync(served, ABUSE[name]).content)[1]


def _job(served: Served, query: str, **extra: str) -> requests.Response:
    data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, **extra}
    return requests.post(f"{served.url}/async", data=data, allow_redirects=False, timeout=30)


def _phase(job_url: str) -> str:
    return requests.get(f"{job_url}/phase", timeout=30).text


def _wait_phase(job_url: str, phases: set[str], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        phase = _phase(job_url)
        if phase in phases:
            return phase
        time.sleep(0.05)
    return _phase(job_url)


def _delete_all(served: Served) -> None:
    listing = requests.get(f"{served.url}/async", timeout=30).text
    for job_id in {p.split('"')[0] for p in listing.split('jobref id="')[1:]}:
        requests.delete(f"{served.url}/async/{job_id}", allow_redirects=False, timeout=30)


def test_async_jobs_run_under_the_statement_timeout(served: Served) -> None:
    r = _job(served, HEAVY, PHASE="RUN")
    job = r.headers["Location"]
    try:
        assert requests.get(f"{job}/executionduration", timeout=30).text == str(int(TIMEOUT))
        t0 = time.monotonic()
        assert _wait_phase(job, {"ERROR", "COMPLETED"}, 20) == "ERROR"
        assert time.monotonic() - t0 < TIMEOUT + 2.0
        assert "timeout" in _status(requests.get(f"{job}/error", timeout=30).content)[1]
    finally:
        _delete_all(served)


def test_abort_stops_the_running_query(served: Served) -> None:
    job = _job(served, HEAVY, PHASE="RUN").headers["Location"]
    try:
        assert _wait_phase(job, {"EXECUTING"}, 10) == "EXECUTING"
        time.sleep(0.3)
        requests.post(f"{job}/phase", data={"PHASE": "ABORT"}, allow_redirects=False, timeout=30)
        assert _phase(job) == "ABORTED"
        time.sleep(0.3)  # the interrupt is seen within one progress-handler step
        cpu0 = served.cpu()
        time.sleep(1.0)
        assert served.cpu() - cpu0 < 0.2  # nothing runs on: the statement was interrupted
    finally:
        _delete_all(served)


def test_job_count_and_parameter_size_are_limited(served: Served) -> None:
    try:
        big = _job(served, BASE + " OR ".join("s_ra > 1" for _ in range(110_000)))
        assert big.status_code == 413 and _status(big.content)[0] == "ERROR"
        assert "jobref" not in requests.get(f"{served.url}/async", timeout=30).text  # nothing stored
        codes = [_job(served, CONE).status_code for _ in range(uws.MAX_JOBS_PER_CLIENT + 5)]
        assert codes[: uws.MAX_JOBS_PER_CLIENT] == [303] * uws.MAX_JOBS_PER_CLIENT
        assert set(codes[uws.MAX_JOBS_PER_CLIENT :]) == {429}
        refused = _job(served, CONE)
        assert "too many jobs" in _status(refused.content)[1]
    finally:
        _delete_all(served)


def test_running_jobs_per_client_are_limited(served: Served) -> None:
    try:
        jobs = [_job(served, HEAVY).headers["Location"] for _ in range(uws.MAX_ACTIVE_JOBS_PER_CLIENT + 1)]
        for job in jobs[:-1]:
            r = requests.post(f"{job}/phase", data={"PHASE": "RUN"}, allow_redirects=False, timeout=30)
            assert r.status_code == 303
        r = requests.post(f"{jobs[-1]}/phase", data={"PHASE": "RUN"}, allow_redirects=False, timeout=30)
        assert r.status_code == 429 and "already runs" in _status(r.content)[1]
    finally:
        _delete_all(served)


def _latencies(served: Served, n: int) -> list[float]:
    with requests.Session() as s:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert sync(served, CONE, s).status_code == 200
            times.append(time.perf_counter() - t0)
    return times


ABUSER = """
import sys, requests
from tests.catalog.test_tap_abuse import ABUSE, Served, sync
served = Served(sys.argv[1], 0)
with requests.Session() as s:
    while True:
        for name, q in ABUSE.items():
            if name != "cross-join":
                sync(served, q, s)
"""


STARVED = 5.0  # seconds: a cone query this slow waited behind the abuse (idle: a few ms)


def test_normal_query_latency_while_abuse_runs(served: Served) -> None:
    """Two clients flood the refusals while two heavy jobs run: every cone query is still answered
    at once (none waits behind the abuse). The latency ratio is printed, not asserted: timings on a
    shared machine belong to the benchmark (bench/bench_tap.py), never to a unit test's verdict.

    Idle and loaded samples alternate in rounds (the flooding processes are paused with SIGSTOP
    between), so the shared machine's drifting load falls on both alike. The flooders are separate
    processes at nice 19: they stand in for clients on other machines.
    """
    root = Path(__file__).resolve().parents[2]
    _latencies(served, 5)  # warm up
    abusers = [
        subprocess.Popen(
            ["nice", "-n", "19", sys.executable, "-c", ABUSER, served.url],
            cwd=root,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    idle: list[float] = []
    loaded: list[float] = []
    busy = []
    try:
        for proc in abusers:
            proc.send_signal(signal.SIGSTOP)
        for _ in range(4):
            idle += _latencies(served, 12)
            heavy = [_job(served, HEAVY, PHASE="RUN").headers["Location"] for _ in range(2)]
            for proc in abusers:
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.2)
            cpu0, t0 = served.cpu(), time.monotonic()
            loaded += _latencies(served, 12)
            busy.append((served.cpu() - cpu0) / (time.monotonic() - t0))
            assert all(_phase(job) in ("EXECUTING", "ERROR") for job in heavy)
            for proc in abusers:
                proc.send_signal(signal.SIGSTOP)
            _delete_all(served)
    finally:
        for proc in abusers:
            proc.kill()
            proc.wait(timeout=10)
        _delete_all(served)
    p_idle, p_loaded = statistics.median(idle), statistics.median(loaded)
    print(
        f"cone p50 idle {p_idle * 1000:.1f} ms, under abuse {p_loaded * 1000:.1f} ms, "
        f"server {statistics.mean(busy):.2f} cores"
    )
    assert len(loaded) == 48 and max(loaded) < STARVED, f"slowest cone under abuse {max(loaded):.2f} s"


def test_concurrent_queries_per_client_are_limited(served: Served) -> None:
    from concurrent.futures import ThreadPoolExecutor

    n = tap.MAX_QUERIES_PER_CLIENT + 2
    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(lambda _: sync(served, HEAVY), range(n)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(429) >= 2 and set(codes) <= {429, 500}  # 500: stopped by the statement timeout
    refused = next(r for r in responses if r.status_code == 429)
    assert "already runs" in _status(refused.content)[1]
