"""The ``sky`` locator: ``sky://bucket/key`` as a Source whose reads go to the best replica.

Every read tries the ranked candidates (local, cheapest egress, fastest) and falls back to the next
one when a site fails; a replica that changed or vanished behind our back is marked bad on the way.
Under copy-on-read, the first read at a site leaves a verified replica there: a whole read fills it
before (or while) reading, a partial read of a large object is served remotely while a background
fill copies the whole object, so a range never ends up cached as the object.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, BinaryIO

from skyplug.core.config import Site
from skyplug.core.errors import NotFound, SiteError, SkyplugError, StaleObjectError
from skyplug.core.locator import NAMED_SITE, Locator
from skyplug.core.source import Range, Source, TransientError, Tree
from skyplug.core.uri import URI
from skyplug.plugins.locators.multisite import physical
from skyplug.plugins.locators.multisite.context import Context, get_context
from skyplug.plugins.locators.multisite.db import Obj, Replica
from skyplug.plugins.locators.multisite.fill import Tee, ensure_replica, recheck
from skyplug.plugins.locators.multisite.placement import HEALTH, Candidate, fills_on_read, rank

log = logging.getLogger("skyplug.multisite")

FILL_FIRST_BYTES = 8 * 1024 * 1024  # objects up to this size are filled before a partial read too
SPOOL_IN_MEMORY = 64 * 1024 * 1024  # a whole read is held in memory up to this size, then on disk


class SkySource(Source):
    """One logical object version; ``version`` is its content checksum (``sha256:...``)."""

    def __init__(self, ctx: Context, obj: Obj, at: str | None) -> None:
        super().__init__(obj.uri, expected_version=obj.version)
        self._size, self._version = obj.size, obj.version
        self.ctx, self.obj, self.at = ctx, obj, at
        self._lock = threading.Lock()
        self._prepared = False
        self._candidates: list[Candidate] | None = None
        self._rechecked = False
        self._physical: dict[int, Source] = {}
        self._touched: set[int] = set()
        self._traced = False
        self.served_by: str | None = None
        self.fill_thread: threading.Thread | None = None
        self.fill_error: SkyplugError | None = None

    def _head(self) -> tuple[int, str]:
        return self.obj.size, self.obj.version

    def candidates(self) -> list[Candidate]:
        """The ranked ready replicas (cached until a replica turns bad or a fill completes)."""
        with self._lock:
            if self._candidates is None:
                if not self._rechecked and not self.ctx.db.readonly:
                    recheck(self.ctx, self.obj)  # replicas recorded on a site since redeployed
                    self._rechecked = True
                self._candidates = rank(self.ctx.settings, self.ctx.db, self.obj, self.at)
            return list(self._candidates)

    def _forget(self) -> None:
        with self._lock:
            self._candidates = None

    def needs_fill(self) -> bool:
        """Copy-on-read applies here and the client's site has no ready replica yet."""
        return fills_on_read(self.ctx.settings, self.obj, self.at) and not any(
            c.local for c in self.candidates()
        )

    # --- reads ------------------------------------------------------------------------------
    def _fetch_all(
        self, plan: list[Range], version: str, into: Sequence[memoryview] | None = None
    ) -> list[bytes]:
        """The base class checked and planned the ranges; the first read may fill a local replica."""
        if not self._prepared:
            self._prepare(plan)
        return super()._fetch_all(plan, version, into)

    def _prepare(self, plan: Sequence[Range]) -> None:
        """Before the first read: fill the local replica first, or start filling it in the background."""
        self._prepared = True
        if not self.needs_fill():
            return
        whole = sum(e - s for s, e in plan) >= self.obj.size  # planned reads cover the object
        if whole or self.obj.size <= FILL_FIRST_BYTES:
            self._fill(wait=True)
        else:
            self.fill_thread = threading.Thread(
                target=self._fill, kwargs={"wait": False}, name="skyplug-fill", daemon=False
            )
            self.fill_thread.start()

    def _fill(self, wait: bool, tee: Tee | None = None, warn: bool = True) -> tuple[Replica | None, bool]:
        """(the local replica, whether this call filled it); (None, False) when the fill failed,
        its error kept in ``fill_error`` (and logged as a warning with ``warn``)."""
        assert self.at is not None
        try:
            rep, filled = ensure_replica(self.ctx, self.obj, self.at, wait=wait, tee=tee)
        except SkyplugError as exc:  # the read goes on from the remote replicas
            self.fill_error = exc
            if warn:
                log.warning("%s: copy-on-read at %s failed: %s", self.uri, self.at, exc)
            return None, False
        finally:
            self._forget()  # a new local replica, or sources found bad on the way
        if filled and rep is not None and wait:  # this read moved the bytes: trace where from
            self._accessed_from(rep.source_site)
        return rep, filled

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        errors: list[str] = []
        kinds: set[str] = set()
        cands = self.candidates()
        for cand in cands:
            rep = cand.replica
            src = self._source(rep)
            t0 = time.monotonic()
            try:
                data = src.read(start, end)
            except (StaleObjectError, NotFound, SiteError) as exc:
                kinds.add(self._failed(rep, exc, errors))
                continue
            HEALTH.ok(rep.site, time.monotonic() - t0, self.ctx.db)
            self._accessed(rep)
            return data
        if not cands:
            raise NotFound(f"{self.uri}: no ready replica at any site")
        raise _every_replica_failed(kinds)(
            f"{self.uri} bytes {start}-{end}: every replica failed: " + "; ".join(errors)
        )

    def _failed(self, rep: Replica, exc: Exception, errors: list[str]) -> str:
        """Note why a replica could not serve: changed or gone (marked bad), or its site failed."""
        errors.append(f"site {rep.site!r}: {exc}")
        if isinstance(exc, StaleObjectError | NotFound):
            self.ctx.db.mark_bad(rep.id, f"changed or removed behind our back: {exc}")
            self._forget()
            return "stale"
        HEALTH.failed(rep.site, self.ctx.db)
        return "site"

    def _source(self, rep: Replica) -> Source:
        with self._lock:
            src = self._physical.get(rep.id)
            if src is None:
                site = self.ctx.site(rep.site)
                src = physical.open_source(site, rep.pbucket, rep.pkey, rep.etag, self.obj.size)
                src.retries = 1  # other replicas are the retry
                self._physical[rep.id] = src
            return src

    def _accessed(self, rep: Replica) -> None:
        """Refresh the replica's last access once per open, and trace the access once."""
        with self._lock:
            first_touch = rep.id not in self._touched
            self._touched.add(rep.id)
            first_trace = not self._traced
            self._traced = True
            self.served_by = self.served_by or rep.site
        if first_touch:
            self.ctx.db.touch(rep.id)
        if first_trace:
            self.ctx.trace("GET", f"{self.obj.bucket}/{self.obj.key}", self.obj.size, self.at, rep.site)

    def write_to(self, out: BinaryIO, start: int = 0, end: int | None = None) -> int:
        """Stream bytes [start, end) to ``out``. A whole read emits only bytes whose sha256 was
        checked (filling the local replica first under copy-on-read); a range is read as is."""
        end = self.obj.size if end is None else end
        if start == 0 and end == self.obj.size:
            self._prepared = True
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
                self._read_verified(spool)
                shutil.copyfileobj(spool, out, physical.PIECE)
            return end
        for data in physical.iter_chunks(self, start=start, end=end):
            out.write(data)
        return end - start

    def _read_verified(self, spool: IO[bytes]) -> None:
        """Put the object's bytes, verified against its version, into ``spool`` (rewound).

        Under copy-on-read the fill's own stream is kept (it is verified before the replica turns
        ready); otherwise, or when the fill failed, replicas are read whole in rank order until one
        matches, the ones that do not being marked bad.
        """

        def keep(pos: int, data: bytes) -> None:
            if pos == 0:  # the fill (re)started from another source
                spool.seek(0)
                spool.truncate()
            spool.write(data)

        if self.needs_fill():
            rep, filled = self._fill(wait=True, tee=keep, warn=False)
            if rep is not None and filled and spool.tell() == self.obj.size:
                spool.seek(0)
                return
        errors: list[str] = []
        kinds: set[str] = set()
        cands = self.candidates()
        for cand in cands:
            rep = cand.replica
            spool.seek(0)
            spool.truncate()
            hasher = hashlib.sha256()
            t0 = time.monotonic()
            try:
                for data in physical.stream(self._source(rep)):
                    hasher.update(data)
                    spool.write(data)
            except (StaleObjectError, NotFound, SiteError) as exc:
                kinds.add(self._failed(rep, exc, errors))
                continue
            got = "sha256:" + hasher.hexdigest()
            if spool.tell() != self.obj.size or got != self.obj.version:
                note = f"checksum mismatch: read {got} ({spool.tell()} bytes) while serving a read"
                self.ctx.db.mark_bad(rep.id, note)
                self._forget()
                errors.append(f"site {rep.site!r}: {note}")
                kinds.add("stale")
                continue
            HEALTH.ok(rep.site, time.monotonic() - t0, self.ctx.db)
            self._accessed(rep)
            spool.seek(0)
            return
        if self.fill_error is not None:  # what the fill found wrong comes first
            errors.insert(0, str(self.fill_error).removeprefix(f"{self.uri}: "))
            kinds.add("site")
        if not errors:
            raise NotFound(f"{self.uri}: no ready replica at any site")
        raise _every_replica_failed(kinds)(
            f"{self.uri}: no replica could be read and verified: " + "; ".join(errors)
        )

    def _accessed_from(self, site: str | None) -> None:
        """Trace this access as served by ``site`` (the source of the fill it caused)."""
        with self._lock:
            if self._traced:
                return
            self._traced = True
            self.served_by = site
        self.ctx.trace("GET", f"{self.obj.bucket}/{self.obj.key}", self.obj.size, self.at, site)


