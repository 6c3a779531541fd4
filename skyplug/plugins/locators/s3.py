"""S3 sites (``type = "s3"``) through boto3: ranged, conditional (If-Match) reads.

Credentials come from the environment (``SKYPLUG_SITE_<NAME>_ACCESS_KEY_ID`` /
``..._SECRET_ACCESS_KEY`` for one site, else the AWS variables) or the site's AWS ``profile``.
They are never stored in a descriptor and never printed.

With no site configured at all, or ``--site env``, ``s3://`` URIs are read on the implicit site ``env``:
the plain AWS environment, as boto3 and s3fs read it (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
or the profile's ``endpoint_url``, ``AWS_PROFILE``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or the
profile's region, and the standard credential chain). It is resolved once per process and written
nowhere; a configured site named ``env`` replaces it.

An S3 site's options (``[sites.NAME]``, all optional): ``endpoint`` (URL; default AWS), ``region``
(default us-east-1), ``bucket`` (a fixed bucket, for the multi-site namespace), ``profile`` (an AWS
profile), ``addressing`` (``"path"``, the default, or ``"virtual"``), and the client's
``connect_timeout`` (s, 5), ``read_timeout`` (s, 30) and ``max_pool_connections`` (32).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from skyplug.core.config import Config, Site
from skyplug.core.errors import ConfigError, NotFound, SiteError, StaleObjectError
from skyplug.core.hookspecs import hookimpl
from skyplug.core.locator import ON_SITE, Locator
from skyplug.core.logs import redact_url
from skyplug.core.plugins import Spec
from skyplug.core.source import Source, TransientError, Tree
from skyplug.core.uri import URI

_AUTH_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "RequestTimeTooSkewed",
    "403",
}
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()
# Client options that may travel in a partition descriptor or ``skyplug sites --json``.
PUBLIC_OPTIONS = ("connect_timeout", "read_timeout", "max_pool_connections")
_FIELDS = ("endpoint", "region", "bucket", "profile", "addressing")
_ENV_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
READ_PIECE = 256 * 1024  # bytes of a GET's body read into a caller's buffer at a time


@dataclass(frozen=True)
class S3SiteOptions:
    """An S3 site's settings (see the module's docstring)."""

    name: str
    endpoint: str | None = None
    region: str | None = None
    bucket: str | None = None
    profile: str | None = None
    addressing: str = "path"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_pool_connections: int = 32
    given: dict[str, Any] = field(default_factory=dict, compare=False)  # client options as written

    def identity(self) -> str:
        """type + endpoint (region on AWS) + bucket."""
        where = redact_url(self.endpoint) if self.endpoint else f"aws:{self.region or 'us-east-1'}"
        return f"s3:{where}/{self.bucket or ''}"

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _FIELDS if getattr(self, k) not in (None, "")}
        if self.given:
            out["options"] = dict(self.given)
        return out

    def where(self) -> str:
        return f"{self.endpoint or 'AWS'} ({self.region or 'us-east-1'})"


IMPLICIT_SITE = "env"  # the site of s3:// URIs when no site is configured, or when it is named


def config_error(exc: Exception, where: str) -> ConfigError | None:
    """botocore's configuration errors (unknown profile, bad endpoint URL, no region, a broken
    ~/.aws/config) as one ConfigError line; None for anything else."""
    from botocore.exceptions import BotoCoreError

    name = type(exc).__name__
    if name == "ProfileNotFound":
        profile = getattr(exc, "kwargs", {}).get("profile")
        return ConfigError(f"{where}: AWS profile {profile!r} not found (AWS_PROFILE or the site's profile)")
    if isinstance(exc, ValueError) and "endpoint" in str(exc).lower():
        return ConfigError(f"{where}: {redact_url(str(exc))} (AWS_ENDPOINT_URL or the site's endpoint)")
    if isinstance(exc, BotoCoreError) and "Credential" not in name:
        return ConfigError(f"{where}: {name}: {redact_url(str(exc))}")
    return None


def from_environment(site: Site) -> S3SiteOptions:
    """The implicit site's settings: endpoint, region and profile as boto3 resolves them."""
    import boto3

    where = f"site {site.name!r} (the AWS environment)"
    profile = os.environ.get("AWS_PROFILE") or None
    try:
        session = boto3.session.Session(profile_name=profile)
        region = os.environ.get("AWS_REGION") or session.region_name or None
        endpoint = session.client("s3", region_name=region or "us-east-1").meta.endpoint_url
    except Exception as exc:
        raise (config_error(exc, where) or exc) from None
    if endpoint and (urlsplit(endpoint).hostname or "").endswith(".amazonaws.com"):
        endpoint = None  # AWS itself: chosen by region
    return S3SiteOptions(site.name, endpoint=endpoint, region=region, profile=profile)


