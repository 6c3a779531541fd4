"""The ``[multisite]`` section of skyplug.toml, read once per configuration object.

```toml
client_site = "edge"                      # where this client runs (or --at SITE)
[sites.edge]                              # besides the site type's own options:
egress_per_gb = 0.09                      # $/GB leaving the site (default 0)
storage_per_gb_month = 0.023              # $/GB-month stored there (default 0)
[multisite]
db = "sqlite:///var/skyplug/locations.db" # or postgresql://user@host/db (default: the user data dir)
trace = "/var/skyplug/trace.csv"          # access trace (default: under cache_dir)
lease_seconds = 60                        # a fill not renewed for this long is rolled back
[multisite.policies]                      # longest matching "bucket/prefix" wins; "*" is the default
"*" = "copy-on-read"
"raw/obs" = { policy = "push", targets = ["lake-a"] }
[multisite.eviction.edge]                 # per site: policy = "none" | "ttl" | "t-even"
policy = "ttl"
ttl = 3600
max_bytes = 10_000_000_000                # size cap, least recently used first
[multisite.egress]                        # optional $/GB per (from, to) pair; else the site's egress_per_gb
"lake-a->edge" = 0.02
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyplug.core.config import Config, data_dir
from skyplug.core.errors import ConfigError
from skyplug.plugins.locators.multisite import SITE_KEYS

POLICIES = ("write-local", "replicate-all", "push", "copy-on-read")
EVICTION = ("none", "ttl", "t-even")
MONTH_SECONDS = 30 * 24 * 3600.0


@dataclass(frozen=True)
class Placement:
    """A placement policy and, for ``push``, the sites written besides the local one."""

    policy: str = "copy-on-read"
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Eviction:
    """Eviction settings of one site."""

    policy: str = "none"
    ttl: float | None = None  # seconds, for policy "ttl"
    max_bytes: int | None = None


@dataclass
class Settings:
    """Everything the multi-site locator reads from the configuration."""

    config: Config
    db_url: str
    trace_path: Path
    legacy_db: Path | None = None  # where the default DB lived before (the cache dir), if elsewhere
    lease_seconds: float = 60.0
    client_site: str | None = None
    policies: dict[str, Placement] = field(default_factory=dict)
    eviction: dict[str, Eviction] = field(default_factory=dict)
    egress: dict[tuple[str, str], float] = field(default_factory=dict)
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # site -> (egress, storage)

    def placement(self, bucket: str, key: str) -> Placement:
        """The policy of the longest configured prefix of ``bucket/key`` ("*" as fallback)."""
        path = f"{bucket}/{key}"
        best = max((p for p in self.policies if p != "*" and path.startswith(p)), key=len, default="*")
        return self.policies.get(best, Placement())

    def egress_price(self, src: str, dst: str | None) -> float:
        """$/GB to move bytes from site ``src`` to ``dst`` (0 within a site)."""
        if src == dst:
            return 0.0
        if dst is not None and (src, dst) in self.egress:
            return self.egress[(src, dst)]
        return self.prices[src][0] if src in self.prices else 0.0

    def storage_price(self, site: str) -> float:
        """$/GB-month at a site."""
        return self.prices[site][1] if site in self.prices else 0.0

    def ttl_for(self, site: str, source: str | None) -> float | None:
        """TTL in seconds of a replica filled at ``site`` from ``source`` (None: kept forever)."""
        ev = self.eviction.get(site, Eviction())
        if ev.policy == "ttl":
            return ev.ttl
        if ev.policy == "t-even":
            return t_even(self.egress_price(source, site) if source else 0.0, self.storage_price(site))
        return None


def t_even(egress_per_gb: float, storage_per_gb_month: float) -> float | None:
    """Break-even time in seconds: storing a GB that long costs as much as fetching it again."""
    if storage_per_gb_month <= 0:
        return None
    return egress_per_gb / storage_per_gb_month * MONTH_SECONDS


def site_prices(config: Config) -> dict[str, tuple[float, float]]:
    """Site -> (egress $/GB, storage $/GB-month), from the keys this plugin owns in ``[sites.NAME]``."""
    out = {}
    for name, site in config.sites.items():
        values = []
        for key, default in SITE_KEYS.items():
            value = site.options.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"site {name!r}: {key} must be a number, not {value!r}")
            values.append(float(value))
        out[name] = (values[0], values[1])
    return out


def load_settings(config: Config) -> Settings:
    """Parse and check ``[multisite]`` (and the top-level ``client_site``) of a configuration."""
    raw: dict[str, Any] = dict(config.raw.get("multisite", {}))
    client_site = config.raw.get("client_site")
    if client_site and client_site not in config.sites:
        raise ConfigError(f"client_site {client_site!r} is not a configured site")
    base = config.cache_dir / "multisite"
    default_db = data_dir() / "multisite" / "locations.db"
    db_url = str(raw.get("db") or f"sqlite:///{default_db}")
    legacy = None if raw.get("db") or base == default_db.parent else base / "locations.db"
    trace = Path(raw["trace"]).expanduser() if raw.get("trace") else base / "trace.csv"
    policies: dict[str, Placement] = {}
    for prefix, value in raw.get("policies", {}).items():
        spec = {"policy": value} if isinstance(value, str) else dict(value)
        name = spec.get("policy", "copy-on-read")
        if name not in POLICIES:
            raise ConfigError(
                f"[multisite.policies] {prefix!r}: unknown policy {name!r} ({', '.join(POLICIES)})"
            )
        targets = tuple(spec.get("targets", ()))
        for t in targets:
            if t not in config.sites:
                raise ConfigError(f"[multisite.policies] {prefix!r}: target {t!r} is not a configured site")
        policies[prefix.strip("/") if prefix != "*" else "*"] = Placement(name, targets)
    eviction: dict[str, Eviction] = {}
    for site, value in raw.get("eviction", {}).items():
        if site not in config.sites:
            raise ConfigError(f"[multisite.eviction] {site!r} is not a configured site")
        ev = Eviction(
            policy=value.get("policy", "ttl" if "ttl" in value else "none"),
            ttl=float(value["ttl"]) if "ttl" in value else None,
            max_bytes=int(value["max_bytes"]) if "max_bytes" in value else None,
        )
        if ev.policy not in EVICTION:
            raise ConfigError(
                f"[multisite.eviction.{site}]: unknown policy {ev.policy!r} ({', '.join(EVICTION)})"
            )
        if ev.policy == "ttl" and ev.ttl is None:
            raise ConfigError(f"[multisite.eviction.{site}]: policy 'ttl' needs ttl (seconds)")
        eviction[site] = ev
    egress: dict[tuple[str, str], float] = {}
    for pair, price in raw.get("egress", {}).items():
        src, sep, dst = pair.partition("->")
        if not sep:
            raise ConfigError(f'[multisite.egress] {pair!r}: write pairs as "from->to"')
        egress[(src.strip(), dst.strip())] = float(price)
    return Settings(
        config=config,
        db_url=db_url,
        trace_path=trace,
        legacy_db=legacy,
        lease_seconds=float(raw.get("lease_seconds", 60.0)),
        client_site=client_site or None,
        policies=policies,
        eviction=eviction,
        egress=egress,
        prices=site_prices(config),
    )