def _every_replica_failed(kinds: set[str]) -> type[SkyplugError]:
    """The error when no replica served: stale if every one changed or vanished, a site error if
    some did, else transient (only sites failed: the caller's retries may get through)."""
    if kinds == {"stale"}:
        return StaleObjectError
    return SiteError if "stale" in kinds else TransientError


class SkyTree(Tree):
    """The logical objects under a ``sky://bucket/prefix`` (an MS written as a folder)."""

    def __init__(self, ctx: Context, uri: str, prefix: str, objects: list[Obj], at: str | None) -> None:
        super().__init__(uri)
        self.ctx, self.at, self.prefix = ctx, at, prefix.rstrip("/") + "/"
        self._objects = {o.key[len(self.prefix) :]: o for o in objects}
        self._open: dict[str, SkySource] = {}

    @property
    def version(self) -> str:
        text = "\n".join(f"{k}\t{o.version}" for k, o in sorted(self._objects.items()))
        return "tree-" + hashlib.sha256(text.encode()).hexdigest()[:24]

    def members(self) -> dict[str, int]:
        return {k: o.size for k, o in self._objects.items()}

    def source(self, member: str) -> Source:
        if member not in self._open:
            if member not in self._objects:
                raise NotFound(f"{self.uri}: no member {member!r}")
            self._open[member] = SkySource(self.ctx, self._objects[member], self.at)
        return self._open[member]

    def _sources(self) -> list[Source]:
        return list(self._open.values())


