"""A fetch of a remote MS partition leaves a run naming the object (URI + ETag) and its byte ranges;
its PROV-JSON, PROV-XML and PROV-O serialisations round-trip; no secret is ever recorded."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import skyplug
from skyplug.cli import cli
from skyplug.core import provenance as pv
from skyplug.plugins.provenance.store import open_store

CANARY = "canary-Secr3t-7f1d"


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv(pv.DB_ENV, url)
    monkeypatch.setenv("PIPELINE_API_TOKEN", CANARY)  # a secret in the environment
    monkeypatch.delenv(pv.RUN_ENV, raising=False)
    return url


@pytest.fixture
def remote_ms(s3env, tmp_path: Path) -> str:
    from skyplug.synthetic.ms import make_ms

    return s3env.upload(make_ms(tmp_path / "vis.ms", nant=4, ntime=6, nchan=8), "obs/vis.ms")


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.stdout


def _entity_at(url: str, path: Path) -> str:
    """The id of the entity recorded for a written product."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    ids = {
        i
        for i, a in conn.execute("SELECT id, attrs FROM prov_nodes")
        if json.loads(a).get("location") == str(path)
    }
    assert len(ids) == 1, ids
    return ids.pop()


def _only_run(url: str) -> str:
    with open_store(url) as store:
        runs = store.runs()
    assert len(runs) == 1, runs
    return runs[0]["run"]


def test_fetch_records_object_etag_and_byte_ranges(store_url: str, remote_ms: str, tmp_path: Path) -> None:
    run(
        "fetch",
        remote_ms,
        "--by",
        "time",
        "-n",
        "2",
        "--only",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--as",
        "npz",
    )
    run_id = _only_run(store_url)
    part = skyplug.open(remote_ms).plan("time", 2)[1]
    provn = run("prov", "export", run_id, "--format", "provn")
    assert 'voprov:name="write"' in provn and "voprov:Activity" in provn
    assert f'[voprov:name="vis.ms", prov:location="{remote_ms}"' in provn and "voprov:location" not in provn
    assert f'voprov:version="{part.version}"' in provn
    ranges = ",".join(f"{m + ':' if m else ''}{s}-{e}" for m, s, e in part.ranges)
    assert part.ranges and f'voprov:byteRanges="{ranges}"' in provn
    assert "used(" in provn and "wasGeneratedBy(" in provn and "wasDerivedFrom(" in provn


def fetch_first(uri: str, out: Path) -> None:
    """``skyplug fetch`` of partition 0 of 2 along time, as npz."""
    run("fetch", uri, "--by", "time", "-n", "2", "--only", "0", "--out", str(out), "--as", "npz")


@pytest.mark.parametrize("fmt", ["json", "xml", "turtle", "trig"])
def test_serialisations_round_trip_without_loss(
    store_url: str, remote_ms: str, tmp_path: Path, fmt: str
) -> None:
    from prov.model import ProvDocument

    fetch_first(remote_ms, tmp_path / "out")
    run_id = _only_run(store_url)
    out = tmp_path / f"run.{fmt}"
    run("prov", "export", run_id, "--format", fmt, "-o", str(out))
    with open_store(store_url) as store:
        doc = pv.to_document(*store.run_rows(run_id))
    name, opts = pv.FORMATS[fmt]
    back = ProvDocument.deserialize(content=out.read_text(), format=name, **opts)
    assert back == doc
    assert len(list(back.get_records())) == len(list(doc.get_records())) > 10


def test_show_back_from_a_derived_product_reaches_the_raw_byte_ranges(
    store_url: str, remote_ms: str, tmp_path: Path
) -> None:
    fetch_first(remote_ms, tmp_path / "out")
    product = next((tmp_path / "out").iterdir())
    pid = _entity_at(store_url, product)
    part = skyplug.open(remote_ms).plan("time", 2)[0]
    raw = "e-" + pv.content_id(part.uri, part.version)
    one = run("prov", "show", pid, "--direction", "back", "--depth", "1")
    assert "byteRanges" in one and f"sky:{raw}" not in one  # one hop: the ranges, not yet the object
    text = run("prov", "show", pid, "--direction", "back", "--depth", "all", "--format", "json")
    doc = json.loads(text)
    assert f"sky:{raw}" in doc["entity"]
    assert any("voprov:byteRanges" in e for e in doc["entity"].values())
    forth = run("prov", "show", raw, "--direction", "forth", "--depth", "all")
    assert pid in forth


