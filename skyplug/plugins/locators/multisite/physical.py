"""Physical replicas on a site: where they live, how they are read, written, checked and removed.

Reads reuse the s3 and local locators' Sources (ranged, If-Match with the ETag read from the same
site). Writes stream: bytes are hashed by skyplug as they pass (sha256 for the logical version,
MD5 per 5 MiB part to check the ETag the server returns), never trusting server-side checksums.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from skyplug.core.config import Site
from skyplug.core.errors import NotFound, SiteError, SkyplugError
from skyplug.core.paths import site_join
from skyplug.core.source import BACKOFF, Source, TransientError
from skyplug.plugins.locators.local import LocalSiteOptions, LocalSource, file_version, local_options
from skyplug.plugins.locators.s3 import S3SiteOptions, S3Source, client_for, translate

PART_SIZE = 5 * 1024 * 1024  # multipart part size, also the ETag check's part size
CHUNK = 4 * 1024 * 1024  # bytes per ranged GET while streaming a replica
AHEAD = 4  # ranged GETs in flight while streaming
PIECE = 1024 * 1024  # bytes handed on at a time from a streaming GET


def _s3(site: Site) -> S3SiteOptions | None:
    """The site's S3 settings; None for a local site; SiteError for a type that holds no replicas."""
    settings = site.settings
    if isinstance(settings, S3SiteOptions):
        return settings
    if isinstance(settings, LocalSiteOptions):
        return None
    raise SiteError(f"site {site.name!r}: type {site.type!r} cannot hold multi-site replicas")


def is_s3(site: Site) -> bool:
    """True for an S3 site (its ETags can be checked against MD5s), False for a local one."""
    return _s3(site) is not None


def fixed_bucket(site: Site) -> str | None:
    """The one bucket an S3 site keeps every logical bucket in (as a prefix), if it has one."""
    s3 = _s3(site)
    return s3.bucket if s3 is not None else None


def location(site: Site, bucket: str, pkey: str) -> tuple[str, str]:
    """(physical bucket, physical key) of an object's replica at a site.

    A site with a fixed ``bucket`` keeps every logical bucket under it as a prefix.
    """
    fixed = fixed_bucket(site)
    return (fixed, f"{bucket}/{pkey}") if fixed else (bucket, pkey)


def new_pkey(key: str) -> str:
    """A fresh physical key for a new object version: ``.sky/<key>~<write id>``."""
    return f".sky/{key}~{uuid.uuid4().hex[:16]}"


def describe(site: Site, pbucket: str, pkey: str) -> str:
    """A replica's physical address, for messages and ``locate``."""
    if not is_s3(site):
        return str(_root(site) / pbucket / pkey)
    return f"s3://{pbucket}/{pkey}"


class _S3Replica(S3Source):
    """S3Source that can also stream a range, resuming where a broken connection stopped."""

    def _broken(self, exc: Exception, start: int, end: int) -> Exception:
        err = translate(exc, f"{self.uri} bytes {start}-{end}", self.site)
        if isinstance(err, SkyplugError):
            return err
        return TransientError(
            f"{self.uri} bytes {start}-{end} on site {self.site.name!r}: "
            f"connection broken ({type(exc).__name__})"
        )

    def stream(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) from one GET (If-Match this site's ETag), read as they arrive; a
        connection broken mid-way resumes at the offset reached, up to ``retries`` times."""
        pos, attempt = start, 0
        while pos < end:
            try:
                resp = self.client.get_object(
                    Bucket=self.bucket, Key=self.key, Range=f"bytes={pos}-{end - 1}", IfMatch=self.version
                )
                for data in resp["Body"].iter_chunks(PIECE):
                    pos += len(data)
                    self.stats.add(len(data))
                    yield data
                if pos < end:
                    raise TransientError(f"{self.uri} on site {self.site.name!r}: body ended at byte {pos}")
            except TransientError:
                if attempt >= self.retries:
                    raise
            except SkyplugError:
                raise
            except Exception as exc:
                err = self._broken(exc, pos, end)
                if not isinstance(err, TransientError) or attempt >= self.retries:
                    raise err from None
            else:
                continue
            attempt += 1
            time.sleep(BACKOFF * attempt)


def stream(src: Source, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """A replica's bytes in order: one streaming GET on S3 (a long link stays busy with one round
    trip), ranged reads with some in flight elsewhere."""
    end = src.size if end is None else end
    if isinstance(src, _S3Replica):
        return src.stream(start, end)
    return iter_chunks(src, start=start, end=end)


def open_source(site: Site, pbucket: str, pkey: str, etag: str | None, size: int | None = None) -> Source:
    """A Source on one replica; reads are conditional on the site's own version (ETag / mtime)."""
    if is_s3(site):
        return _S3Replica(site, pbucket, pkey, expected_version=etag, size=size)
    return LocalSource(_path(site, pbucket, pkey), expected_version=etag)