def open_sky(
    uri: URI, at: str | None = None, version: str | None = None, ctx: Context | None = None
) -> Source | Tree:
    """Open ``sky://bucket/key`` for a client at ``at`` (default: the configured client_site)."""
    ctx = ctx or get_context()
    at = ctx.client_site(at)
    if not uri.key:
        raise NotFound(f"{uri}: no key after the bucket")
    if version is None or not version.startswith("tree-"):
        obj = ctx.db.version(uri.bucket, uri.key, version) if version else ctx.db.latest(uri.bucket, uri.key)
        if obj is not None:
            return SkySource(ctx, obj, at)
        if version is not None:
            raise StaleObjectError(f"{uri}: version {version} is not recorded (the object changed)")
    objects = ctx.db.listing(uri.bucket, uri.key)
    if not objects:
        raise NotFound(f"{uri}: no such object or prefix in the location DB")
    tree = SkyTree(ctx, str(uri), uri.key, objects, at)
    if version is not None and tree.version != version:
        raise StaleObjectError(f"{uri}: objects changed since indexed")
    return tree


class SkyLocator(Locator):
    """Opens ``sky://`` URIs. The site passed by the core is taken as the client's site only
    when no ``client_site`` is configured (the core passes the default site)."""

    name = "sky"
    uri_sites = {"sky": NAMED_SITE}  # the namespace spans sites: one named says where the client is

    def open(
        self, uri: URI, site: Site | None, *, version: str | None = None, hint: Any = None
    ) -> Source | Tree:
        ctx = get_context()
        at = ctx.settings.client_site or (site.name if site is not None else None)
        return open_sky(uri, at, version, ctx)
