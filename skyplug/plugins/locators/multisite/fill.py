"""Filling replicas: single-flight under a DB lease, stream, hash, verify, then mark ready.

A fill takes the lease of (object, site) in the DB (a ``pending`` row with owner and expiry); other
readers of the same object at that site wait for it instead of fetching too. The lease is renewed
while bytes flow; a filler that dies stops renewing, and the next reader (or ``skyplug evict``)
rolls the pending replica back, bytes included. A replica becomes ``ready`` only once its sha256,
computed here while streaming, equals the object's version and the site stored what was sent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from skyplug.core import plugins
from skyplug.core.errors import NotFound, SiteError, SkyplugError, StaleObjectError
from skyplug.core.source import RETRIES, Source, TransientError, backoff
from skyplug.plugins.locators.multisite import physical
from skyplug.plugins.locators.multisite.context import Context
from skyplug.plugins.locators.multisite.db import BAD, READY, Obj, Replica
from skyplug.plugins.locators.multisite.placement import HEALTH, rank, trusted

log = logging.getLogger("skyplug.multisite")

Tee = Callable[[int, bytes], None]  # (offset, bytes) as they stream past


class LeaseLost(SiteError):
    """Our fill lease was taken over (we stalled past its expiry); the fill is abandoned."""


def ensure_replica(
    ctx: Context,
    obj: Obj,
    site_name: str,
    *,
    tee: Tee | None = None,
    wait: bool = True,
    confirm: bool = False,
) -> tuple[Replica | None, bool]:
    """(a ready replica of ``obj`` at ``site_name``, whether this call filled it).

    The replica was there, is filled now, or is waited for; with ``wait=False`` it is None when
    another client is filling it. Recorded replicas not seen on their site's current identity are
    re-checked first; with ``confirm`` a recorded ready replica at ``site_name`` is also seen
    (HEAD: size and version) before it is trusted, and refilled when it is gone.
    """
    recheck(ctx, obj)
    if confirm:
        current = ctx.db.site_row(obj.id, site_name)
        if current is not None and current.state == READY:
            reason = check_replica(ctx, obj, current, deep=False)
            if reason is not None:
                ctx.db.mark_bad(current.id, reason)
    pbucket, pkey = physical.location(ctx.site(site_name), obj.bucket, obj.pkey)
    delay = 0.01
    while True:
        owner = ctx.owner()
        mine, current = ctx.db.acquire(obj, site_name, pbucket, pkey, owner, ctx.settings.lease_seconds)
        if mine is not None:
            try:
                return _fill(ctx, obj, mine, owner, tee, previous=current), True
            except LeaseLost as exc:  # we stalled and someone took over: wait for them instead
                log.warning("%s", exc)
                continue
        assert current is not None
        if current.state == READY:
            return current, False
        if not wait:
            return None, False
        time.sleep(delay)  # pending elsewhere (or being evicted): its lease bounds the wait
        delay = min(delay * 2, 0.25)


class _Heartbeat:
    """Renews a fill lease every third of its length from a thread, until stopped or lost."""

    def __init__(self, ctx: Context, obj: Obj, rep: Replica, owner: str) -> None:
        self.ctx, self.obj, self.rep, self.owner = ctx, obj, rep, owner
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skyplug-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lease = self.ctx.settings.lease_seconds
        while not self._stop.wait(lease / 3):
            if not self.ctx.db.renew(self.rep.id, self.owner, lease):
                self.lost = True
                return

    def check(self) -> None:
        """Raise LeaseLost when the lease was taken over."""
        if self.lost:
            raise LeaseLost(f"{self.obj.uri} at site {self.rep.site!r}: fill lease lost (taken over)")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _fill(
    ctx: Context, obj: Obj, rep: Replica, owner: str, tee: Tee | None, previous: Replica | None
) -> Replica:
    heartbeat = _Heartbeat(ctx, obj, rep, owner)
    try:
        done = _fill_from_sources(ctx, obj, rep, owner, tee, heartbeat, previous)
    finally:
        heartbeat.stop()
    # verified and ready: observers (provenance) see it outside the fill, so they cannot undo it
    plugins.get_plugin_manager().hook.skyplug_replica_filled(
        config=ctx.config,
        uri=obj.uri,
        site=done.site,
        version=obj.version,
        size=obj.size,
        sha256=done.checksum or obj.version,
        source_site=done.source_site or "",
    )
    return done


def _fill_from_sources(
    ctx: Context,
    obj: Obj,
    rep: Replica,
    owner: str,
    tee: Tee | None,
    heartbeat: _Heartbeat,
    previous: Replica | None,
) -> Replica:
    db = ctx.db
    site = ctx.site(rep.site)
    errors: list[str] = []
    try:
        if previous is not None:  # a stuck or bad replica we took over: its bytes go first
            log.info(
                "%s at %s: rolling back the %s replica of %s",
                obj.uri,
                rep.site,
                previous.state,
                previous.owner,
            )
            physical.delete(site, previous.pbucket, previous.pkey)
        for cand in rank(ctx.settings, db, obj, rep.site):
            srep = cand.replica
            if srep.site == rep.site:
                continue
            try:
                hasher, etag = _copy(ctx, obj, rep, srep, owner, tee, heartbeat)
            except _SourceFailed as exc:
                _source_failed(ctx, obj, srep, exc.cause, errors)
                physical.delete(site, rep.pbucket, rep.pkey)
                continue
            if hasher.size != obj.size or hasher.version != obj.version:
                note = (
                    f"checksum mismatch: read {hasher.version} ({hasher.size} bytes) "
                    f"while filling {rep.site!r}"
                )
                db.mark_bad(srep.id, note)
                errors.append(f"site {srep.site!r}: {note}")
                physical.delete(site, rep.pbucket, rep.pkey)
                continue
            ttl = ctx.settings.ttl_for(rep.site, srep.site)
            if not db.complete(rep.id, owner, etag, hasher.version, ttl, srep.site, site.identity):
                raise LeaseLost(f"{obj.uri} at site {rep.site!r}: fill lease lost before completion")
            done = db.replica(rep.id)
            assert done is not None
            log.info("%s: filled at %s from %s (%d bytes)", obj.uri, rep.site, srep.site, obj.size)
            return done
    except BaseException:
        if db.release(rep.id, owner, _bad_note(previous)):
            try:
                physical.delete(site, rep.pbucket, rep.pkey)
            except SkyplugError as exc:  # the row is gone; leftover bytes are unreachable garbage
                log.warning("%s at %s: cleanup failed: %s", obj.uri, rep.site, exc)
        raise
    db.release(rep.id, owner, _bad_note(previous))
    tried = "; ".join(errors) or "no other site holds a ready replica"
    raise SiteError(f"{obj.uri}: cannot fill a replica at site {rep.site!r}: {tried}")


class _SourceFailed(Exception):
    """Reading the source replica failed (not the destination): try the next source."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _copy(
    ctx: Context, obj: Obj, rep: Replica, srep: Replica, owner: str, tee: Tee | None, heartbeat: _Heartbeat
) -> tuple[physical.Hasher, str]:
    """Stream replica ``srep`` into ``rep``'s place; (hasher of what was sent, stored version).

    A transient failure of the destination (a 503, a reset) is retried from the start with the
    usual backoff; a failing source raises _SourceFailed, any other destination error propagates.
    """
    site = ctx.site(rep.site)
    for attempt in range(RETRIES + 1):
        src = physical.open_source(ctx.site(srep.site), srep.pbucket, srep.pkey, srep.etag, obj.size)
        src.retries = 1
        failure: list[Exception] = []

        def chunks(src: Source = src, failure: list[Exception] = failure) -> Iterator[bytes]:
            try:
                pos = 0
                for data in physical.stream(src):
                    heartbeat.check()
                    if tee is not None:
                        tee(pos, data)
                    pos += len(data)
                    yield data
            except Exception as exc:
                failure.append(exc)
                raise

        try:
            return physical.write_stream(
                site,
                rep.pbucket,
                rep.pkey,
                chunks(),
                still_owner=lambda: ctx.db.renew(rep.id, owner, ctx.settings.lease_seconds),
            )
        except LeaseLost:
            raise
        except SkyplugError as exc:
            if failure:
                raise _SourceFailed(failure[0]) from exc
            if not isinstance(exc, TransientError) or attempt == RETRIES:
                raise  # the destination failed: no other source will help
            delay = backoff(attempt)
            log.info("%s at %s: %s; retrying the fill in %.2fs", obj.uri, rep.site, exc, delay)
            with contextlib.suppress(SkyplugError):  # an unfinished upload of the failed attempt
                physical.delete(site, rep.pbucket, rep.pkey)
            time.sleep(delay)
            heartbeat.check()
    raise AssertionError("unreachable")


