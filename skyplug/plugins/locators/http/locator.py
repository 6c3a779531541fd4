"""``http://`` and ``https://`` URLs: read-only objects read by Range requests (presigned S3 URLs too).

Through urllib3 rather than fsspec's HTTPFileSystem: it is synchronous, so reads run in the
Source's own bounded pool (no aiohttp event loop per worker thread); every request carries its own
conditional header (``If-Match`` on the ETag, else ``If-Unmodified-Since``), its own timeouts and
no retries of its own (the Source retries 5xx and resets, once); and it is already installed with
boto3 and requests. Needs no site: a URL names its server.

The version of an object is its strong ETag, else ``Last-Modified`` with its size; every response
is checked against it as well, for servers that ignore conditional headers (Last-Modified has a
one-second resolution: without a strong ETag, a same-size rewrite within that second is not seen).
A server that ignores ``Range`` (answers 200 with the whole object) is refused with one line, not
downloaded whole.
URLs are shown without their query (a presigned URL's signature) or user info.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from skyplug.core.config import Site
from skyplug.core.errors import ConfigError, NotFound, PluginError, SiteError, StaleObjectError
from skyplug.core.locator import NO_SITE, Locator
from skyplug.core.source import Source, TransientError, Tree
from skyplug.core.uri import URI, display_uri

CONNECT_TIMEOUT = 5.0  # seconds
READ_TIMEOUT = 30.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)|bytes \*/(\d+)")
_pool: Any = None
_pool_lock = threading.Lock()


def _urllib3(uri: str) -> Any:
    try:
        import urllib3
    except ImportError:
        raise PluginError(f"{uri}: needs urllib3: pip install 'skyplug[http]'") from None
    return urllib3


def pool(uri: str) -> Any:
    """The process-wide urllib3 pool (redirects followed, no retries: the Source retries)."""
    global _pool
    urllib3 = _urllib3(uri)
    with _pool_lock:
        if _pool is None:
            _pool = urllib3.PoolManager(
                maxsize=32,
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5),
            )
        return _pool


def version_of(headers: Any, size: int) -> str | None:
    """The object's version from response headers: a strong ETag, else Last-Modified and size."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = headers.get("Last-Modified")
    return f"modified:{modified};{size}" if modified else None


def _cause(exc: Exception) -> str:
    """The last part of urllib3's connection error (``[Errno 111] Connection refused``)."""
    return str(exc).rsplit(": ", 1)[-1] or type(exc).__name__


class HTTPSource(Source):
    """One object behind an HTTP(S) URL, read by conditional Range requests."""

    def __init__(self, url: str, *, expected_version: str | None = None) -> None:
        super().__init__(display_uri(url), expected_version=expected_version)
        self.url = url

    def _request(self, start: int, end: int, version: str | None) -> Any:
        urllib3 = _urllib3(self.uri)
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        if version is not None and version.startswith("modified:"):
            headers["If-Unmodified-Since"] = version[len("modified:") :].rsplit(";", 1)[0]
        elif version is not None:
            headers["If-Match"] = version
        try:
            resp = pool(self.uri).request("GET", self.url, headers=headers, preload_content=False)
        except urllib3.exceptions.MaxRetryError as exc:
            reason = exc.reason
            if isinstance(reason, urllib3.exceptions.NewConnectionError):  # refused, unknown host
                raise SiteError(f"{self.uri}: cannot connect ({_cause(reason)})") from None
            raise TransientError(f"{self.uri}: cannot connect ({type(reason).__name__})") from None
        except urllib3.exceptions.LocationValueError as exc:
            raise ConfigError(f"{self.uri}: not a valid URL ({exc})") from None
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"{self.uri}: network error ({type(exc).__name__})") from None
        status = resp.status
        if status in (200, 206, 416):
            return resp
        resp.drain_conn()  # an error's body: small
        if status == 404 or status == 410:
            raise (NotFound if version is None else StaleObjectError)(
                f"{self.uri}: {'no such object' if version is None else 'object removed since indexed'} "
                f"(HTTP {status})"
            )
        if status == 412:
            raise StaleObjectError(f"{self.uri}: object changed since it was indexed (HTTP 412)")
        if status in (401, 403):
            raise SiteError(f"{self.uri}: access refused (HTTP {status}); an expired presigned URL?")
        if status >= 500 or status == 429:
            raise TransientError(f"{self.uri}: server error (HTTP {status})")
        raise SiteError(f"{self.uri}: unexpected HTTP {status}")

    def _head(self) -> tuple[int, str]:
        # a one-byte GET, not a HEAD: a presigned URL is signed for GET only
        resp = self._request(0, 1, None)
        try:
            if resp.status == 200:
                resp.close()  # the whole object follows: drop the connection
                raise SiteError(f"{self.uri}: the server ignores Range requests (answered 200, not 206)")
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
            total = match and (match.group(3) or match.group(4))
            if not total or total == "*":
                raise SiteError(f"{self.uri}: no object size in the answer (Content-Range missing)")
            size = int(total)
            version = version_of(resp.headers, size)
            if version is None:
                raise SiteError(f"{self.uri}: no ETag or Last-Modified: a change could not be detected")
            resp.read()
            return size, version
        finally:
            resp.release_conn()

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        resp = self._request(start, end, version)
        try:
            if resp.status != 206:
                resp.close()  # maybe the whole object: drop the connection
                what = "ignores Range requests" if resp.status == 200 else f"answered HTTP {resp.status}"
                raise SiteError(f"{self.uri}: bytes {start}-{end}: the server {what}")
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
            if not match or match.group(1) is None or int(match.group(1)) != start:
                raise SiteError(f"{self.uri}: bytes {start}-{end}: the answer is another range")
            got = version_of(resp.headers, int(match.group(3)) if match.group(3) != "*" else -1)
            if got is not None and got != version:
                raise StaleObjectError(f"{self.uri}: object changed since it was indexed")
            return bytes(resp.read())
        except (StaleObjectError, SiteError):
            raise
        except Exception as exc:  # a body cut mid-way
            raise TransientError(f"{self.uri}: bytes {start}-{end}: {type(exc).__name__}") from None
        finally:
            resp.release_conn()


class HTTPLocator(Locator):
    """Opens ``http(s)://`` URLs as read-only objects (a URL is never a folder)."""

    name = "http"
    uri_sites = {"http": NO_SITE, "https": NO_SITE}

    def open(
        self, uri: URI, site: Site | None, *, version: str | None = None, hint: Any = None
    ) -> Source | Tree:
        src = HTTPSource(str(uri), expected_version=version)
        if version is None:
            src.size  # noqa: B018 - fails now (404, no Range) rather than at the first read
        return src
