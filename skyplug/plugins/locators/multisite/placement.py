"""Where to read from and where to write: ranked read candidates and placement targets.

Candidates are the ready replicas ordered like Rucio's ranked replica list: sites that failed
recently last, then the client's own site, then the cheapest egress to the client, then the
fastest measured latency.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from skyplug.core.errors import ConfigError
from skyplug.plugins.locators.multisite.db import READY, LocationDB, Obj, Replica
from skyplug.plugins.locators.multisite.settings import Settings

FAILURE_PENALTY_SECONDS = 30.0


@dataclass(frozen=True)
class Candidate:
    """A ready replica as a read source for a client site, with the reasons of its rank."""

    replica: Replica
    local: bool
    egress_per_gb: float
    latency_ms: float | None
    failed_recently: bool
    verified: bool = True  # seen on the site as it is configured now (else listed last, not read)

    def public(self, address: str) -> dict[str, Any]:
        return {
            "site": self.replica.site,
            "address": address,
            "state": self.replica.state,
            "etag": self.replica.etag,
            "local": self.local,
            "egress_per_gb": self.egress_per_gb,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "failed_recently": self.failed_recently,
            "is_base": self.replica.is_base,
            "verified": self.verified,
        }


class Health:
    """Process-wide measurements per site: latency EWMA and the time of the last failure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every measurement (a new configuration, a test)."""
        self.latency: dict[str, float] = {}
        self.failed_at: dict[str, float] = {}
        self._saved: dict[str, float] = {}

    def ok(self, site: str, seconds: float, db: LocationDB | None = None) -> None:
        ms = seconds * 1000
        with self._lock:
            old = self.latency.get(site)
            self.latency[site] = ms if old is None else 0.8 * old + 0.2 * ms
            self.failed_at.pop(site, None)
            save = db is not None and time.monotonic() - self._saved.get(site, 0) > 5
            if save:
                self._saved[site] = time.monotonic()
        if save and db is not None:
            db.record_site(site, ms, failed=False)

    def failed(self, site: str, db: LocationDB | None = None) -> None:
        with self._lock:
            self.failed_at[site] = time.time()
        if db is not None:
            db.record_site(site, None, failed=True)


HEALTH = Health()


def trusted(settings: Settings, rep: Replica) -> bool:
    """A ready replica last seen on the site as configured now (same type, endpoint, bucket/path)."""
    site = settings.config.sites.get(rep.site)
    return rep.state == READY and site is not None and rep.site_identity == site.identity


def rank(
    settings: Settings, db: LocationDB, obj: Obj, at: str | None, *, unverified: bool = False
) -> list[Candidate]:
    """The ready replicas of ``obj`` in the order a client at ``at`` should try them.

    Replicas not seen on their site's current identity (recorded before identities were kept, or
    the site was redeployed elsewhere under its name) are left out, or listed last with
    ``unverified`` (for ``locate``): :func:`fill.recheck` verifies them first.
    """
    stats = db.site_stats()
    now = time.time()
    out = []
    for rep in db.replicas(obj.id):
        if rep.state != READY or rep.site not in settings.config.sites:
            continue
        verified = trusted(settings, rep)
        if not verified and not unverified:
            continue
        row = stats.get(rep.site) or {}
        measured = HEALTH.latency.get(rep.site, row.get("latency_ms"))
        # a failure counts until a later success: seen here, or recorded last in the DB by anyone
        last_fail = HEALTH.failed_at.get(rep.site) or (
            row["last_failure"] if row.get("last_failure") and row["last_failure"] >= row["updated"] else 0.0
        )
        out.append(
            Candidate(
                replica=rep,
                local=rep.site == at,
                egress_per_gb=settings.egress_price(rep.site, at),
                latency_ms=measured,
                failed_recently=now - last_fail < FAILURE_PENALTY_SECONDS,
                verified=verified,
            )
        )
    out.sort(
        key=lambda c: (
            not c.verified,
            c.failed_recently,
            not c.local,
            c.egress_per_gb,
            float("inf") if c.latency_ms is None else c.latency_ms,
            c.replica.id,
        )
    )
    return out


def write_sites(settings: Settings, bucket: str, key: str, at: str | None) -> list[str]:
    """The sites a write of ``bucket/key`` from ``at`` goes to; the first holds the base copy."""
    here = at or settings.config.default_site
    if here is None:
        raise ConfigError(f"sky://{bucket}/{key}: say where the client is (--at SITE or client_site)")
    settings.config.site(here)
    rule = settings.placement(bucket, key)
    if rule.policy == "replicate-all":
        extra = [s for s in settings.config.sites if s != here]
    elif rule.policy == "push":
        extra = [s for s in rule.targets if s != here]
    else:
        extra = []
    return [here, *extra]


def fills_on_read(settings: Settings, obj: Obj, at: str | None) -> bool:
    """Whether a read at ``at`` should leave a replica there (copy-on-read)."""
    return (
        at is not None
        and at in settings.config.sites
        and settings.placement(obj.bucket, obj.key).policy == "copy-on-read"
    )