def _bad_note(previous: Replica | None) -> str | None:
    """The note to keep when a refill of a bad replica fails (None: the row just goes)."""
    if previous is None or previous.state != BAD:
        return None
    return f"{previous.note or 'bad'} (refill failed)"[:500]


def _source_failed(ctx: Context, obj: Obj, srep: Replica, exc: Exception, errors: list[str]) -> None:
    """Record why a source replica could not be read: gone or changed means bad, else a site failure."""
    if isinstance(exc, StaleObjectError | NotFound):
        ctx.db.mark_bad(srep.id, f"changed or removed behind our back: {exc}")
    else:
        HEALTH.failed(srep.site, ctx.db)
    errors.append(f"site {srep.site!r}: {exc}")


def check_replica(
    ctx: Context, obj: Obj, rep: Replica, *, deep: bool = True, etags: set[str] | None = None
) -> str | None:
    """Why the replica ``rep`` is not what the DB says (None: it was just seen right).

    HEAD: it exists with the object's size and, on the site it was recorded on, its recorded
    version. With ``deep`` also its content: on S3 an ETag among ``etags`` (the MD5s of the bytes,
    default the single-part MD5) or equal to the recorded one (checked against our MD5s when it was
    written) proves it, so a re-check costs one HEAD; else the replica is read whole (sha256).
    A site that cannot be reached raises SiteError: that proves nothing either way.
    """
    site = ctx.site(rep.site)
    moved = rep.site_identity is not None and rep.site_identity != site.identity
    where = f"site {rep.site!r}" + (f" (now {site.identity}, was {rep.site_identity})" if moved else "")
    src = physical.open_source(site, rep.pbucket, rep.pkey, None)
    try:
        size, version = src.size, src.version
    except NotFound:
        return f"{where}: replica not found (removed, or the site was wiped or redeployed)"
    if size != obj.size:
        return f"{where}: replica has {size} bytes, {obj.size} expected"
    same_server = rep.site_identity == site.identity
    if same_server and rep.etag is not None and version != rep.etag:
        return f"{where}: replica changed behind our back (version {version}, {rep.etag} recorded)"
    if not deep:
        return None
    proofs = set(etags or {obj.md5}) | ({rep.etag.strip('"')} if rep.etag else set())
    if physical.is_s3(site) and version.strip('"') in proofs:  # ETags checked against our MD5s
        return None
    try:
        got = physical.read_checksum(physical.open_source(site, rep.pbucket, rep.pkey, version, size))
    except (StaleObjectError, NotFound) as exc:
        return f"{where}: replica changed while checked: {exc}"
    return None if got == obj.version else f"{where}: checksum mismatch: {got} found, {obj.version} expected"