def test_same_bytes_are_the_same_entity_across_runs(store_url: str, remote_ms: str, tmp_path: Path) -> None:
    for i in range(2):
        os.environ.pop(pv.RUN_ENV, None)
        run("fetch", remote_ms, "--by", "time", "-n", "2", "--only", "0", "--out", str(tmp_path / f"o{i}"))
    part = skyplug.open(remote_ms).plan("time", 2)[0]
    product = next((tmp_path / "o1").iterdir())
    same = {
        "e-" + pv.content_id(part.uri, part.version),  # the object
        "e-" + pv.content_id(part.uri, part.version, part.ranges),  # its byte ranges
        _entity_at(store_url, product),  # the MS written (from the same bytes, by the same code)
    }
    conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    rows = dict(conn.execute("SELECT id, COUNT(DISTINCT run) FROM prov_nodes GROUP BY id").fetchall())
    assert {i: rows.get(i) for i in same} == dict.fromkeys(same, 2)


def test_no_secret_in_any_record_serialisation_or_graph(
    store_url: str, remote_ms: str, tmp_path: Path, s3env
) -> None:
    secret = os.environ["SKYPLUG_SITE_EDGE_SECRET_ACCESS_KEY"]
    signed = f"https://example.org/obs/vis.ms?X-Amz-Signature={CANARY}&X-Amz-Credential=AKIA"
    with skyplug.activity("calibrate", params={"source": signed, "api_token": CANARY, "note": CANARY}) as act:
        skyplug.open(remote_ms).plan("time", 2)[0].load()
        act.used(act.entity("e-signed", location=signed), role="signed input")
    run_id = act.run
    texts = [Path(store_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1")]
    for fmt in pv.FORMATS:
        texts.append(run("prov", "export", run_id, "--format", fmt))
    run("prov", "graph", run_id, "-o", str(tmp_path / "g.svg"))
    texts.append((tmp_path / "g.svg").read_text())
    texts.append(run("prov", "ls", "--json"))
    for text in texts:
        assert CANARY not in text and secret not in text and "X-Amz-Signature" not in text
    assert "https://example.org/obs/vis.ms" in texts[1]  # the URL stays, its signature does not


def test_graph_png(store_url: str, remote_ms: str, tmp_path: Path) -> None:
    run("fetch", remote_ms, "--by", "time", "-n", "2", "--only", "0", "--out", str(tmp_path / "out"))
    run("prov", "graph", _only_run(store_url), "-o", str(tmp_path / "g.png"))
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


def _fetch(uri: str, out: Path, *extra: str) -> CliRunner:
    return CliRunner().invoke(
        cli, ["fetch", uri, "--by", "time", "-n", "2", "--out", str(out), "--as", "npz", *extra]
    )


def test_a_plain_fetch_records_by_default_in_the_user_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote_ms: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = _fetch(remote_ms, work / "out")
    assert result.exit_code == 0, result.output
    db = Path(os.environ["SKYPLUG_DATA_DIR"]) / "provenance.db"  # the suite's, not the user's
    run_id = _only_run(f"sqlite:///{db}")
    provn = run("prov", "export", run_id, "--format", "provn")
    part = skyplug.open(remote_ms).plan("time", 2)[1]
    assert f'voprov:version="{part.version}"' in provn and 'voprov:name="write"' in provn
    assert sorted(p.name for p in work.iterdir()) == ["out"]  # nothing in the current folder


@pytest.mark.parametrize("plain", [False, True], ids=["url", "plain-path"])
def test_the_catalogue_database_is_the_store_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote_ms: str, s3env, plain: bool
) -> None:
    from skyplug.core import config

    url = f"sqlite:///{tmp_path / 'cat.db'}"
    given = str(tmp_path / "cat.db") if plain else url  # [catalog] url may be a plain path
    config.set_config(config.Config.from_dict({**s3env.config.raw, "catalog": {"url": given}}))
    skyplug.open(remote_ms).plan("time", 2)[0].load()
    assert _only_run(url)
    assert not (Path(os.environ["SKYPLUG_DATA_DIR"]) / "provenance.db").exists()


@pytest.mark.parametrize("how", ["config", "env"])
def test_recording_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote_ms: str, s3env, how: str
) -> None:
    from skyplug.core import config

    if how == "config":
        config.set_config(config.Config.from_dict({**s3env.config.raw, "provenance": {"enabled": False}}))
    else:
        monkeypatch.setenv(pv.SWITCH_ENV, "off")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    skyplug.open(remote_ms).plan("time", 2)[0].load()
    assert _fetch(remote_ms, work / "out").exit_code == 0
    assert not (Path(os.environ["SKYPLUG_DATA_DIR"]) / "provenance.db").exists()
    assert sorted(p.name for p in work.iterdir()) == ["out"]