def parse_site(site: Site) -> S3SiteOptions:
    """Check an S3 site's options and type them."""
    opts = site.options
    if opts.get("from_env"):
        return from_environment(site)
    named: dict[str, Any] = {k: str(opts[k]) for k in _FIELDS if opts.get(k) is not None}
    if named.get("addressing", "path") not in ("path", "virtual"):
        raise ConfigError(f"site {site.name!r}: addressing must be 'path' or 'virtual'")
    given = {k: opts[k] for k in PUBLIC_OPTIONS if k in opts}
    tuning: dict[str, Any] = {}
    for key, value in given.items():
        try:
            tuning[key] = (int if key == "max_pool_connections" else float)(value)
        except (TypeError, ValueError):
            raise ConfigError(f"site {site.name!r}: {key} must be a number, not {value!r}") from None
    return S3SiteOptions(site.name, **named, **tuning, given=given)


def s3_options(site: Site) -> S3SiteOptions:
    """The settings of an S3 site (ConfigError when it is of another type)."""
    settings = site.settings
    if not isinstance(settings, S3SiteOptions):
        raise ConfigError(f"site {site.name!r} is not an S3 site (type {site.type!r})")
    return settings


def _site_env(site: Site, what: str) -> str | None:
    return os.environ.get(f"SKYPLUG_SITE_{site.name.upper().replace('-', '_')}_{what}")


def client_for(site: Site) -> Any:
    """A boto3 S3 client for a site (cached, thread-safe). skyplug does its own retries."""
    opts = s3_options(site)
    key_id, secret = _site_env(site, "ACCESS_KEY_ID"), _site_env(site, "SECRET_ACCESS_KEY")
    cache_key = (
        site.name,
        opts.endpoint,
        opts.region,
        opts.addressing,
        opts.profile,
        key_id,
        hashlib.sha256((secret or "").encode()).hexdigest(),
        hashlib.sha256(  # the chain's environment credentials, should they change (tests)
            "\0".join(os.environ.get(k, "") for k in _ENV_CREDENTIALS).encode()
        ).hexdigest(),
    )
    with _clients_lock:
        if cache_key not in _clients:
            try:
                _clients[cache_key] = _make_client(opts, key_id, secret)
            except Exception as exc:
                raise (config_error(exc, f"site {site.name!r}") or exc) from None
        return _clients[cache_key]


def _make_client(opts: S3SiteOptions, key_id: str | None, secret: str | None) -> Any:
    """A new boto3 S3 client for a site's settings."""
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session(profile_name=opts.profile) if opts.profile else boto3.session.Session()
    cfg = BotoConfig(
        region_name=opts.region or "us-east-1",
        s3={"addressing_style": opts.addressing},
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=opts.connect_timeout,
        read_timeout=opts.read_timeout,
        max_pool_connections=opts.max_pool_connections,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # a site is what its settings say: AWS_ENDPOINT_URL does not redirect a site without an
        # endpoint (AWS); the implicit site has already resolved it into its settings
        ignore_configured_endpoint_urls=True,
    )
    # skyplug reads no timestamps: skip parsing them (40% of a LIST's client time)
    parsers = session._session.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=lambda value: value)
    kwargs: dict[str, Any] = {"endpoint_url": opts.endpoint, "config": cfg}
    if key_id and secret:
        kwargs.update(aws_access_key_id=key_id, aws_secret_access_key=secret)
    return session.client("s3", **kwargs)


