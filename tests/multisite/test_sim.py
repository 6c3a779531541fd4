"""Trace and simulator: accesses are traced; replays price policies exactly on a virtual clock."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from skyplug.cli import cli
from skyplug.core.uri import parse_uri
from skyplug.plugins.locators.multisite import sim, trace
from skyplug.plugins.locators.multisite.locator import open_sky
from skyplug.plugins.locators.multisite.settings import MONTH_SECONDS

GAP = 0.05 * MONTH_SECONDS  # storing 1 GB for GAP at $1/GB-month costs $0.05, half a refetch


@pytest.fixture
def files(tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text(
        "[requests]\nget = 0.0\nput = 0.0\n"
        "[sites.A]\negress_per_gb = 0.1\nstorage_per_gb_month = 1.0\n"
        "[sites.B]\negress_per_gb = 0.1\nstorage_per_gb_month = 1.0\n"
    )
    path = tmp_path / "trace.csv"
    path.write_text(
        "timestamp,op,obj_key,size,issue_region,serve_region\n"
        f"0,PUT,b/x,1000000000,A,A\n0,GET,b/x,1000000000,B,\n{GAP},GET,b/x,1000000000,B,\n"
    )
    return prices, path


@pytest.mark.parametrize(
    ("policy", "egress", "storage", "hit_ratio"),
    [
        ("always-remote", 0.2, 0.05, 0.0),
        ("copy-on-read", 0.1, 0.1, 0.5),
        ("replicate-all", 0.1, 0.1, 1.0),
        ("ttl:1", 0.2, 0.05, 0.0),
        ("t-even", 0.1, 0.1, 0.5),  # T-even = 0.1 months > the gap: kept
        ("optimum", 0.1, 0.1, 0.5),
    ],
)
def test_policies_on_a_hand_priced_trace(files, policy, egress, storage, hit_ratio) -> None:
    prices, path = files
    r = sim.simulate(trace.read(path), sim.load_prices(prices), policy)
    assert r["egress"] == pytest.approx(egress)
    assert r["storage"] == pytest.approx(storage, abs=1e-6)
    assert r["hit_ratio"] == hit_ratio and r["total"] == pytest.approx(egress + storage, abs=1e-6)


def test_optimum_bounds_every_policy_on_a_taska_like_trace() -> None:
    prices = sim.Prices(
        egress={"edge": 0.09, "lake-a": 0.02, "lake-b": 0.02},
        storage={s: 0.023 for s in ("edge", "lake-a", "lake-b")},
    )
    accesses = sim.taska_trace(n_objects=120, reads=1500, seed=3)
    results = {p: sim.simulate(accesses, prices, p)["total"] for p in sim.expand(["all", "lru:2e9"])}
    assert all(results["optimum"] <= v + 1e-9 for v in results.values())
    assert results["t-even"] <= min(results["always-remote"], results["replicate-all"])


def test_reads_and_writes_are_traced(sky) -> None:
    data = os.urandom(1000)
    sky.put(data, "tr.bin", at="edge")
    open_sky(parse_uri(sky.uri("tr.bin")), "lake-a").read(0, 10)
    open_sky(parse_uri(sky.uri("tr.bin")), "lake-a").read(0, 10)
    rows = [(a.op, a.key, a.size, a.client, a.server) for a in trace.read(sky.tmp / "trace.csv")]
    key = f"{sky.bucket}/tr.bin"
    assert rows == [
        ("PUT", key, 1000, "edge", "edge"),
        ("GET", key, 1000, "lake-a", "edge"),
        ("GET", key, 1000, "lake-a", "lake-a"),
    ]  # a miss (filled from edge), then a hit


def test_skystore_traces_replay_too(files, tmp_path) -> None:
    prices, _ = files
    path = tmp_path / "skystore.csv"
    path.write_text("timestamp,op,issue_region,obj_key,size\n0,write,A,x,1000000000\n0,read,B,x,1000000000\n")
    accesses = trace.read(path)
    assert [(a.op, a.client, a.server) for a in accesses] == [("PUT", "A", ""), ("GET", "B", "")]
    assert sim.simulate(accesses, sim.load_prices(prices), "always-remote")["egress"] == pytest.approx(0.1)


def test_sim_command_json_and_plot(files, tmp_path) -> None:
    prices, path = files
    png = tmp_path / "cost.png"
    result = CliRunner().invoke(
        cli, ["sim", str(path), "--prices", str(prices), "--policy", "all", "--json", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accesses"] == 3 and len(report["results"]) == 8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(cli, ["sim", str(path), "--prices", str(prices), "--policy", "nope"])
    assert bad.exit_code == 1 and "unknown policy 'nope'" in bad.stderr


SITES = ("A", "B", "C")
ACCESS = st.tuples(
    st.floats(0, 1e7, allow_nan=False),
    st.sampled_from(["GET", "GET", "GET", "PUT"]),
    st.sampled_from(["k1", "k2"]),
    st.integers(1, 10**9),
    st.sampled_from(SITES),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(ACCESS, min_size=1, max_size=25),
    st.lists(st.floats(0.0, 0.2, allow_nan=False), min_size=3, max_size=3),
    st.lists(st.floats(0.001, 0.1, allow_nan=False), min_size=3, max_size=3),
)
def test_the_optimum_bounds_every_online_policy(rows, egress, storage) -> None:
    accesses = sorted((trace.Access(t, op, k, size, site, "") for t, op, k, size, site in rows), key=_time)
    prices = sim.Prices(
        egress=dict(zip(SITES, egress, strict=True)),
        storage=dict(zip(SITES, storage, strict=True)),
        get=0,
        put=0,
    )
    best = sim.simulate(accesses, prices, "optimum")["total"]
    online = ("always-remote", "copy-on-read", "replicate-all", "ttl:3600", "t-even", "adaptive", "lru:1e9")
    for policy in online:
        assert best <= sim.simulate(accesses, prices, policy)["total"] * (1 + 1e-9) + 1e-12, policy


def _time(a: trace.Access) -> float:
    return a.timestamp