@pytest.mark.parametrize("broken", ["folder", "not-a-database"])
def test_a_failing_store_never_fails_a_fetch_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote_ms: str, broken: str
) -> None:
    from skyplug.plugins.provenance import store as prov_store

    bad = tmp_path / "prov.db"
    if broken == "folder":
        bad.mkdir()
    else:
        bad.write_bytes(b"this is not an SQLite database" * 100)
    monkeypatch.setattr(prov_store, "FAILED", set(), raising=False)
    monkeypatch.setenv(pv.DB_ENV, f"sqlite:///{bad}")
    result = _fetch(remote_ms, tmp_path / "out")  # 2 partitions: 2 loads and 2 writes to record
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").iterdir())) == 2
    warned = [line for line in result.stderr.splitlines() if "provenance store" in line]
    assert len(warned) == 1, result.stderr
    assert warned[0].startswith("skyplug: warning: provenance store sqlite:///")
    assert "Traceback" not in result.stderr


def test_bad_queries_are_one_clear_error(store_url: str) -> None:
    result = CliRunner().invoke(cli, ["prov", "show", "e-nope", "--depth", "x"])
    assert result.exit_code != 0 and "depth 'x'" in result.output + result.stderr
    result = CliRunner().invoke(cli, ["prov", "export", "run-nope"])
    assert result.exit_code != 0 and "run-nope" in result.output + result.stderr


def test_concurrent_events_on_engine_threads_are_each_their_own_activity(
    store_url: str, remote_ms: str, tmp_path: Path
) -> None:
    """Loads and writes on the local engine's threads: each is one activity (none lands in another
    thread's), and nothing is lost to a store error."""
    import warnings

    from skyplug.core import plugins
    from skyplug.core.load import fetch_partition, load_partition

    parts = skyplug.open(remote_ms).plan("rows", 24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plugins.find("engines", "local").map(
            lambda p: (load_partition(p), fetch_partition(p, tmp_path / "out", "npz")), parts, progress=False
        )
    with open_store(store_url) as store:
        nodes, rels = store.run_rows(_only_run(store_url))
    acts = {i: a["name"] for i, (k, a) in nodes.items() if k == "activity"}
    assert list(acts.values()).count("write") == list(acts.values()).count("load") == 24
    for aid in acts:
        used = [o for k, s, o, _ in rels if k == "used" and s == aid]
        assert len(used) == 1, (acts[aid], used)  # its own partition's byte ranges, nobody else's


def test_an_event_on_another_thread_never_lands_in_a_running_events_activity(store_url: str) -> None:
    """Thread A is inside an event's activity (recording a write); thread B's event gets its own."""
    import threading

    inside, done = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def first() -> None:
        with pv.event_activity("write") as act:
            seen["a"] = act
            inside.set()
            done.wait(10)

    t = threading.Thread(target=first)
    t.start()
    inside.wait(10)
    try:
        with pv.event_activity("load") as act:
            seen["b"] = act
    finally:
        done.set()
        t.join()
    assert seen["b"] is not seen["a"] and seen["b"].name == "load"
