"""Eviction: fixed TTL or T-even TTL per replica, plus a size cap per site with LRU.

A replica's TTL counts from its last access (a hit refreshes it). The base copy, pinned replicas
and the last ready replica of an object are never evicted, nor a replica whose object has no other
copy seen intact just before (the DB may remember replicas a wiped or redeployed site lost).
Pending replicas whose lease expired (a filler that died) are rolled back here too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from skyplug.core.errors import SkyplugError
from skyplug.plugins.locators.multisite import physical
from skyplug.plugins.locators.multisite.context import Context
from skyplug.plugins.locators.multisite.db import EVICTING, READY, Obj, Replica
from skyplug.plugins.locators.multisite.fill import check_replica, recheck
from skyplug.plugins.locators.multisite.placement import trusted

log = logging.getLogger("skyplug.multisite")


@dataclass(frozen=True)
class Eviction:
    """One replica to remove and why."""

    replica: Replica
    reason: str
    size: int

    def public(self, uri: str) -> dict[str, Any]:
        return {
            "uri": uri,
            "site": self.replica.site,
            "state": self.replica.state,
            "reason": self.reason,
            "bytes": self.size,
        }


def plan(ctx: Context, site: str | None = None, now: float | None = None) -> list[Eviction]:
    """What ``evict`` removes now (default: the location DB's clock), at one site or at all of them."""
    db = ctx.db
    now = db.clock() if now is None else now
    objects = {o.id: o for o in db.objects()}
    out = [
        Eviction(r, "fill lease expired (rolled back)", objects[r.object_id].size)
        for r in db.stale_pending(now)
    ]
    out += [
        Eviction(r, "unfinished eviction", objects[r.object_id].size)
        for r in db.site_replicas(None, EVICTING)
    ]
    out = [e for e in out if site is None or e.replica.site == site]
    sites = [site] if site else list(ctx.config.sites)
    ready_count: dict[int, int] = {}
    for rep in db.site_replicas(None, READY):
        ready_count[rep.object_id] = ready_count.get(rep.object_id, 0) + 1

    def removable(rep: Replica) -> bool:
        return not rep.is_base and not rep.pinned and ready_count.get(rep.object_id, 0) > 1

    def take(rep: Replica, reason: str) -> None:
        out.append(Eviction(rep, reason, objects[rep.object_id].size))
        ready_count[rep.object_id] -= 1

    for name in sites:
        reps = sorted(db.site_replicas(name, READY), key=lambda r: (r.last_access, r.id))
        kept = []
        for rep in reps:
            if rep.ttl is not None and rep.last_access + rep.ttl <= now and removable(rep):
                take(rep, f"ttl {rep.ttl:g} s expired")
            else:
                kept.append(rep)
        cap = ctx.settings.eviction.get(name)
        if cap is None or cap.max_bytes is None:
            continue
        used = sum(objects[r.object_id].size for r in kept)
        for rep in kept:  # least recently used first
            if used <= cap.max_bytes:
                break
            if removable(rep):
                take(rep, f"size cap {cap.max_bytes} bytes (LRU)")
                used -= objects[rep.object_id].size
    return out


def _another_copy_seen(ctx: Context, obj: Obj, rep: Replica) -> bool:
    """Whether a replica of ``obj`` other than ``rep`` was just seen on its site (HEAD: size and
    version, on the site as configured now); the ones found gone or changed are marked bad."""
    recheck(ctx, obj)  # replicas recorded on a site since redeployed count once seen there
    for other in ctx.db.replicas(obj.id):
        if other.id == rep.id or not trusted(ctx.settings, other):
            continue
        try:
            reason = check_replica(ctx, obj, other, deep=False)
        except SkyplugError:  # unreachable now: proves nothing
            continue
        if reason is None:
            return True
        ctx.db.mark_bad(other.id, reason)
    return False


def run(ctx: Context, site: str | None = None, dry_run: bool = False) -> list[Eviction]:
    """Evict what :func:`plan` chose: mark evicting (readers skip it), delete the bytes, drop the row."""
    chosen = plan(ctx, site)
    if dry_run:
        return chosen
    done = []
    objects = {o.id: o for o in ctx.db.objects()}
    for ev in chosen:
        rep = ev.replica
        if rep.state == READY and not _another_copy_seen(ctx, objects[rep.object_id], rep):
            log.warning(
                "%s at %s: kept (%s): no other replica was found intact",
                objects[rep.object_id].uri,
                rep.site,
                ev.reason,
            )
            continue
        if not ctx.db.claim_for_removal(rep):
            continue  # it was read, refilled or taken meanwhile
        try:
            physical.delete(ctx.site(rep.site), rep.pbucket, rep.pkey)
        except SkyplugError as exc:
            log.warning("evict %s at %s: %s (kept as evicting; retried next time)", rep.pkey, rep.site, exc)
            continue
        ctx.db.delete_replica(rep.id)
        done.append(ev)
    return done
