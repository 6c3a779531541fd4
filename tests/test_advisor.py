"""The partition/worker advisor: its model (placement, memory, cost, Pareto front, choice), its
price table, and ``skyplug plan --advise`` on local and S3 objects with a bounded probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import skyplug
from skyplug.advisor import model
from skyplug.advisor.model import Estimate, PlanShape, Probe, Worker
from skyplug.cli import cli
from skyplug.core import config
from skyplug.core.errors import ConfigError
from skyplug.synthetic.ms import make_ms, zip_ms

PROBE = Probe(
    latency_s=0.02, rate_bps=50e6, task_s=0.05, contention=0.1, start_s=0.5, start_per_worker_s=0.1, cores=2
)
LAMBDA = Worker("lambda", "lambda", 1024, gb_second=0.0000153, invocation=2e-7, full_mb=1769, start_s=0.25)


def shape(count: int, total: int = 400 << 20, requests: int = 16) -> PlanShape:
    return PlanShape(count, (total // count,) * count, (requests,) * count)


def test_longest_first_placement() -> None:
    assert model.makespan([3, 3, 2, 2, 2], 2) == 7  # LPT: 3+2+2 | 3+2
    assert model.makespan([5, 1, 1], 8) == 5
    assert model.makespan([], 4) == 0


def test_task_time_and_memory_share() -> None:
    small = Worker("lambda", "lambda", 512, full_mb=1769)
    full = Worker("lambda", "lambda", 3008, full_mb=1769)
    t_full = model.task_seconds(PROBE, full, 50_000_000, 16)
    assert t_full == pytest.approx(0.05 + 2 * 0.02 + 1.0)
    assert model.task_seconds(PROBE, small, 50_000_000, 16) == pytest.approx(0.09 + 1769 / 512)
    vm = Worker("vm", "vm", 512, gb_hour=0.01)
    assert model.task_seconds(PROBE, vm, 50_000_000, 16) == pytest.approx(t_full)


def test_estimate_counts_start_cost_and_infeasible_memory() -> None:
    one = model.estimate(PROBE, shape(1, 500 << 20), LAMBDA, 1)
    assert not one.feasible and "needs ~1160 MB" in one.why  # 500 MB partition on 1 GB: 160 + 2 x 500
    eight = model.estimate(PROBE, shape(8), LAMBDA, 8)
    assert eight.feasible and eight.workers == 8
    task = model.task_seconds(PROBE, LAMBDA, (400 << 20) // 8, 16)
    assert eight.seconds == pytest.approx(0.5 + 0.1 * 8 + 0.25 + task)  # lambda: no contention
    cost = 8 * (task + 0.25) * 1.0 * 0.0000153 + 8 * 2e-7 + 8 * 16 * model.DEFAULT_GET_PRICE
    assert eight.cost == pytest.approx(cost)
    shared = model.estimate(PROBE, shape(8), model.here(PROBE, 4096), 8)  # 8 threads on 2 cores
    alone = model.task_seconds(PROBE, model.here(PROBE, 4096), (400 << 20) // 8, 16)
    assert shared.seconds == pytest.approx(0.5 + 0.1 * 8 + 4 * alone)  # each task 4x slower, all at once


def test_front_is_exactly_the_non_dominated_feasible_candidates() -> None:
    kinds = model.workers_from_prices(model.DEFAULT_PRICES)
    est = model.candidates(PROBE, [shape(n) for n in (1, 2, 4, 8, 16, 32)], kinds)
    front = [e for e in est if e.pareto]
    assert front and all(e.feasible for e in front)
    feasible = [e for e in est if e.feasible]

    def beats(o: Estimate, e: Estimate) -> bool:
        return o.seconds <= e.seconds and o.cost <= e.cost and (o.seconds < e.seconds or o.cost < e.cost)

    for e in feasible:
        if e.pareto:
            assert not any(beats(o, e) for o in feasible)
        else:  # beaten, or tied with a point of the front
            assert any(beats(o, e) or (o.seconds, o.cost) == (e.seconds, e.cost) for o in front)


def test_recommendation_honours_deadline_and_budget() -> None:
    kinds = model.workers_from_prices(model.DEFAULT_PRICES)
    est = model.candidates(PROBE, [shape(n) for n in (2, 4, 8, 16, 32, 64)], kinds)
    front = sorted((e for e in est if e.pareto), key=lambda e: e.seconds)
    deadline = front[len(front) // 2].seconds
    best, why = model.recommend(est, deadline=deadline)
    assert best is not None and best.seconds <= deadline and "cheapest" in why
    assert best.cost == min(e.cost for e in est if e.feasible and e.seconds <= deadline)
    budget = front[len(front) // 2].cost
    best, why = model.recommend(est, budget=budget)
    assert best is not None and best.cost <= budget and "fastest" in why
    assert best.seconds == min(e.seconds for e in est if e.feasible and e.cost <= budget)
    none, why = model.recommend(est, deadline=0.001)
    assert none is None and "no candidate meets time <= 0.001 s" in why
    knee, why = model.recommend(est)
    assert knee in front and knee not in (front[0], front[-1]) and "knee" in why


def test_knee_of_an_l_shaped_front() -> None:
    pts = [
        Estimate(1, "w", 1, 1, s, c, True, 0, 0, 0, pareto=True)
        for s, c in [(1, 100), (1.1, 10), (1.2, 2), (5, 1.5), (20, 1)]
    ]
    assert model.knee(pts).seconds == 1.2


def test_price_table_errors() -> None:
    with pytest.raises(ConfigError, match="kind must be 'lambda' or 'vm'"):
        model.workers_from_prices({"x": {"kind": "gpu", "memory_mb": [1]}})
    with pytest.raises(ConfigError, match="memory_mb must be a list"):
        model.workers_from_prices({"lambda": {"gb_second": 1e-5, "memory_mb": "lots"}})
    with pytest.raises(ConfigError, match="gb_hour \\(EUR\\) is required"):
        model.workers_from_prices({"vm": {"memory_mb": [1024]}})


@pytest.fixture(scope="module")
def ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("advisor")
    return zip_ms(make_ms(root / "SB226.ms", nant=10, ntime=64, nchan=32), root / "SB226.ms.zip")


def test_cli_advise_json_plot_and_config_prices(
    ms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "skyplug.toml"
    cfg.write_text(
        "[advisor]\nget_request = 0.000001\n"
        "[advisor.prices.edge]\nkind = 'vm'\ngb_hour = 0.02\nmemory_mb = [2048]\nstart_s = 5\n"
    )
    out = tmp_path / "front.png"
    result = CliRunner().invoke(
        cli, ["--config", str(cfg), "plan", str(ms), "--by", "time", "--advise", "--json", "--plot", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {e["worker"] for e in report["front"]} == {"edge"} and report["prices"]["edge"]["gb_hour"] == 0.02
    rec = report["recommendation"]
    assert rec["pareto"] and rec["memory_mb"] == 2048 and rec["seconds"] >= 5
    probe = report["probe"]
    # a small object: the cap is the object itself; the loads of the probe stay within a few times it
    whole = sum(p.fetch_bytes for p in skyplug.open(str(ms)).plan("time", 1))
    assert 0 < probe["probe_bytes"] <= 3 * whole and probe["rate_bps"] > 0
    assert {e["partitions"] for e in report["here"]} >= {1, 2, 4, 8, 16, 32, 64}
    assert out.read_bytes().startswith(b"\x89PNG")


def test_cli_advise_on_s3_with_a_deadline(ms: Path, s3env) -> None:  # type: ignore[no-untyped-def]
    uri = s3env.upload(ms, "SB226.ms.zip")
    result = CliRunner().invoke(cli, ["plan", uri, "--by", "time", "--advise", "--deadline", "1000"])
    assert result.exit_code == 0, result.output
    assert "Pareto front" in result.stdout and "the cheapest within 1000.0 s" in result.stdout


def test_cli_plan_without_advise_is_partition_and_needs_n(ms: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(cli, ["plan", str(ms), "--by", "time", "-n", "3"])
    assert plain.exit_code == 0 and plain.stdout.count("part ") == 3
    bad = runner.invoke(cli, ["plan", str(ms), "--by", "time"])
    assert bad.exit_code != 0 and "-n is required for --by time" in bad.output
    neg = runner.invoke(cli, ["plan", str(ms), "--by", "time", "--advise", "--budget", "-1"])
    assert neg.exit_code != 0 and "must be positive" in neg.output
    config.set_config(config.Config.from_dict({}))
