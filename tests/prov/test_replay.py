"""Replay from a step: only what changed reruns (counted), and the new run points at the old one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyplug.cli import cli
from skyplug.core import provenance as pv
from skyplug.core.errors import ConfigError, NotFound
from skyplug.plugins.provenance.replay import replay
from skyplug.plugins.provenance.store import open_store
from tests.prov import pipeline_steps as steps


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv(pv.DB_ENV, url)
    monkeypatch.delenv(pv.RUN_ENV, raising=False)
    steps.CALLS.clear()
    return url


def _recorded_run(url: str) -> str:
    assert steps.pipeline(5, 2) == 20
    with open_store(url) as store:
        runs = [r["run"] for r in store.runs()]
    assert len(runs) == 1
    steps.CALLS.clear()
    return runs[0]


def test_steps_are_recorded_with_function_params_inputs_and_code(store_url: str) -> None:
    run = _recorded_run(store_url)
    with open_store(store_url) as store:
        recs = store.steps(run)
    assert [r["step"] for r in recs] == ["load", "scale", "total"]
    assert recs[1]["func"] == "tests.prov.pipeline_steps:scale"
    assert recs[1]["params"] == {"factor": 2}
    assert recs[1]["inputs"]["values"] == {"step": "load", "id": recs[0]["output"]}
    assert recs[1]["code"] == pv.code_version(steps.scale.__wrapped__)


def test_replay_from_step_2_with_a_changed_parameter_reruns_steps_2_and_3(store_url: str) -> None:
    run = _recorded_run(store_url)
    report = replay(run, "scale", {"scale": {"factor": 3}})
    assert steps.CALLS == ["scale", "total"]
    assert report.rerun == ["scale", "total"] and report.reused == ["load"]
    assert report.result == 30 and report.run != run
    with open_store(store_url) as store:
        _, rels = store.run_rows(report.run)
        old_roots = store.root_activities(run)
    assert any(k == "wasInformedBy" and o in old_roots for k, _, o, _ in rels)
    assert any(k == "wasDerivedFrom" and a.get("role") == "replayed" for k, _, _, a in rels)


def test_replay_with_nothing_changed_reruns_nothing(store_url: str) -> None:
    run = _recorded_run(store_url)
    for start in ("load", "scale", "total"):
        report = replay(run, start)
        assert report.rerun == [] and report.result == 20
    assert steps.CALLS == []


def test_a_replayed_run_can_be_replayed_again(store_url: str) -> None:
    run = _recorded_run(store_url)
    second = replay(run, "scale", {"scale": {"factor": 3}}).run
    steps.CALLS.clear()
    third = replay(second, "load")
    assert third.rerun == [] and third.result == 30 and steps.CALLS == []


def test_replay_cli_in_a_fresh_process_counts_reruns(store_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    run = _recorded_run(store_url)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PIPELINE_CALL_LOG": str(log), "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [
        sys.executable,
        "-m",
        "skyplug.cli",
        "replay",
        run,
        "--from",
        "scale",
        "--set",
        "scale.factor=3",
        "--json",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rerun"] == ["scale", "total"]
    assert log.read_text().split() == ["scale", "total"]


def test_replay_bad_input_is_one_clear_error(store_url: str) -> None:
    run = _recorded_run(store_url)
    with pytest.raises(NotFound, match="no step 'nope'"):
        replay(run, "nope")
    with pytest.raises(ConfigError, match=r"scale\.bogus"):
        replay(run, "scale", {"scale": {"bogus": 1}})
    result = CliRunner().invoke(cli, ["replay", run, "--from", "scale", "--set", "factor3"])
    assert result.exit_code != 0 and "step.key=value" in result.output + (result.stderr or "")


def test_replay_reruns_a_step_whose_remote_object_has_a_new_version(
    store_url: str, s3env, tmp_path: Path
) -> None:
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(12.0).reshape(6, 2))
    uri = s3env.upload(tmp_path / "a.npy", "obs/a.npy")
    assert steps.remote_pipeline(uri) == 132.0
    run = steps.RUNS[-1]
    with open_store(store_url) as store:
        [read] = store.steps(run)[0]["reads"]
    assert read["uri"] == uri and read["version"] and read["site"]["name"] == "edge"
    steps.CALLS.clear()
    unchanged = replay(run, "remote sum")
    assert unchanged.rerun == [] and steps.CALLS == []  # same version: nothing reruns
    np.save(tmp_path / "a.npy", np.ones((6, 2)))
    s3env.upload(tmp_path / "a.npy", "obs/a.npy")  # a new version (ETag) of the same URI
    changed = replay(run, "remote sum")
    assert changed.rerun == ["remote sum", "double"] and steps.CALLS == ["remote sum", "double"]
    assert changed.result == 24.0
    steps.CALLS.clear()
    again = replay(changed.run, "remote sum")  # the rerun recorded the new version
    assert again.rerun == [] and steps.CALLS == []


@pytest.mark.pg
def test_record_and_replay_on_postgresql(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pv.DB_ENV, pg_url)
    monkeypatch.delenv(pv.RUN_ENV, raising=False)
    steps.CALLS.clear()
    assert steps.pipeline(5, 2) == 20
    run = steps.RUNS[-1]
    report = replay(run, "scale", {"scale": {"factor": 3}})
    assert report.rerun == ["scale", "total"] and report.result == 30
    with open_store(pg_url) as store:
        assert [s["step"] for s in store.steps(report.run)] == ["load", "scale", "total"]
        with store.conn.cursor() as cur:  # leave the shared database as it was
            for table in ("prov_runs", "prov_nodes", "prov_relations", "prov_steps"):
                cur.execute(f"DELETE FROM {table} WHERE run IN (%s, %s)", (run, report.run))
