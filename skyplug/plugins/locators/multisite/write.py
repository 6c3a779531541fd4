"""Writes (``skyplug cp``): the base copy at the client's site, then the placement policy's others."""

from __future__ import annotations

import contextlib
import logging
import time

from skyplug.core.config import Site
from skyplug.core.errors import FormatError, SiteError, SkyplugError
from skyplug.core.source import Source
from skyplug.plugins.locators.multisite import physical
from skyplug.plugins.locators.multisite.context import Context
from skyplug.plugins.locators.multisite.db import BAD, READY, Obj, Replica
from skyplug.plugins.locators.multisite.fill import check_replica, ensure_replica
from skyplug.plugins.locators.multisite.placement import write_sites

log = logging.getLogger("skyplug.multisite")


def put_object(ctx: Context, src: Source, bucket: str, key: str, at: str | None) -> tuple[Obj, list[Replica]]:
    """Write ``src`` as ``sky://bucket/key`` from site ``at``; the object and its ready replicas.

    The bytes go once to a fresh physical key at the first placement site while being hashed, so a
    crash leaves only unreachable garbage, never a recorded replica. Writing the same bytes again
    adds no version; the fresh copy is dropped only if the recorded replica there was just seen
    whole and right, else it takes that replica's place. Other placement sites are filled from the
    base copy (verified the same way), their recorded replicas seen first.
    """
    sites = write_sites(ctx.settings, bucket, key, at)
    here = ctx.site(sites[0])
    pbucket, pkey = physical.location(here, bucket, physical.new_pkey(key))
    size = src.size
    hasher, etag = physical.write_stream(here, pbucket, pkey, physical.iter_chunks(src))
    if hasher.size != size:
        physical.delete(here, pbucket, pkey)
        raise FormatError(src.uri, f"short read while copying: {hasher.size} of {size} bytes")
    logical_pkey = pkey[len(bucket) + 1 :] if physical.fixed_bucket(here) else pkey
    with ctx.db.transaction():
        obj, created = ctx.db.add_object(
            bucket,
            key,
            hasher.version,
            size,
            hasher.sha256.hexdigest(),
            hasher.md5.hexdigest(),
            here.name,
            logical_pkey,
        )
        stored = ctx.db.add_replica(
            obj, here.name, pbucket, pkey, etag, is_base=created, identity=here.identity
        )
    if not stored:
        _keep_one(ctx, obj, here, pbucket, pkey, etag, hasher.etags())
    ctx.trace("PUT", f"{bucket}/{key}", size, at or here.name, here.name)
    replicas = [r for r, _ in (ensure_replica(ctx, obj, s, confirm=True) for s in sites) if r is not None]
    return obj, replicas


def _keep_one(
    ctx: Context, obj: Obj, here: Site, pbucket: str, pkey: str, etag: str, etags: set[str]
) -> None:
    """These bytes are already recorded at ``here``: keep the recorded replica if it is seen whole
    and right now (then drop the fresh copy), else record the fresh copy in its place."""
    deadline = time.monotonic() + 2 * ctx.settings.lease_seconds
    while True:
        current = ctx.db.site_row(obj.id, here.name)
        if current is not None and current.state == READY:
            reason = check_replica(ctx, obj, current, etags=etags)
            if reason is None:
                ctx.db.set_identity(current.id, here.identity)
                physical.delete(here, pbucket, pkey)
                return
            log.warning("%s: %s; the copy just written replaces it", obj.uri, reason)
            ctx.db.mark_bad(current.id, reason)
            if current.pkey != pkey:  # whatever is left of the old replica's bytes
                with contextlib.suppress(SkyplugError):
                    physical.delete(here, current.pbucket, current.pkey)
            current = ctx.db.site_row(obj.id, here.name)
        if current is None or current.state == BAD:
            if ctx.db.add_replica(obj, here.name, pbucket, pkey, etag, is_base=False, identity=here.identity):
                return
            continue  # someone recorded one meanwhile: look again
        if time.monotonic() > deadline:  # pending or evicting all along: keep our bytes, say where
            raise SiteError(
                f"{obj.uri}: the replica at site {here.name!r} stays {current.state}; the copy just "
                f"written is kept unrecorded at {physical.describe(here, pbucket, pkey)}"
            )
        time.sleep(0.05)