def _root(site: Site) -> Path:
    return local_options(site).root


def _path(site: Site, pbucket: str, pkey: str) -> Path:
    return site_join(_root(site), f"{pbucket}/{pkey}", site.name)


class Hasher:
    """sha256 and MD5 of a byte stream, plus the multipart ETag it would get with PART_SIZE parts."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()
        self.size = 0
        self._parts: list[bytes] = []
        self._part = hashlib.md5()
        self._part_len = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            take = min(len(view), PART_SIZE - self._part_len)
            self._part.update(view[:take])
            self._part_len += take
            view = view[take:]
            if self._part_len == PART_SIZE:
                self._parts.append(self._part.digest())
                self._part, self._part_len = hashlib.md5(), 0

    @property
    def version(self) -> str:
        return "sha256:" + self.sha256.hexdigest()

    def etags(self) -> set[str]:
        """ETags a correct upload of these bytes may carry (single PUT, or PART_SIZE multipart)."""
        parts = self._parts + ([self._part.digest()] if self._part_len else [])
        multi = hashlib.md5(b"".join(parts)).hexdigest() + f"-{len(parts)}"
        return {self.md5.hexdigest(), multi}


class _Reader:
    """A file object over chunks (what boto3's upload_fileobj reads), hashing what passes."""

    def __init__(self, chunks: Iterable[bytes], hasher: Hasher) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = b""
        self.hasher = hasher

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                chunk = next(self._it)
            except StopIteration:
                break
            self.hasher.update(chunk)
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def ensure_bucket(site: Site, pbucket: str) -> None:
    """Create the physical bucket (or folder) if it is missing."""
    s3 = _s3(site)
    if s3 is None:
        (_root(site) / pbucket).mkdir(parents=True, exist_ok=True)
        return
    client = client_for(site)
    try:
        client.head_bucket(Bucket=pbucket)
        return
    except Exception as exc:
        err = translate(exc, f"s3://{pbucket}", site)
        if not isinstance(err, NotFound):
            raise err from None
    region = s3.region or "us-east-1"
    extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        client.create_bucket(Bucket=pbucket, **extra)
    except Exception as exc:
        if "BucketAlreadyOwnedByYou" not in str(exc):
            raise translate(exc, f"create bucket {pbucket}", site) from None


def write_stream(
    site: Site,
    pbucket: str,
    pkey: str,
    chunks: Iterable[bytes],
    still_owner: Callable[[], bool] = lambda: True,
) -> tuple[Hasher, str]:
    """Write a replica from a stream; (hasher of the bytes sent, the site's version of what it stored).

    S3: multipart (5 MiB parts) through boto3's TransferConfig; the stored object is checked by its
    ETag against the MD5s computed here. Local: a temporary file, fsync, then an atomic rename, done
    only if ``still_owner()`` (the fill lease was not lost meanwhile).
    """
    hasher = Hasher()
    ensure_bucket(site, pbucket)
    what = f"{describe(site, pbucket, pkey)} on site {site.name!r}"
    if not is_s3(site):
        path = _path(site, pbucket, pkey)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.part-{uuid.uuid4().hex[:12]}")
        try:
            with tmp.open("wb") as fh:
                for chunk in chunks:
                    hasher.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if not still_owner():
                raise SiteError(f"{what}: fill lease lost before the rename")
            os.replace(tmp, path)
        except SkyplugError:  # the source's error (several are OSErrors too): not this site's
            raise
        except OSError as exc:
            raise SiteError(f"{what}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        st = path.stat()
        if st.st_size != hasher.size:
            raise SiteError(f"{what}: stored {st.st_size} bytes, sent {hasher.size}")
        return hasher, file_version(st)
    from boto3.s3.transfer import TransferConfig

    client = client_for(site)
    cfg = TransferConfig(
        multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4, use_threads=True
    )
    try:
        client.upload_fileobj(_Reader(chunks, hasher), pbucket, pkey, Config=cfg)
        head = client.head_object(Bucket=pbucket, Key=pkey)
    except SkyplugError:  # the source's error, raised through the upload: not the destination's
        raise
    except Exception as exc:
        raise translate(exc, what, site) from None
    etag = head["ETag"]
    if int(head["ContentLength"]) != hasher.size:
        raise SiteError(f"{what}: stored {head['ContentLength']} bytes, sent {hasher.size}")
    if (
        etag.strip('"') not in hasher.etags()
        and read_checksum(open_source(site, pbucket, pkey, etag)) != hasher.version
    ):
        raise SiteError(f"{what}: the stored bytes differ from the bytes sent")
    return hasher, etag


def read_checksum(src: Source, chunk: int = CHUNK) -> str:
    """``sha256:<hex>`` of a whole replica, read by ranges (a verification pass)."""
    h = hashlib.sha256()
    for data in iter_chunks(src, chunk):
        h.update(data)
    return "sha256:" + h.hexdigest()


def iter_chunks(
    src: Source, chunk: int = CHUNK, start: int = 0, end: int | None = None, ahead: int = AHEAD
) -> Iterator[bytes]:
    """The bytes of a Source in order, ``chunk`` at a time, with ``ahead`` ranged GETs in flight.

    Several GETs in flight keep a long link busy across round trips, like one streaming GET.
    """
    end = src.size if end is None else end
    starts = iter(range(start, end, chunk))
    with ThreadPoolExecutor(ahead, thread_name_prefix="skyplug-prefetch") as pool:
        pending: deque[Future[bytes]] = deque()

        def submit() -> None:
            pos = next(starts, None)
            if pos is not None:
                pending.append(pool.submit(src.read, pos, min(pos + chunk, end)))

        for _ in range(ahead):
            submit()
        try:
            while pending:
                data = pending.popleft().result()
                submit()
                yield data
        finally:
            for fut in pending:
                fut.cancel()


def delete(site: Site, pbucket: str, pkey: str) -> None:
    """Remove a replica's bytes, and any unfinished upload or temporary file of it."""
    if not is_s3(site):
        path = _path(site, pbucket, pkey)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if path.parent.is_dir():
            for tmp in path.parent.glob(f"{path.name}.part-*"):
                tmp.unlink(missing_ok=True)
        return
    client = client_for(site)
    what = f"{describe(site, pbucket, pkey)} on site {site.name!r}"
    try:
        client.delete_object(Bucket=pbucket, Key=pkey)
        uploads = client.list_multipart_uploads(Bucket=pbucket, Prefix=pkey).get("Uploads", ())
        for up in uploads:
            if up["Key"] == pkey:
                client.abort_multipart_upload(Bucket=pbucket, Key=pkey, UploadId=up["UploadId"])
    except Exception as exc:
        err = translate(exc, what, site)
        if not isinstance(err, NotFound):
            raise err from None
