"""The time and cost model of a partitioned load, its candidates and their Pareto front.

Pure functions of measured figures (``Probe``, from ``probe.py``) and of a plan's exact bytes and
requests per partition: nothing here reads data. A task's time is ``task_s + requests * latency /
concurrency + bytes / rate(memory)``; ``W`` concurrent tasks share the site and the machine as
the probe saw two of them do (``contention``: 0 when two run as fast as one, 1 when two take twice
as long), the universal-scalability form with its serial term alone. That applies to the workers of the
engine here, which share this machine; cloud workers (Lambda-like, VM-like) are machines of their
own reading a store that scales, so their tasks do not slow each other. Tasks are placed longest
first on the least loaded worker (LPT), after the engine's start-up for ``W`` workers.

Memory: a worker needs ``base_mb`` plus ``rss_factor`` times its partition's bytes; a Lambda-like
worker's CPU and network share grow with its memory up to ``full_mb`` (AWS gives one vCPU per
1769 MB), a VM-like worker's do not. Cost: Lambda-like, GB-seconds of every task (with its start)
plus a price per invocation; VM-like, the workers' memory-hours for the whole run; both add the
price of the GET requests.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from skyplug.core.errors import ConfigError

# EUR, public list prices of the kind the seed's study used (config [advisor.prices] overrides)
DEFAULT_PRICES: dict[str, dict[str, Any]] = {
    "lambda": {
        "kind": "lambda",
        "gb_second": 0.0000153,
        "invocation": 0.00000018,
        "memory_mb": [512, 1024, 1769, 3008, 10240],
        "full_mb": 1769,
        "start_s": 0.25,
    },
    "vm": {"kind": "vm", "gb_hour": 0.0055, "memory_mb": [2048, 4096, 8192, 16384], "start_s": 30.0},
}
DEFAULT_GET_PRICE = 0.00000036  # EUR per GET request
BASE_MB = 160.0  # an interpreter with numpy and skyplug loaded
RSS_FACTOR = 2.0  # peak RSS per partition byte (the benchmark's goal)


@dataclass(frozen=True)
class Probe:
    """What the short probe measured (seconds, bytes per second)."""

    latency_s: float  # one small ranged GET
    rate_bps: float  # one task's bytes per second once started, on a full-share worker
    task_s: float  # a task's fixed cost (open, decode set-up, result)
    contention: float  # 0: two concurrent tasks as fast as one; 1: no faster than in turn
    start_s: float  # engine start-up, fixed part
    start_per_worker_s: float  # engine start-up per worker
    concurrency: int = 8  # ranged GETs a task keeps in flight
    cores: int = 1  # of the machine the engine here runs on
    engine: str = "local"
    probe_bytes: int = 0  # what the probe read
    probe_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Worker:
    """One kind of worker at one memory size, with its prices."""

    kind: str  # "lambda" (price per GB-s, CPU grows with memory) or "vm" (per GB-hour)
    name: str
    memory_mb: int
    gb_second: float = 0.0
    gb_hour: float = 0.0
    invocation: float = 0.0
    full_mb: float = 0.0  # lambda: the memory that gives a full share of CPU and network
    start_s: float = 0.0  # what a fresh worker of this kind adds before its first task (priced)
    shared: bool = False  # the workers share one machine (the engine here): they slow each other

    def share(self) -> float:
        """The CPU/network share of the probe's full-share worker this worker gets."""
        if self.kind == "lambda" and self.full_mb:
            return min(1.0, self.memory_mb / self.full_mb)
        return 1.0


@dataclass(frozen=True)
class PlanShape:
    """What a plan of ``count`` partitions reads: bytes and requests of each partition."""

    count: int
    bytes: tuple[int, ...]
    requests: tuple[int, ...]


