"""The partition/worker advisor: how many partitions, how big and how many workers, for what cost.

``advise(uri, by)`` plans the object for several partition counts (exact bytes and requests of
every partition, from the index), measures a short probe (``probe.py``), models completion time
and cost of every (partition count, worker kind and memory, worker count) candidate
(``model.py``), marks the Pareto front and recommends one. Prices come from ``[advisor.prices]``
in skyplug.toml (docs/advisor.md), else the defaults in ``model.DEFAULT_PRICES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyplug.advisor import model
from skyplug.advisor.model import Estimate, Probe
from skyplug.core.config import get_config
from skyplug.core.errors import ConfigError


@dataclass
class Advice:
    """The candidates, their front, the recommendation and the probe behind them."""

    uri: str
    by: str
    probe: Probe
    estimates: list[Estimate]
    best: Estimate | None
    reason: str
    budget: float | None = None
    deadline: float | None = None
    prices: dict[str, Any] = field(default_factory=dict)
    here: list[Estimate] = field(default_factory=list)  # on the probe's engine, this machine

    @property
    def front(self) -> list[Estimate]:
        return sorted((e for e in self.estimates if e.pareto), key=lambda e: e.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "by": self.by,
            "budget_eur": self.budget,
            "deadline_s": self.deadline,
            "probe": self.probe.to_dict(),
            "recommendation": self.best.to_dict() if self.best else None,
            "reason": self.reason,
            "front": [e.to_dict() for e in self.front],
            "candidates": len(self.estimates),
            "prices": self.prices,
            "here": [e.to_dict() for e in self.here],
        }

    def text(self) -> str:
        p = self.probe
        lines = [
            f"probe ({p.engine}): {p.probe_bytes} bytes in {p.probe_seconds:.2f} s; GET latency "
            f"{p.latency_s * 1e3:.1f} ms, {p.rate_bps / 2**20:.1f} MiB/s per task, "
            f"task {p.task_s * 1e3:.1f} ms, "
            f"contention {p.contention:.2f}, start {p.start_s:.2f} s + {p.start_per_worker_s:.3f} s/worker",
            f"{len(self.estimates)} candidates; Pareto front (time vs cost):",
            f"  {'parts':>5} {'worker':>8} {'MB':>6} {'workers':>7} {'seconds':>9} {'EUR':>11}",
        ]
        for e in self.front:
            mark = "  <- recommended" if e is self.best else ""
            lines.append(
                f"  {e.partitions:5d} {e.worker:>8} {e.memory_mb:6d} {e.workers:7d} "
                f"{e.seconds:9.2f} {e.cost:11.7f}{mark}"
            )
        lines.append(f"recommendation: {self._best_text()} ({self.reason})")
        if self.here:
            fastest = min(self.here, key=lambda e: e.seconds)
            lines.append(
                f"on the {p.engine} engine here: fastest {fastest.partitions} partitions on "
                f"{fastest.workers} "
                f"workers, {fastest.seconds:.2f} s predicted"
            )
        return "\n".join(lines)

    def _best_text(self) -> str:
        b = self.best
        if b is None:
            return "none"
        return (
            f"{b.partitions} partitions on {b.workers} {b.worker} workers of {b.memory_mb} MB: "
            f"{b.seconds:.2f} s, {b.cost:.7f} EUR"
        )


def prices_from_config() -> tuple[dict[str, Any], float]:
    """The price table ``[advisor.prices.NAME]`` and the GET price (``[advisor] get_request``)."""
    raw = get_config().raw.get("advisor", {})
    if not isinstance(raw, dict):
        raise ConfigError("[advisor] must be a table")
    prices = raw.get("prices") or model.DEFAULT_PRICES
    if not isinstance(prices, dict) or not all(isinstance(v, dict) for v in prices.values()):
        raise ConfigError("[advisor.prices]: one table per worker kind, e.g. [advisor.prices.lambda]")
    get_price = raw.get("get_request", model.DEFAULT_GET_PRICE)
    if not isinstance(get_price, (int, float)) or get_price < 0:
        raise ConfigError("[advisor] get_request must be a price in EUR (a number >= 0)")
    return prices, float(get_price)


def advise(
    uri: str,
    by: str,
    engine: str = "local",
    budget: float | None = None,
    deadline: float | None = None,
    counts: tuple[int, ...] | None = None,
    max_workers: int = 64,
    cap_bytes: int | None = None,
    site: str | None = None,
    **plan_options: Any,
) -> Advice:
    """Probe ``uri``, weigh every candidate and recommend one (see the module docstring)."""
    from skyplug.advisor import probe as probe_mod
    from skyplug.core.dataset import Dataset

    if (budget is not None and budget <= 0) or (deadline is not None and deadline <= 0):
        raise ConfigError("--budget and --deadline must be positive")
    prices, get_price = prices_from_config()
    kinds = model.workers_from_prices(prices)
    ds = Dataset(uri, site=site)
    options = probe_mod.plans(ds, by, counts or probe_mod.COUNTS, **plan_options)
    measured = probe_mod.measure(ds, by, engine=engine, cap_bytes=cap_bytes, **plan_options)
    shapes = [probe_mod.shape_of(parts) for parts in options.values()]
    estimates = model.candidates(measured, shapes, kinds, max_workers=max_workers, get_price=get_price)
    best, reason = model.recommend(estimates, budget, deadline)
    import os

    memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    local = model.candidates(measured, shapes, [model.here(measured, memory)], max_workers=max_workers)
    return Advice(uri, by, measured, estimates, best, reason, budget, deadline, prices, local)


def plot(advice: Advice, path: str | Path) -> Path:
    """Draw every candidate (time vs cost), the front and the recommendation into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skyplug.core.plot import save

    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    names = sorted({(e.worker, e.memory_mb) for e in advice.estimates})
    colours = plt.get_cmap("tab10")
    for i, key in enumerate(names):
        pts = [e for e in advice.estimates if (e.worker, e.memory_mb) == key and e.feasible]
        marker = "s" if key[0] == "vm" else "o"
        if pts:
            ax.scatter(
                [e.seconds for e in pts],
                [e.cost for e in pts],
                s=16,
                marker=marker,
                color=colours(i % 10),
                alpha=0.7,
                label=f"{key[0]} {key[1]} MB",
            )
    front = advice.front
    ax.plot([e.seconds for e in front], [e.cost for e in front], "k-", lw=1.2, label="Pareto front")
    step = max(1, len(front) // 8)  # label at most about eight points of the front
    for e in front[::step]:
        ax.annotate(
            f"{e.partitions}p/{e.workers}w",
            (e.seconds, e.cost),
            fontsize=7,
            xytext=(4, -8),
            textcoords="offset points",
        )
    if advice.best:
        ax.scatter(
            [advice.best.seconds],
            [advice.best.cost],
            s=140,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label="recommended",
        )
    if advice.deadline:
        ax.axvline(advice.deadline, color="tab:red", ls=":", lw=1, label="deadline")
    if advice.budget:
        ax.axhline(advice.budget, color="tab:orange", ls=":", lw=1, label="budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted completion time (s)")
    ax.set_ylabel("predicted cost (EUR)")
    ax.set_title(
        f"{advice.uri}: partitions by {advice.by} x workers (p = partitions, w = workers)", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path)
