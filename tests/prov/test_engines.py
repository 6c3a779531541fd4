"""What engine tasks read through skyplug is recorded in the run of the activity that started them."""

from __future__ import annotations

from pathlib import Path

import pytest

import skyplug
from skyplug.core import plugins
from skyplug.core import provenance as pv
from skyplug.plugins.provenance.store import open_store, store_url
from tests.prov import pipeline_steps as steps


@pytest.fixture
def remote_parts(s3env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    from skyplug.synthetic.ms import make_ms

    monkeypatch.setenv(pv.DB_ENV, f"sqlite:///{tmp_path / 'catalog.db'}")
    monkeypatch.delenv(pv.RUN_ENV, raising=False)
    uri = s3env.upload(make_ms(tmp_path / "vis.ms", nant=4, ntime=6, nchan=8), "obs/vis.ms")
    return skyplug.open(uri).plan("time", 3)


def _check(act: pv.Activity, parts: list, engine: str) -> None:
    with open_store(store_url()) as store:
        assert [r["run"] for r in store.runs()] == [act.run]  # the workers recorded into the same run
        nodes, rels = store.run_rows(act.run)
    tasks = {i for i, (k, a) in nodes.items() if k == "activity" and a["name"] == "partition columns"}
    assert len(tasks) == len(parts)
    # each task is associated with the engine that ran it (the engine says so, the core guesses nothing)
    agent = f"agent-engine-{engine}"
    assert nodes[agent] == ("agent", {"name": f"skyplug engine {engine}", "agent_type": "SoftwareAgent"})
    assert all(("wasAssociatedWith", t, agent) in {(k, s, o) for k, s, o, _ in rels} for t in tasks)
    assert all(("wasInformedBy", t, act.id) in {(k, s, o) for k, s, o, _ in rels} for t in tasks)
    used = {o for k, s, o, _ in rels if k == "used" and s in tasks}
    assert used == {"e-" + pv.content_id(p.uri, p.version, p.ranges) for p in parts}


def test_local_engine_tasks_are_recorded(remote_parts: list) -> None:
    with skyplug.activity("columns", params={"engine": "local"}) as act:
        out = plugins.find("engines", "local").map(
            steps.partition_columns, [p.to_json() for p in remote_parts], progress=False
        )
    assert len(out) == 3 and all(n > 0 for n in out)
    _check(act, remote_parts, "local")


def test_dask_worker_tasks_are_recorded(remote_parts: list) -> None:
    import distributed

    with (
        skyplug.activity("columns", params={"engine": "dask"}) as act,
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        out = plugins.find("engines", "dask").map(
            steps.partition_columns, [p.to_json() for p in remote_parts], progress=False
        )
    assert len(out) == 3 and all(n > 0 for n in out)
    _check(act, remote_parts, "dask")


LITHOPS_SCRIPT = """
import json, sys
import skyplug
from skyplug.core import plugins
from skyplug.core.partition import Partition
from tests.prov import pipeline_steps as steps

parts = [Partition.from_json(line) for line in sys.stdin.read().splitlines()]
with skyplug.activity("columns", params={{"engine": "lithops"}}) as act:
    engine = plugins.find("engines", "lithops")
    out = engine.map(steps.partition_columns, [p.to_json() for p in parts], progress=False)
print(json.dumps({{"run": act.run, "id": act.id, "out": out}}))
"""


def test_lithops_localhost_tasks_are_recorded(
    remote_parts: list, s3env, tmp_path: Path, lithops_sandbox
) -> None:
    import json
    import subprocess
    import sys

    toml = ['default_site = "edge"']
    for name, site in s3env.config.sites.items():
        where = site.settings
        toml += [f"[sites.{name}]", f'type = "s3"\nendpoint = "{where.endpoint}"\nregion = "{where.region}"']
    work = tmp_path / "work"
    work.mkdir()
    (work / "skyplug.toml").write_text("\n".join(toml) + "\n")
    env = lithops_sandbox.env(PYTHONPATH=str(Path(__file__).parents[2]))
    done = subprocess.run(
        [sys.executable, "-c", LITHOPS_SCRIPT.format()],
        input="\n".join(p.to_json() for p in remote_parts),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lithops_sandbox.assert_clean()
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert len(got["out"]) == 3
    _check(pv.Activity(name="columns", run=got["run"], id=got["id"]), remote_parts, "lithops")


WRITER = """
import sys
from skyplug.core import provenance as pv

for i in range(int(sys.argv[1])):
    with pv.activity(f"task {i}"):
        pass
"""


def test_worker_processes_share_a_sqlite_store_without_lock_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four processes recording at once into one file: WAL, writers queue on the busy timeout."""
    import os
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "prov.db"
    monkeypatch.setenv(pv.DB_ENV, f"sqlite:///{db}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, "25"], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4 and not any("locked" in e for e in errors), errors
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT COUNT(*) FROM prov_nodes WHERE kind = 'activity'").fetchone() == (100,)