def translate(exc: Exception, what: str, site: Site) -> Exception:
    """A boto/network exception as a skyplug error naming the object and the site, never secrets."""
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError as Urllib3Error  # a body cut mid-way: ProtocolError

    where = f"{what} on site {site.name!r} ({s3_options(site).endpoint or 'AWS'})"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            return NotFound(f"{where}: no such object or bucket")
        if status == 412 or code in ("PreconditionFailed", "412"):
            return StaleObjectError(f"{where}: object changed since it was indexed (If-Match failed)")
        if code in _AUTH_CODES or status == 403:
            return SiteError(f"{where}: access refused ({code or status}); check the site's credentials")
        if status >= 500 or code in _TRANSIENT_CODES:
            return TransientError(f"{where}: server error {status} {code}")
        return SiteError(f"{where}: {code or status}: {err.get('Message', '')}".rstrip(": "))
    if isinstance(exc, BotoCoreError | ConnectionError | TimeoutError | OSError | Urllib3Error):
        name = type(exc).__name__
        if "Credential" in name:
            return SiteError(
                f"{where}: no credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                "or SKYPLUG_SITE_<NAME>_ACCESS_KEY_ID / _SECRET_ACCESS_KEY)"
            )
        if "Connect" in name:
            return TransientError(f"{where}: cannot connect ({name})")
        return TransientError(f"{where}: network error ({name})")
    return exc


class S3Source(Source):
    """One S3 object; every GET carries ``If-Match`` with the version read from the same site."""

    def __init__(
        self,
        site: Site,
        bucket: str,
        key: str,
        *,
        expected_version: str | None = None,
        size: int | None = None,
    ) -> None:
        super().__init__(f"s3://{bucket}/{key}", expected_version=expected_version)
        self.site, self.bucket, self.key = site, bucket, key
        self.client = client_for(site)
        if size is not None:
            self._size = size

    def _head(self) -> tuple[int, str]:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            raise translate(exc, self.uri, self.site) from None
        return int(head["ContentLength"]), head["ETag"]

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        try:
            with self._get(start, end, version) as body:
                return body.read()
        except Exception as exc:
            raise translate(exc, f"{self.uri} bytes {start}-{end}", self.site) from None

    def _fetch_into(self, start: int, end: int, version: str, out: memoryview) -> int:
        """The body read into ``out``: straight from the socket where botocore's body wraps a
        urllib3 stream over http.client (botocore asks urllib3 not to decode it: the bytes are
        the wire's), else through botocore's body."""
        where = f"{self.uri} bytes {start}-{end}"
        try:
            with contextlib.closing(self._get(start, end, version)) as body:
                stream = _wire(body)
                return _read_body(body, out) if stream is None else _read_wire(stream, out, where, self.site)
        except TransientError:
            raise
        except Exception as exc:
            raise translate(exc, where, self.site) from None

    def _get(self, start: int, end: int, version: str) -> Any:
        """The body of a ranged GET conditional on ``version`` (botocore's StreamingBody)."""
        resp = self.client.get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}", IfMatch=version
        )
        return resp["Body"]


def _wire(body: Any) -> Any:
    """The urllib3 response under botocore's body when it reads from http.client, else None."""
    stream = getattr(body, "_raw_stream", None)
    return stream if isinstance(getattr(stream, "_fp", None), http.client.HTTPResponse) else None


def _read_wire(stream: Any, out: memoryview, where: str, site: Site) -> int:
    """Read a urllib3 response's body into ``out`` with http.client's ``readinto``: no copy,
    the GIL released while the socket fills the buffer. A body shorter than its Content-Length
    is a cut connection (retried); the end is then read through urllib3, which gives the
    connection back to its pool."""
    fp, n = stream._fp, 0
    while n < len(out):
        got = fp.readinto(out[n:])
        if not got:
            break
        n += got
    expected = int(stream.headers.get("content-length", n))
    if n < expected:
        raise TransientError(f"{where} on site {site.name!r}: connection closed at {n} of {expected} bytes")
    return n + len(stream.read())


def _read_body(body: Any, out: memoryview) -> int:
    """Read botocore's body into ``out`` piece by piece (urllib3 copies each piece: a piece, not
    the range, is the transient copy), then to its end; botocore checks the length."""
    n = 0
    while n < len(out):
        got = body.readinto(out[n : n + READ_PIECE])
        if not got:
            return n
        n += got
    return n + len(body.read())


