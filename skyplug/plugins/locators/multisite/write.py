"""Writes (``skyplug cp``): the base copy at the client's site, then the placement policy's others."""

from __future__ import annotations

from skyplug.core.errors import FormatError
from skyplug.core.source import Source
from skyplug.plugins.locators.multisite import physical
from skyplug.plugins.locators.multisite.context import Context
from skyplug.plugins.locators.multisite.db import Obj, Replica
from skyplug.plugins.locators.multisite.fill import ensure_replica
from skyplug.plugins.locators.multisite.placement import write_sites


def put_object(ctx: Context, src: Source, bucket: str, key: str, at: str | None) -> tuple[Obj, list[Replica]]:
    """Write ``src`` as ``sky://bucket/key`` from site ``at``; the object and its ready replicas.

    The bytes go once to a fresh physical key at the first placement site while being hashed, so a
    crash leaves only unreachable garbage, never a recorded replica. Writing the same bytes again
    adds no version; other placement sites are filled from the base copy (verified the same way).
    """
    sites = write_sites(ctx.settings, bucket, key, at)
    here = ctx.site(sites[0])
    pbucket, pkey = physical.location(here, bucket, physical.new_pkey(key))
    size = src.size
    hasher, etag = physical.write_stream(here, pbucket, pkey, physical.iter_chunks(src))
    if hasher.size != size:
        physical.delete(here, pbucket, pkey)
        raise FormatError(src.uri, f"short read while copying: {hasher.size} of {size} bytes")
    logical_pkey = pkey[len(bucket) + 1 :] if here.bucket else pkey
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
        stored = ctx.db.add_replica(obj, here.name, pbucket, pkey, etag, is_base=created)
    if not stored:  # these bytes were already there: keep the recorded replica
        physical.delete(here, pbucket, pkey)
    ctx.trace("PUT", f"{bucket}/{key}", size, at or here.name, here.name)
    replicas = [r for r, _ in (ensure_replica(ctx, obj, s) for s in sites) if r is not None]
    return obj, replicas
