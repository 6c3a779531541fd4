"""Policy simulator: replay an access trace on a virtual clock and price it.

Each logical object has a base copy at the site that wrote it (kept for the whole trace, as the
locator never evicts it). A GET at a site without a copy moves the object from the cheapest site
holding one; what the reading site keeps afterwards is the policy's choice:

- ``always-remote``: nothing (every remote GET pays egress);
- ``replicate-all``: every write is pushed to every site, kept forever;
- ``copy-on-read``: a copy is kept forever;
- ``ttl:SECONDS``: kept until SECONDS after its last access;
- ``t-even``: TTL = egress price / storage price (the break-even time);
- ``adaptive``: per site, the TTL in [0, T-even] that would have cost least over the gaps seen so far
  between accesses (SkyStore's histogram policy, online);
- ``lru:BYTES``: kept forever, least recently used evicted above BYTES per site;
- ``optimum``: an offline lower bound: each gap between two accesses at a site costs
  min(storage over the gap, egress from the cheapest other site), knowing the future.
"""

from __future__ import annotations

import bisect
import math
import random
import tomllib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyplug.core.errors import ConfigError
from skyplug.plugins.locators.multisite.settings import MONTH_SECONDS, t_even
from skyplug.plugins.locators.multisite.trace import Access

GB = 1e9
FIXED = ("always-remote", "replicate-all", "copy-on-read", "t-even", "adaptive", "optimum")
ADAPT_EVERY = 50  # accesses at a site between two TTL choices
ADAPT_MIN_GAPS = 20  # below this many observed gaps, the adaptive policy uses T-even


@dataclass
class Prices:
    """$/GB egress per (from, to) site, $/GB-month storage per site, $ per GET and PUT request."""

    egress: dict[str, float]
    storage: dict[str, float]
    pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    get: float = 4.4e-7
    put: float = 5.5e-6

    def egress_price(self, src: str, dst: str) -> float:
        if src == dst:
            return 0.0
        return self.pairs.get((src, dst), self.egress.get(src, 0.0))

    def storage_rate(self, site: str) -> float:
        """$ per byte-second at a site."""
        return self.storage.get(site, 0.0) / GB / MONTH_SECONDS