class S3Tree(Tree):
    """The objects under an S3 prefix (an MS uploaded as a folder)."""

    def __init__(
        self,
        site: Site,
        bucket: str,
        prefix: str,
        listing: dict[str, tuple[int, str]],
        *,
        expected_version: str | None = None,
        complete: bool = True,
    ) -> None:
        """``listing`` maps members to (size, ETag); when not ``complete`` (a partition's members),
        the prefix is listed, and its version checked, only if another member is asked for."""
        super().__init__(f"s3://{bucket}/{prefix}")
        self.site, self.bucket, self.prefix = site, bucket, prefix.rstrip("/") + "/"
        self._listing = listing
        self._expected, self._complete = expected_version, complete
        self._open: dict[str, S3Source] = {}
        if complete:
            self._check()

    def _check(self) -> None:
        if self._expected is not None and self.version != self._expected:
            raise StaleObjectError(f"{self.uri} on site {self.site.name!r}: objects changed since indexed")

    def _full(self) -> dict[str, tuple[int, str]]:
        if not self._complete:
            self._listing, self._complete = list_prefix(self.site, self.bucket, self.prefix), True
            self._check()
        return self._listing

    @property
    def version(self) -> str:
        if not self._complete and self._expected is not None:
            return self._expected
        text = "\n".join(f"{k}\t{v[1]}\t{v[0]}" for k, v in sorted(self._full().items()))
        return "tree-" + hashlib.sha256(text.encode()).hexdigest()[:24]

    def members(self) -> dict[str, int]:
        return {k: v[0] for k, v in self._full().items()}

    def container(self, names: Sequence[str]) -> dict[str, Any]:
        """Size and ETag of the named members (this locator's hint): a worker reads them with no LIST."""
        return {"hint": {n: list(self._full()[n]) for n in names}}

    def source(self, member: str) -> Source:
        if member not in self._open:
            if member not in self._listing:
                self._full()
            if member not in self._listing:
                raise NotFound(f"{self.uri}: no member {member!r}")
            size, etag = self._listing[member]
            self._open[member] = S3Source(
                self.site, self.bucket, self.prefix + member, expected_version=etag, size=size
            )
        return self._open[member]

    def _sources(self) -> list[Source]:
        return list(self._open.values())


def list_prefix(site: Site, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """Relative key -> (size, ETag) of every object under ``prefix/``."""
    client = client_for(site)
    prefix = prefix.rstrip("/") + "/"
    out: dict[str, tuple[int, str]] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                out[obj["Key"][len(prefix) :]] = (int(obj["Size"]), obj["ETag"])
    except Exception as exc:
        raise translate(exc, f"s3://{bucket}/{prefix}", site) from None
    return out


class S3Locator(Locator):
    """Opens ``s3://bucket/key`` on an S3 site: an object, or a prefix seen as a folder."""

    name = "s3"
    site_types = ("s3",)
    uri_sites = {"s3": ON_SITE}  # the named or default site's type chooses the locator

    def site_options(self, site: Site) -> S3SiteOptions:
        """Check an S3 site's options (see the module's docstring)."""
        return parse_site(site)

    def open(
        self,
        uri: URI,
        site: Site | None,
        *,
        version: str | None = None,
        hint: Any = None,
    ) -> Source | Tree:
        """``hint``: what :meth:`S3Tree.container` gave, the sizes and ETags of a partition's members."""
        if site is None or not isinstance(site.settings, S3SiteOptions):
            raise ConfigError(f"{uri}: needs an S3 site (--site NAME or default_site)")
        if not uri.key:
            raise NotFound(f"{uri}: no key after the bucket")
        if version is not None and not version.startswith("tree-"):
            return S3Source(site, uri.bucket, uri.key, expected_version=version)  # no HEAD needed
        if version is None:
            src = S3Source(site, uri.bucket, uri.key)
            with contextlib.suppress(NotFound):  # else maybe a prefix
                src.size  # noqa: B018 - HEAD
                return src
        if hint is not None and version is not None:  # a partition's own members: no LIST
            known = {n: (int(size), str(etag)) for n, (size, etag) in hint.items()}
            return S3Tree(site, uri.bucket, uri.key, known, expected_version=version, complete=False)
        listing = list_prefix(site, uri.bucket, uri.key)
        if not listing:
            raise NotFound(f"{uri} on site {site.name!r}: no such object or prefix")
        return S3Tree(site, uri.bucket, uri.key, listing, expected_version=version)


@hookimpl
def skyplug_register_locators(config: Config) -> list[Spec]:
    return [
        Spec(
            "s3",
            "skyplug.plugins.locators.s3:S3Locator",
            err="pip install 'skyplug[s3]' (boto3)",
            keys=("s3",),
            info={"implicit_site": {"name": IMPLICIT_SITE, "type": "s3", "options": {"from_env": True}}},
        )
    ]
