"""GAVO DaCHS over the same rows as skyplug's PostgreSQL catalogue, for bench_tap.py --dachs.

A bench dependency only (Debian ``gavodachs2-server``, configured as in dachs_anchor.md). The rows are
copied out of skyplug's catalogue (COPY, regions as pgSphere radians) into a DaCHS resource
``skyplug/q`` whose table mixes in ``//obscore#publishObscoreLike``, with the spoint GiST index
(clustered), the q3c index DaCHS's obscore translation expects (else its cones seq-scan), and
t_min/t_max/obs_publisher_did btrees. ``stop()`` stops DaCHS and its PostgreSQL cluster.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

GAVO_RC = Path("/etc/gavo.rc")
INPUTS = Path("/var/gavo/inputs/skyplug")
# the columns of DaCHS's //obscore#obscore-columns stream that skyplug's ivoa.obscore also has
DACHS_COLUMNS = (
    "dataproduct_type",
    "dataproduct_subtype",
    "calib_level",
    "obs_collection",
    "obs_id",
    "obs_title",
    "obs_publisher_did",
    "obs_creator_did",
    "access_url",
    "access_format",
    "access_estsize",
    "target_name",
    "target_class",
    "s_ra",
    "s_dec",
    "s_fov",
    "s_region",
    "s_resolution",
    "t_min",
    "t_max",
    "t_exptime",
    "t_resolution",
    "em_min",
    "em_max",
    "em_res_power",
    "o_ucd",
    "pol_states",
    "facility_name",
    "instrument_name",
    "s_xel1",
    "s_xel2",
    "t_xel",
    "em_xel",
    "pol_xel",
    "s_pixel_scale",
    "em_ucd",
)

RD = """<resource schema="skyplug">
  <meta name="title">skyplug bench rows</meta>
  <meta name="description">The synthetic ObsCore rows of skyplug's TAP benchmark.</meta>
  <meta name="creationDate">2026-12-03T00:00:00</meta>
  <meta name="subject">benchmark</meta>
  <meta name="creator.name">skyplug</meta>
  <table id="main" onDisk="True" adql="True" mixin="//obscore#publishObscoreLike">
    <FEED source="//obscore#obscore-columns"/>
    <FEED source="//scs#spoint-index-def" ra="s_ra" dec="s_dec"/>
    <index columns="s_ra,s_dec" name="q3c_main">q3c_ang2ipix(s_ra,s_dec)</index>
    <index columns="t_min"/>
    <index columns="t_max"/>
    <index columns="obs_publisher_did"/>
  </table>
  <data id="import">
    <make table="main">
      <script type="preIndex" lang="SQL" name="copy skyplug rows">
        COPY \\qName ({cols}) FROM '{csv}' WITH (FORMAT csv)
      </script>
    </make>
  </data>
</resource>
"""


def _sh(*cmd: str, timeout: float = 1800) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()[-2000:] or proc.stdout[-2000:]}")
    return proc.stdout


def _psql(sql: str, db: str = "gavo") -> str:
    return _sh("su", "postgres", "-c", f'psql -v ON_ERROR_STOP=1 -qAt -d {db} -c "{sql}"')


def start(pg_url: str, skyplug_columns: list[str], port: int = 8089) -> tuple[str, dict[str, float]]:
    """Load the rows of the skyplug catalogue at ``pg_url`` into DaCHS and serve it; its TAP URL and times."""
    import psycopg

    times: dict[str, float] = {}
    subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True, timeout=60)
    if not GAVO_RC.exists():
        GAVO_RC.write_text(
            f"[web]\nserverURL: http://127.0.0.1:{port}\nbindAddress: 127.0.0.1\nserverPort: {port}\n"
            "sitename: skyplug bench\n\n[ivoa]\nauthority: bench.test\n"
        )
    t0 = time.perf_counter()
    _sh("dachs", "imp", "//obscore")
    cols = [c for c in DACHS_COLUMNS if c in skyplug_columns]
    INPUTS.mkdir(parents=True, exist_ok=True)
    csv = INPUTS / "rows.csv"
    with psycopg.connect(pg_url) as conn, conn.cursor() as cur, csv.open("wb") as out:
        cur.execute("SELECT set_sphere_output('RAD')")
        with cur.copy(f"COPY (SELECT {', '.join(cols)} FROM ivoa.obscore) TO STDOUT WITH (FORMAT csv)") as cp:
            for chunk in cp:
                out.write(chunk)
    csv.chmod(0o644)
    times["export_seconds"] = round(time.perf_counter() - t0, 1)
    _psql("GRANT pg_read_server_files TO gavoadmin")
    (INPUTS / "q.rd").write_text(RD.format(cols=", ".join(cols), csv=csv))
    t0 = time.perf_counter()
    _sh("dachs", "imp", "skyplug/q")
    times["import_seconds"] = round(time.perf_counter() - t0, 1)
    csv.unlink()
    subprocess.run(["dachs", "serve", "stop"], capture_output=True, timeout=60)
    _sh("dachs", "serve", "start")
    base = f"http://127.0.0.1:{port}/tap"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/availability", timeout=2).ok:
                return base, times
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("DaCHS did not answer /tap/availability within 60 s")


def version() -> str:
    return _sh("dpkg-query", "-W", "-f", "${Version}", "gavodachs2-server")


def stop() -> None:
    """Stop DaCHS and the PostgreSQL cluster it uses (the project's tools/pg.py clusters are apart)."""
    subprocess.run(["dachs", "serve", "stop"], capture_output=True, timeout=60)
    subprocess.run(["pg_ctlcluster", "15", "main", "stop"], capture_output=True, timeout=120)