def load_prices(path: Path) -> Prices:
    """A price table: ``[sites.NAME]`` with egress_per_gb and storage_per_gb_month (a skyplug.toml
    works), optional ``[egress]`` (or ``[multisite.egress]``) "from->to" pairs and ``[requests]``."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    sites = raw.get("sites", {})
    if not sites:
        raise ConfigError(f"{path}: no [sites.NAME] price tables")
    pairs = {}
    for pair, price in (raw.get("egress") or raw.get("multisite", {}).get("egress") or {}).items():
        src, sep, dst = pair.partition("->")
        if not sep:
            raise ConfigError(f'{path}: egress pair {pair!r}: write "from->to"')
        pairs[(src.strip(), dst.strip())] = float(price)
    req = raw.get("requests", {})
    return Prices(
        egress={n: float(s.get("egress_per_gb", 0.0)) for n, s in sites.items()},
        storage={n: float(s.get("storage_per_gb_month", 0.0)) for n, s in sites.items()},
        pairs=pairs,
        get=float(req.get("get", 4.4e-7)),
        put=float(req.get("put", 5.5e-6)),
    )


def expand(names: Iterable[str]) -> list[str]:
    """Policy names, with ``all`` standing for every fixed one plus ``ttl:3600`` and ``ttl:43200``."""
    out: list[str] = []
    for name in names:
        if name == "all":
            out += [
                "always-remote",
                "replicate-all",
                "copy-on-read",
                "ttl:3600",
                "ttl:43200",
                "t-even",
                "adaptive",
                "optimum",
            ]
        elif name in FIXED or name.startswith(("ttl:", "lru:")):
            try:
                if ":" in name:
                    float(name.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"policy {name!r}: the value after ':' must be a number") from None
            out.append(name)
        else:
            raise ConfigError(
                f"unknown policy {name!r} (choose from {', '.join(FIXED)}, ttl:SECONDS, lru:BYTES, all)"
            )
    return list(dict.fromkeys(out))


@dataclass
class _Copy:
    since: float
    last: float
    ttl: float | None  # None: forever

    def expiry(self) -> float:
        return math.inf if self.ttl is None else self.last + self.ttl


@dataclass
class _Cost:
    egress: float = 0.0
    storage: float = 0.0
    requests: float = 0.0
    moved: int = 0
    gets: int = 0
    hits: int = 0
    byte_hits: int = 0
    get_bytes: int = 0


class _Replay:
    """The online policies."""

    def __init__(self, prices: Prices, policy: str, sites: list[str]) -> None:
        self.p, self.policy, self.sites = prices, policy, sites
        self.cost = _Cost()
        self.copies: dict[str, dict[str, _Copy]] = {}  # key -> site -> copy
        self.base: dict[str, str] = {}
        self.size: dict[str, int] = {}
        self.lru: dict[str, OrderedDict[str, None]] = defaultdict(OrderedDict)
        self.used: dict[str, int] = defaultdict(int)
        self.cap = float(policy.split(":", 1)[1]) if policy.startswith("lru:") else math.inf
        self.gaps: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.last_read: dict[tuple[str, str], float] = {}
        self.fill_paid: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # $ and GB per site
        self.adaptive_ttl: dict[str, float | None] = {}
        self.seen: dict[str, int] = defaultdict(int)

    def _store(self, key: str, site: str, copy: _Copy, until: float) -> None:
        end = min(until, copy.expiry())
        self.cost.storage += max(0.0, end - copy.since) * self.size[key] * self.p.storage_rate(site)

    def _drop(self, key: str, site: str, until: float) -> None:
        copy = self.copies[key].pop(site)
        self._store(key, site, copy, until)
        self.lru[site].pop(key, None)
        self.used[site] -= self.size[key]

    def _expire(self, key: str, now: float) -> None:
        for site, copy in list(self.copies.get(key, {}).items()):
            if copy.expiry() <= now and site != self.base[key]:
                self._drop(key, site, now)

    def _ttl(self, site: str, source: str) -> float | None:
        pol = self.policy
        if pol.startswith("ttl:"):
            return float(pol.split(":", 1)[1])
        if pol == "t-even":
            return t_even(self.p.egress_price(source, site), self.p.storage.get(site, 0.0))
        if pol == "adaptive":
            return self.adaptive_ttl.get(
                site, t_even(self.p.egress_price(source, site), self.p.storage.get(site, 0.0))
            )
        return None

    def _adapt(self, site: str, now: float) -> None:
        """Choose the TTL that would have cost least over every gap between accesses seen at ``site``.

        A closed gap g (bytes b) costs storage b*g if g <= TTL, else storage b*TTL plus a refetch; an
        object not read again for longer than TTL so far costs storage b*TTL. The refetch price is
        the mean egress paid by this site's fills.
        """
        closed = sorted(self.gaps[site])
        if len(closed) < ADAPT_MIN_GAPS:
            return
        rate = self.p.storage_rate(site) * GB
        paid, fetched = self.fill_paid[site]
        egress = paid / fetched if fetched else 0.0
        cap = t_even(egress, self.p.storage.get(site, 0.0)) or 0.0
        ages = sorted((now - t, self.size[k]) for (s, k), t in self.last_read.items() if s == site)
        above = [0.0] * (len(ages) + 1)  # above[j]: GB of open gaps from the j-th (by age) on
        for j in range(len(ages) - 1, -1, -1):
            above[j] = above[j + 1] + ages[j][1] / GB
        total_b = sum(b for _, b in closed) / GB
        best, best_cost = 0.0, total_b * egress  # TTL 0: every re-read refetches
        below_gb = below_bytes = 0.0  # over closed gaps <= t: sum of b*g, and of b
        j = 0
        for g, b in closed:
            if g > cap:
                break
            below_gb += b / GB * g
            below_bytes += b / GB
            while j < len(ages) and ages[j][0] <= g:
                j += 1
            c = rate * below_gb + (rate * g + egress) * (total_b - below_bytes) + rate * g * above[j]
            if c < best_cost:
                best, best_cost = g, c
        self.adaptive_ttl[site] = best

    def put(self, a: Access) -> None:
        key, now = a.key, a.timestamp
        for site in list(self.copies.get(key, {})):
            self._drop(key, site, now)
        self.size[key], self.base[key] = a.size, a.client
        self.copies[key] = {a.client: _Copy(now, now, None)}
        self.cost.requests += self.p.put
        if self.policy == "replicate-all":
            for site in self.sites:
                if site != a.client:
                    self._move(key, a.client, site)
                    self.copies[key][site] = _Copy(now, now, None)
                    self.cost.requests += self.p.put

    def _move(self, key: str, src: str, dst: str) -> None:
        self.cost.egress += self.size[key] / GB * self.p.egress_price(src, dst)
        self.cost.moved += self.size[key]

    def get(self, a: Access) -> None:
        key, site, now = a.key, a.client, a.timestamp
        if key not in self.copies:  # read of an object written before the trace began
            self.size[key], self.base[key] = a.size, a.server or site
            self.copies[key] = {self.base[key]: _Copy(now, now, None)}
        self._expire(key, now)
        self.cost.gets += 1
        self.cost.get_bytes += self.size[key]
        self.cost.requests += self.p.get
        copies = self.copies[key]
        if site in copies:
            copy = copies[site]
            copy.last = now
            self.cost.hits += 1
            self.cost.byte_hits += self.size[key]
            if site in self.lru and key in self.lru[site]:
                self.lru[site].move_to_end(key)
        else:
            source = min(copies, key=lambda s: self.p.egress_price(s, site))
            self._move(key, source, site)
            paid = self.fill_paid[site]
            paid[0] += self.size[key] / GB * self.p.egress_price(source, site)
            paid[1] += self.size[key] / GB
            if self.policy != "always-remote" and site in self.sites:
                ttl = self._ttl(site, source)
                if ttl is None or ttl > 0:
                    copies[site] = _Copy(now, now, ttl)
                    self.cost.requests += self.p.put
                    self.lru[site][key] = None
                    self.used[site] += self.size[key]
                    while self.used[site] > self.cap and len(self.lru[site]) > 1:
                        victim = next(iter(self.lru[site]))
                        self._drop(victim, site, now)
        if self.policy == "adaptive" and site != self.base[key]:
            prev = self.last_read.get((site, key))
            if prev is not None:
                self.gaps[site].append((now - prev, self.size[key]))
            self.last_read[(site, key)] = now
            self.seen[site] += 1
            if self.seen[site] % ADAPT_EVERY == 0:
                self._adapt(site, now)

    def finish(self, end: float) -> None:
        for key in list(self.copies):
            for site in list(self.copies[key]):
                self._drop(key, site, end)


def _optimum(accesses: list[Access], prices: Prices, sites: list[str]) -> _Cost:
    """The offline optimum, per object, by dynamic programming over which sites hold a copy.

    Between two accesses of an object every held copy pays storage; a GET at a site without a copy
    pays egress from the cheapest holder (the base copy always holds one); after each access any
    copy may be dropped. Knowing the future, this is the least any placement/eviction policy that
    moves data only when it is read can pay.
    """
    cost = _Cost()
    end = accesses[-1].timestamp if accesses else 0.0
    by_key: dict[str, list[Access]] = defaultdict(list)
    for a in accesses:
        by_key[a.key].append(a)
    for events in by_key.values():
        runs: list[list[Access]] = []
        for a in events:  # a PUT starts a new version: its own run
            if a.op == "PUT" or not runs:
                runs.append([a])
            else:
                runs[-1].append(a)
        for i, run in enumerate(runs):
            stop = runs[i + 1][0].timestamp if i + 1 < len(runs) else end
            _optimum_run(run, stop, prices, cost)
    return cost


@dataclass(frozen=True, order=True)
class _Path:
    """Cost of a DP path: total first (what is minimised), then its parts."""

    total: float = 0.0
    egress: float = 0.0
    storage: float = 0.0
    moved: int = 0
    hits: int = 0

    def plus(self, egress: float = 0.0, storage: float = 0.0, moved: int = 0, hits: int = 0) -> _Path:
        return _Path(
            self.total + egress + storage,
            self.egress + egress,
            self.storage + storage,
            self.moved + moved,
            self.hits + hits,
        )


def _optimum_run(run: list[Access], stop: float, prices: Prices, cost: _Cost) -> None:
    """One object version: its base copy until ``stop`` plus the cheapest schedule of other copies."""
    first = run[0]
    base = first.client if first.op == "PUT" else (first.server or first.client)
    size = first.size
    cost.storage += (stop - first.timestamp) * size * prices.storage_rate(base)
    if first.op == "PUT":
        cost.requests += prices.put
    best: dict[frozenset[str], _Path] = {frozenset(): _Path()}  # non-base sites holding a copy
    now = first.timestamp
    for a in run:
        if a.op == "PUT":
            continue
        gap, now = a.timestamp - now, a.timestamp
        cost.gets += 1
        cost.get_bytes += size
        cost.requests += prices.get
        nxt: dict[frozenset[str], _Path] = {}
        for held, path in best.items():
            path = path.plus(storage=gap * size * sum(prices.storage_rate(s) for s in held))
            if a.client == base or a.client in held:
                after, path = held, path.plus(hits=1)
            else:
                price = min(prices.egress_price(h, a.client) for h in (base, *held))
                after, path = held | {a.client}, path.plus(egress=size / GB * price, moved=size)
            for keep in _subsets(after):
                if keep not in nxt or path < nxt[keep]:
                    nxt[keep] = path
        best = nxt
    path = min(best.values())
    cost.egress += path.egress
    cost.storage += path.storage
    cost.moved += path.moved
    cost.hits += path.hits
    cost.byte_hits += path.hits * size


def _subsets(items: frozenset[str]) -> list[frozenset[str]]:
    out = [frozenset()]
    for item in items:
        out += [s | {item} for s in out]
    return out


def simulate(accesses: list[Access], prices: Prices, policy: str) -> dict[str, Any]:
    """Replay ``accesses`` under ``policy``: cost in $ (egress, storage, requests), hit ratio, bytes moved."""
    sites = sorted(set(prices.egress) | {a.client for a in accesses} - {""})
    if policy == "optimum":
        cost = _optimum(accesses, prices, sites)
    else:
        replay = _Replay(prices, policy, sites)
        for a in accesses:
            (replay.put if a.op == "PUT" else replay.get)(a)
        replay.finish(accesses[-1].timestamp if accesses else 0.0)
        cost = replay.cost
    total = cost.egress + cost.storage + cost.requests
    return {
        "policy": policy,
        "total": total,
        "egress": cost.egress,
        "storage": cost.storage,
        "requests": cost.requests,
        "gets": cost.gets,
        "hit_ratio": cost.hits / cost.gets if cost.gets else 0.0,
        "byte_hit_ratio": cost.byte_hits / cost.get_bytes if cost.get_bytes else 0.0,
        "bytes_moved": cost.moved,
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """A stacked bar chart of cost per policy (egress, storage, requests) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["policy"] for r in results]
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 1.1) + 1.6, 4))
    bottom = [0.0] * len(results)
    for part in ("egress", "storage", "requests"):
        values = [r[part] for r in results]
        ax.bar(names, values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("cost ($)")
    ax.set_title("cost per policy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="cost part")  # off the bars
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def taska_trace(
    n_objects: int = 400,
    reads: int = 5000,
    seed: int = 0,
    writer: str = "edge",
    readers: tuple[str, ...] = ("lake-a", "lake-b"),
    days: float = 60.0,
) -> list[Access]:
    """A synthetic TASKA-like trace: observations written at the edge, log-normal sizes of 1-256 MiB,
    a burst of reads from the lakes after each observation, then Zipf(1.0)-skewed re-reads."""
    rng = random.Random(seed)
    span = days * 86400
    out: list[Access] = []
    times = sorted(rng.uniform(0, span * 0.7) for _ in range(n_objects))
    sizes = [
        int(min(256, max(1, rng.lognormvariate(math.log(16), 1.0))) * 1024 * 1024) for _ in range(n_objects)
    ]
    for i, t in enumerate(times):
        key = f"obs/{i:05d}.ms"
        out.append(Access(t, "PUT", key, sizes[i], writer, writer))
        for _ in range(rng.randint(1, 4)):  # the burst after an observation
            out.append(Access(t + rng.expovariate(1 / 3600), "GET", key, sizes[i], rng.choice(readers), ""))
    weights = [1.0 / (r + 1) for r in range(n_objects)]
    order = list(range(n_objects))
    rng.shuffle(order)
    cumulative = []
    acc = 0.0
    for w in weights:
        acc += w
        cumulative.append(acc)
    while len(out) < n_objects + reads:
        i = order[bisect.bisect(cumulative, rng.uniform(0, acc))]
        t = rng.uniform(times[i], span)
        out.append(Access(t, "GET", f"obs/{i:05d}.ms", sizes[i], rng.choice(readers), ""))
    out.sort(key=lambda a: a.timestamp)
    return out