@dataclass
class Estimate:
    """A candidate (partitions, worker kind and memory, workers) and what the model predicts."""

    partitions: int
    worker: str
    memory_mb: int
    workers: int
    seconds: float
    cost: float
    feasible: bool
    peak_mb: float
    requests: int
    bytes: int
    pareto: bool = False
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return {**d, "seconds": round(self.seconds, 4), "cost": round(self.cost, 8)}


def here(probe: Probe, memory_mb: int) -> Worker:
    """The probe's own engine as a worker kind: free, sharing this machine."""
    return Worker("vm", probe.engine, memory_mb, shared=True)


def workers_from_prices(prices: Mapping[str, Mapping[str, Any]]) -> list[Worker]:
    """Every (kind, memory) worker of a price table (``[advisor.prices.NAME]`` tables)."""
    out = []
    for name, table in prices.items():
        kind = table.get("kind", name)
        if kind not in ("lambda", "vm"):
            raise ConfigError(f"[advisor.prices.{name}]: kind must be 'lambda' or 'vm', not {kind!r}")
        sizes = table.get("memory_mb")
        if not isinstance(sizes, list) or not sizes or not all(isinstance(m, int) and m > 0 for m in sizes):
            raise ConfigError(f"[advisor.prices.{name}]: memory_mb must be a list of positive integers")
        price_key = "gb_second" if kind == "lambda" else "gb_hour"
        if not isinstance(table.get(price_key), (int, float)) or table[price_key] < 0:
            raise ConfigError(f"[advisor.prices.{name}]: {price_key} (EUR) is required for a {kind} worker")
        for m in sizes:
            out.append(
                Worker(
                    kind,
                    name,
                    int(m),
                    gb_second=float(table.get("gb_second", 0.0)),
                    gb_hour=float(table.get("gb_hour", 0.0)),
                    invocation=float(table.get("invocation", 0.0)),
                    full_mb=float(table.get("full_mb", 0.0)),
                    start_s=float(table.get("start_s", 0.0)),
                )
            )
    return out


def task_seconds(probe: Probe, worker: Worker, nbytes: int, requests: int) -> float:
    """One task alone on its worker."""
    waves = math.ceil(requests / max(probe.concurrency, 1))
    return probe.task_s + waves * probe.latency_s + nbytes / (probe.rate_bps * worker.share())


def slowdown(probe: Probe, concurrent: int) -> float:
    """How much longer a task takes with ``concurrent`` tasks at once than alone, on one machine:
    as the probe's two tasks slowed each other, and never less than more tasks than cores."""
    return max(1.0 + probe.contention * max(concurrent - 1, 0), concurrent / max(probe.cores, 1))


def makespan(times: Sequence[float], workers: int) -> float:
    """Longest-first placement of task times on ``workers`` (the finish of the last)."""
    loads = [0.0] * max(1, min(workers, len(times)))
    heapq.heapify(loads)
    for t in sorted(times, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + t)
    return max(loads) if times else 0.0


def estimate(
    probe: Probe, shape: PlanShape, worker: Worker, workers: int, get_price: float = DEFAULT_GET_PRICE
) -> Estimate:
    """The predicted completion time and cost of one candidate."""
    active = max(1, min(workers, shape.count))
    factor = slowdown(probe, active) if worker.shared else 1.0
    times = [
        task_seconds(probe, worker, b, r) * factor for b, r in zip(shape.bytes, shape.requests, strict=True)
    ]
    start = probe.start_s + probe.start_per_worker_s * active + worker.start_s
    seconds = start + makespan(times, active)
    requests = sum(shape.requests)
    gb = worker.memory_mb / 1024
    if worker.kind == "lambda":
        cost = (
            sum(t + worker.start_s for t in times) * gb * worker.gb_second + shape.count * worker.invocation
        )
    else:
        cost = active * gb * worker.gb_hour * seconds / 3600
    cost += requests * get_price
    peak = BASE_MB + RSS_FACTOR * max(shape.bytes, default=0) / 2**20
    feasible = peak <= worker.memory_mb
    why = "" if feasible else f"needs ~{peak:.0f} MB per worker (partition {max(shape.bytes) / 2**20:.0f} MB)"
    return Estimate(
        shape.count,
        worker.name,
        worker.memory_mb,
        active,
        seconds,
        cost,
        feasible,
        peak,
        requests,
        sum(shape.bytes),
        why=why,
    )