def recheck(ctx: Context, obj: Obj) -> None:
    """Verify (deep) the ready replicas of ``obj`` not seen on their site's current identity: right
    ones are stamped with it, wrong or missing ones marked bad; unreachable sites stay unchecked."""
    for rep in ctx.db.replicas(obj.id):
        if rep.state != READY or rep.site not in ctx.config.sites or trusted(ctx.settings, rep):
            continue
        try:
            reason = check_replica(ctx, obj, rep)
        except SiteError as exc:
            log.warning("%s: cannot re-check the replica at %s: %s", obj.uri, rep.site, exc)
            continue
        if reason is None:
            ctx.db.set_identity(rep.id, ctx.site(rep.site).identity)
        else:
            log.warning("%s: %s", obj.uri, reason)
            ctx.db.mark_bad(rep.id, reason)


def verify_replica(ctx: Context, obj: Obj, rep: Replica) -> str | None:
    """Re-read a ready replica and check its sha256; mark it bad and say why when wrong."""
    src = physical.open_source(ctx.site(rep.site), rep.pbucket, rep.pkey, rep.etag, obj.size)
    try:
        got = physical.read_checksum(src)
    except (StaleObjectError, NotFound) as exc:
        reason = f"changed or removed behind our back: {exc}"
    else:
        if got == obj.version:
            ctx.db.set_identity(rep.id, ctx.site(rep.site).identity)
            return None
        reason = f"checksum mismatch: {got} found, {obj.version} expected"
    ctx.db.mark_bad(rep.id, reason)
    return reason