def candidates(
    probe: Probe,
    shapes: Iterable[PlanShape],
    kinds: Sequence[Worker],
    max_workers: int = 64,
    get_price: float = DEFAULT_GET_PRICE,
) -> list[Estimate]:
    """Every (plan, worker kind and memory, worker count) candidate, estimated."""
    out = []
    for shape in shapes:
        counts = sorted(
            {w for w in (1, 2, 4, 8, 16, 32, 64, 128, 256) if w <= min(shape.count, max_workers)}
            | {min(shape.count, max_workers)}
        )
        for worker in kinds:
            for w in counts:
                out.append(estimate(probe, shape, worker, w, get_price))
    mark_pareto(out)
    return out


def mark_pareto(estimates: Sequence[Estimate]) -> list[Estimate]:
    """Mark (and return, fastest first) the feasible estimates no other beats on both time and cost."""
    feasible = sorted((e for e in estimates if e.feasible), key=lambda e: (e.seconds, e.cost))
    front, best_cost = [], math.inf
    for e in feasible:
        if e.cost < best_cost:
            e.pareto = True
            front.append(e)
            best_cost = e.cost
    return front


def recommend(
    estimates: Sequence[Estimate], budget: float | None = None, deadline: float | None = None
) -> tuple[Estimate | None, str]:
    """The candidate to run, and why: the cheapest within a deadline, the fastest within a budget,
    the cheapest of those meeting both, else the knee of the front (closest to the ideal corner)."""
    front = [e for e in estimates if e.pareto]
    if not front:
        return None, "no feasible candidate (every partition too big for every worker's memory)"
    ok = [
        e
        for e in front
        if (budget is None or e.cost <= budget) and (deadline is None or e.seconds <= deadline)
    ]
    if (budget is not None or deadline is not None) and not ok:
        limits = " and ".join(
            x
            for x in (
                f"cost <= {budget} EUR" if budget is not None else "",
                f"time <= {deadline} s" if deadline is not None else "",
            )
            if x
        )
        return (
            None,
            f"no candidate meets {limits} "
            f"(fastest {front[0].seconds:.2f} s, cheapest {front[-1].cost:.6f} EUR)",
        )
    if deadline is not None:
        best = min(ok, key=lambda e: (e.cost, e.seconds))
        return best, f"the cheapest within {deadline} s"
    if budget is not None:
        best = min(ok, key=lambda e: (e.seconds, e.cost))
        return best, f"the fastest within {budget} EUR"
    best = knee(front)
    return best, "the knee of the time-cost front (no budget or deadline given)"


def knee(front: Sequence[Estimate]) -> Estimate:
    """The point of the front farthest from the chord joining its two ends, in log time and log
    cost (each scaled to [0, 1]): where a little more money stops buying much time."""
    if len(front) <= 2:
        return front[0]
    xs = [math.log(max(e.seconds, 1e-9)) for e in front]
    ys = [math.log(max(e.cost, 1e-12)) for e in front]

    def scaled(v: list[float]) -> list[float]:
        lo, hi = min(v), max(v)
        return [(x - lo) / ((hi - lo) or 1) for x in v]

    xs, ys = scaled(xs), scaled(ys)
    (x0, y0), (x1, y1) = (xs[0], ys[0]), (xs[-1], ys[-1])
    norm = math.hypot(x1 - x0, y1 - y0) or 1
    dist = [
        abs((y1 - y0) * x - (x1 - x0) * y + x1 * y0 - y1 * x0) / norm for x, y in zip(xs, ys, strict=True)
    ]
    return front[max(range(len(front)), key=dist.__getitem__)]
