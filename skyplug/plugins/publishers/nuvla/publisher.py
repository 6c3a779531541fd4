"""The Nuvla publisher: catalogue records as Nuvla data-objects, data-records and data-sets.

Through the real ``nuvla-api`` client only, following reference/catalog_standards.md section 1:
an S3 ``infrastructure-service`` and its ``infrastructure-service-minio`` credential per skyplug
site (created once, found again by endpoint and the ``skyplug`` tag); per record a data-object
(created with its md5sum, moved through NEW -> UPLOADING -> READY: bytes are PUT to the presigned
URL only when the object is not already in the bucket) and a data-record holding the ObsCore +
radio fields under the registered key prefix ``skyplug:``; per observation and per product type a
data-set whose filter selects those records. Every resource is looked up by a stable key (the
publisher DID, an endpoint, a tag) with values quoted and escaped in CIMI filters, then created
or updated: publishing twice leaves the same resources.

Credentials: the Nuvla API key from ``$SKYPLUG_NUVLA_API_KEY`` / ``$SKYPLUG_NUVLA_API_SECRET`` or a
TOML file ``key = ..., secret = ...`` named by ``$SKYPLUG_NUVLA_CREDENTIALS``; S3 keys as skyplug's
S3 locator reads them. None of them reaches a record, a log line, a report or an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import re
import time
import tomllib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from skyplug.core.errors import ConfigError, NotFound, PluginError, SiteError, SkyplugError
from skyplug.core.logs import redact
from skyplug.core.publisher import Publisher, Rows
from skyplug.plugins.publishers.nuvla import INSTALL

log = logging.getLogger("skyplug.publishers.nuvla")

KEY_ENV = "SKYPLUG_NUVLA_API_KEY"
SECRET_ENV = "SKYPLUG_NUVLA_API_SECRET"
CREDENTIALS_ENV = "SKYPLUG_NUVLA_CREDENTIALS"
PREFIX = "skyplug"  # the data-record key prefix of every catalogue field
PREFIX_URI = "https://skyplug.readthedocs.io/ns#"
TAG = "skyplug"  # on every resource this publisher owns
LOOKUP_BATCH = 50  # stable keys looked up per search (a filter of "or"ed terms)
# the infrastructure-service-group the S3 services hang under, unless [publishers.X] group says
DEFAULT_GROUP = f"infrastructure-service-group/{uuid.uuid5(uuid.NAMESPACE_URL, PREFIX_URI)}"
LIGHT_SPEED = 299_792_458.0  # m/s: frequencies (Hz) from ObsCore wavelengths (m)
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
_ATTR = re.compile(r"^[A-Za-z][\w-]*(:[\w-]+)?(/[A-Za-z][\w-]*(:[\w-]+)?)*$")
CONTENT_TYPES = {"fits": "application/fits", "hdf5": "application/x-hdf5"}


# --- CIMI filters: values quoted, never pasted ------------------------------------------------


def cimi_quote(value: Any) -> str:
    """A value as a CIMI filter literal: a double-quoted string with ``\\`` and ``"`` escaped
    (integers stay integers only when non-negative, the one form Nuvla's grammar accepts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value >= 0:
        return str(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cimi_eq(attr: str, value: Any) -> str:
    """``attr=value`` with the value quoted; the attribute must be a plain CIMI path."""
    if not _ATTR.match(attr):
        raise ValueError(f"not a CIMI attribute: {attr!r}")
    return f"{attr}={cimi_quote(value)}"


def cimi_all(*terms: str) -> str:
    """Filter terms joined with ``and`` (each one parenthesised)."""
    return " and ".join(f"({t})" for t in terms)


# --- credentials and the client ---------------------------------------------------------------


def api_credentials(key: str | None = None, secret: str | None = None) -> tuple[str, str]:
    """The Nuvla API key and secret: given, else from the environment, else from the TOML file
    named by ``$SKYPLUG_NUVLA_CREDENTIALS`` (a JSON object ``{"key", "secret"}`` is read too)."""
    key = key or os.environ.get(KEY_ENV)
    secret = secret or os.environ.get(SECRET_ENV)
    if key and secret:
        return key, secret
    path = os.environ.get(CREDENTIALS_ENV)
    if not path:
        raise ConfigError(f"Nuvla API key missing: set ${KEY_ENV} and ${SECRET_ENV}, or ${CREDENTIALS_ENV}")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the Nuvla credentials file ({exc.strerror})") from None
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(f"{path}: not a TOML credentials file (key = ..., secret = ...)") from None
    if not (isinstance(data.get("key"), str) and isinstance(data.get("secret"), str)):
        raise ConfigError(f"{path}: the Nuvla credentials file needs string 'key' and 'secret'")
    return key or data["key"], secret or data["secret"]


def _scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """One line with every known secret replaced by ``***``."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    line = " ".join(redact(text).split())
    return line[:300] or "no message"


@contextlib.contextmanager
def guard(endpoint: str, what: str, secrets: Iterable[str] = ()) -> Iterator[None]:
    """Turn the client's errors (HTTP refusals, network failures) into one-line SiteErrors
    naming ``endpoint`` and ``what`` was being done, never a secret."""
    import requests
    from nuvla.api import NuvlaError

    where = redact(endpoint)
    try:
        yield
    except NuvlaError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        code = f"HTTP {status}: " if status else ""
        raise NuvlaRefused(f"{where}: {what}: {code}{_scrub(str(exc), secrets)}", status) from None
    except requests.RequestException as exc:
        raise SiteError(f"{where}: {what}: unreachable ({type(exc).__name__})") from None


class NuvlaRefused(SiteError):
    """Nuvla answered with an error; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def connect(
    endpoint: str,
    *,
    key: str | None = None,
    secret: str | None = None,
    timeout: float = 30.0,
    insecure: bool = False,
    reauthenticate: bool = False,
) -> Any:
    """A real ``nuvla.api.Api`` logged in with an API key (see :func:`api_credentials`); no
    cookie file is written and every request has ``timeout`` seconds. ``reauthenticate`` (for
    long-running jobs) logs in again when the session expires.

    A refused key or an unreachable endpoint raises one SiteError naming the endpoint."""
    import functools

    try:
        from nuvla.api import Api
    except ImportError as exc:
        raise PluginError(f"plugin 'nuvla' needs a missing dependency: {exc} ({INSTALL})") from exc
    key, secret = api_credentials(key, secret)
    endpoint = endpoint.rstrip("/")
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError(f"Nuvla endpoint must be an http(s) URL, not {endpoint!r}")
    relogin = (
        {"reauthenticate": True, "login_creds": {"key": key, "secret": secret}} if reauthenticate else {}
    )
    api = Api(endpoint, insecure=insecure, persist_cookie=False, **relogin)
    session = api.session
    session.request = functools.partial(session.request, timeout=timeout)  # type: ignore[method-assign]
    with guard(endpoint, "login", [secret]):
        resp = api.login_apikey(key, secret)
    if resp is None or resp.status_code != 201:
        try:
            message = str(resp.json().get("message")) if resp is not None else "no answer"
        except ValueError:
            message = f"HTTP {getattr(resp, 'status_code', '?')}"
        raise SiteError(
            f"{redact(endpoint)}: login with API key {key!r} refused: {_scrub(message, [secret])}"
        )
    return api


# --- records as Nuvla documents ---------------------------------------------------------------


def _columns() -> dict[str, str]:
    """Catalogue column -> VOTable datatype, for ObsCore, radio and skyplug columns."""
    from skyplug.catalog.model import OBSCORE, OBSCORE_RADIO

    return {c.name: c.datatype for t in (OBSCORE, OBSCORE_RADIO) for c in t.columns}


def field_key(column: str) -> str:
    """The data-record key of a catalogue column: ``skyplug:obs_id``, ``skyplug:uri``..."""
    return f"{PREFIX}:{column.removeprefix('skyplug_')}"


def _typed(value: Any, datatype: str) -> Any:
    """A value as its column says: Elasticsearch maps a key by the first type it sees."""
    if datatype == "double":
        return float(value)
    if datatype in ("int", "long"):
        return int(value)
    return str(value)


def _iso(mjd: float) -> str:
    when = MJD_EPOCH + timedelta(days=float(mjd))
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def record_fields(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A record's catalogue fields as prefixed, typed data-record keys, plus the integer copies
    CIMI filters need (its values are non-negative integers only): ``freq_min_hz``,
    ``freq_max_hz``, ``ra_mdeg`` and ``npd_mdeg`` (north polar distance, 90 - dec, in mdeg)."""
    out: dict[str, Any] = {}
    for column, datatype in _columns().items():
        value = rec.get(column)
        if value is None or (isinstance(value, str) and value == ""):
            continue
        out[field_key(column)] = _typed(value, datatype)
    em_min, em_max = rec.get("em_min"), rec.get("em_max")
    if isinstance(em_max, int | float) and em_max > 0:
        out[f"{PREFIX}:freq_min_hz"] = round(LIGHT_SPEED / em_max)
    if isinstance(em_min, int | float) and em_min > 0:
        out[f"{PREFIX}:freq_max_hz"] = round(LIGHT_SPEED / em_min)
    ra, dec = rec.get("s_ra"), rec.get("s_dec")
    if isinstance(ra, int | float) and isinstance(dec, int | float):
        out[f"{PREFIX}:ra_mdeg"] = round(float(ra) % 360.0 * 1000)
        out[f"{PREFIX}:npd_mdeg"] = round((90.0 - float(dec)) * 1000)
    return out


def data_record(rec: Mapping[str, Any], infra: str, obj: ObjectInfo | None) -> dict[str, Any]:
    """The data-record body of a catalogue record (Nuvla's typed keys + the prefixed fields)."""
    body: dict[str, Any] = {
        "infrastructure-service": infra,
        "name": obj.name if obj else Path(urlsplit(str(rec["skyplug_uri"])).path).name,
        "description": str(rec.get("obs_title") or rec.get("obs_id") or rec["skyplug_uri"]),
        "tags": [TAG],
        **record_fields(rec),
    }
    if obj is not None:
        body.update(
            {
                "data-object": obj.id,
                "content-type": obj.content_type,
                "bytes": obj.size,
                "md5sum": obj.md5,
            }
        )
    if isinstance(rec.get("t_min"), int | float):
        body["timestamp"] = _iso(rec["t_min"])
    ra, dec = rec.get("s_ra"), rec.get("s_dec")
    if isinstance(ra, int | float) and isinstance(dec, int | float) and -90 <= dec <= 90:
        # the sky position as GeoJSON (lon = RA wrapped to [-180, 180), lat = Dec) for geo filters
        body["geometry"] = {"type": "Point", "coordinates": [(float(ra) + 180) % 360 - 180, float(dec)]}
    return body


# --- where a record's bytes are ---------------------------------------------------------------


@dataclass
class ObjectInfo:
    """A record's object: the S3 site, bucket and key it is (or will be) at; the local file to
    upload when it is not there yet; size, md5 and content type; and its data-object id."""

    site: Any
    bucket: str
    key: str
    local: Path | None
    name: str
    content_type: str
    size: int = 0
    md5: str = ""
    id: str = ""


def _content_type(name: str, fmt: str | None) -> str:
    if name.endswith(".zip"):
        return "application/zip"
    return CONTENT_TYPES.get(fmt or "") or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the publisher ----------------------------------------------------------------------------


class NuvlaPublisher(Publisher):
    """Publishes catalogue records to a Nuvla api-server at ``endpoint``.

    ``site`` and ``bucket`` say where records of local files are uploaded (the site defaults to
    ``default_site``); records of ``s3://`` objects are registered where they are, without
    copying bytes. ``group`` is the infrastructure-service-group of the S3 services.
    ``data_sets`` (default on) keeps one data-set per observation and per product type.
    (The plugin registry makes one without an endpoint: it can only say what it is.)
    """

    name = "nuvla"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        site: str | None = None,
        bucket: str | None = None,
        group: str = DEFAULT_GROUP,
        data_sets: bool = True,
        timeout: float = 30.0,
        insecure: bool = False,
        key: str | None = None,
        secret: str | None = None,
    ) -> None:
        try:
            import nuvla.api  # noqa: F401
        except ImportError as exc:
            raise PluginError(f"plugin 'nuvla' needs a missing dependency: {exc} ({INSTALL})") from exc
        self.endpoint = (endpoint or "").rstrip("/")
        self.site, self.bucket, self.group = site, bucket, group
        self.data_sets, self.timeout, self.insecure = bool(data_sets), float(timeout), bool(insecure)
        self._key, self._secret = key, secret
        self._api: Any = None
        self._services: dict[str, tuple[str, str]] = {}  # site name -> (service id, credential id)
        self._secrets: list[str] = [s for s in (secret,) if s]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> NuvlaPublisher:
        """A publisher from ``[publishers.NAME]`` (the API key only from the env or its file)."""
        known = {"type", "endpoint", "site", "bucket", "group", "data_sets", "timeout", "insecure"}
        secret_like = sorted(
            k for k in options if k in ("key", "secret", "api_key", "api_secret", "password")
        )
        if secret_like:
            raise ConfigError(
                f"[publishers] nuvla: no {', '.join(secret_like)} in skyplug.toml; "
                f"set ${KEY_ENV} and ${SECRET_ENV}, or ${CREDENTIALS_ENV}"
            )
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"[publishers] nuvla: unknown option(s) {', '.join(unknown)}")
        if not options.get("endpoint"):
            raise ConfigError("[publishers] nuvla: 'endpoint' (the api-server's URL) is required")
        kwargs = {k: v for k, v in options.items() if k not in ("type", "endpoint")}
        return cls(str(options["endpoint"]), **kwargs)

    def __repr__(self) -> str:
        return f"NuvlaPublisher({redact(self.endpoint)!r})"

    # the client

    @property
    def api(self) -> Any:
        """The logged-in client (logs in on first use)."""
        if self._api is None:
            if not self.endpoint:
                raise ConfigError("publisher nuvla: no endpoint (the api-server's URL) given")
            key, secret = api_credentials(self._key, self._secret)
            self._secrets = [secret]
            self._api = connect(
                self.endpoint, key=key, secret=secret, timeout=self.timeout, insecure=self.insecure
            )
        return self._api

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        secrets = [*self._secrets, *self._s3_secrets()]
        with guard(self.endpoint, what, secrets):
            return fn(*args, **kwargs)

    def _s3_secrets(self) -> list[str]:
        return [v for k, v in os.environ.items() if k.endswith("SECRET_ACCESS_KEY")]

    def search(self, rtype: str, flt: str, select: str | None = None) -> list[dict[str, Any]]:
        """Every resource of ``rtype`` matching the CIMI filter ``flt`` (as dicts)."""
        kwargs: dict[str, Any] = {"filter": flt, "last": 10000}
        if select:
            kwargs["select"] = select
        found = self._call(f"search {rtype}", self.api.search, rtype, **kwargs)
        return [r.data for r in found.resources]

    def _add(self, rtype: str, body: dict[str, Any], what: str) -> str:
        return str(self._call(f"create {what}", self.api.add, rtype, body).data["resource-id"])

    def lookup(self, rtype: str, attr: str, values: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """This publisher's resources of ``rtype`` whose ``attr`` (a value or a list, like
        ``tags``) holds each of ``values``: one search per ``LOOKUP_BATCH`` values."""
        out: dict[str, list[dict[str, Any]]] = {v: [] for v in values}
        wanted = list(out)
        for i in range(0, len(wanted), LOOKUP_BATCH):
            chunk = wanted[i : i + LOOKUP_BATCH]
            anyof = " or ".join(cimi_eq(attr, v) for v in chunk)
            for doc in self.search(rtype, cimi_all(cimi_eq("tags", TAG), anyof)):
                held = doc.get(attr)
                for value in held if isinstance(held, list) else [held]:
                    if isinstance(value, str) and value in out:
                        out[value].append(doc)
        return out

    # publishing

    def publish(
        self, records: Iterable[Mapping[str, Any]], provenance: Mapping[str, Rows] | None = None
    ) -> dict[str, Any]:
        """Create or update a data-object and a data-record per record, then the data-sets;
        return counts. Provenance runs are not sent to Nuvla (the SPARQL publisher has them)."""
        t0 = time.perf_counter()
        recs = [dict(r) for r in records]
        counts = {"created": 0, "updated": 0, "unchanged": 0, "uploaded": 0, "registered": 0, "ready": 0}
        if recs:
            self.ensure_prefix()
        located = [(rec, self._locate(rec)) for rec in recs]
        dids = [str(rec["obs_publisher_did"]) for rec in recs]
        objects = self.lookup("data-object", "tags", [f"{TAG}:did:{d}" for d in dids])
        known = self.lookup("data-record", field_key("obs_publisher_did"), dids)
        for rec, obj in located:
            infra = self.s3_service(obj.site)[0] if obj else self._default_service()
            if obj is not None:
                self._data_object(rec, obj, counts, objects[f"{TAG}:did:{rec['obs_publisher_did']}"])
            counts[self._data_record(rec, infra, obj, known[str(rec["obs_publisher_did"])])] += 1
        sets = (
            self._data_sets(recs) if self.data_sets and recs else {"created": 0, "updated": 0, "unchanged": 0}
        )
        return {
            "endpoint": redact(self.endpoint),
            "records": len(recs),
            "data_records": {k: counts[k] for k in ("created", "updated", "unchanged")},
            "data_objects": {k: counts[k] for k in ("uploaded", "registered", "ready")},
            "data_sets": sets,
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def ensure_prefix(self) -> None:
        """Register the ``skyplug`` data-record key prefix unless it is (admin only in Nuvla)."""
        if self.search("data-record-key-prefix", cimi_eq("prefix", PREFIX), "id"):
            return
        try:
            self._add(
                "data-record-key-prefix",
                {"prefix": PREFIX, "uri": PREFIX_URI, "name": "skyplug catalogue fields"},
                "prefix",
            )
        except NuvlaRefused as exc:
            if exc.status in (401, 403):
                raise SiteError(
                    f"{redact(self.endpoint)}: data-record key prefix {PREFIX!r} is not registered and "
                    f"this API key may not register it (admin only): ask an administrator to add "
                    f"data-record-key-prefix {PREFIX!r} with uri {PREFIX_URI}"
                ) from None
            if exc.status != 409:  # 409: registered meanwhile
                raise

    def _locate(self, rec: Mapping[str, Any]) -> ObjectInfo | None:
        """Where a record's object is: an ``s3://`` object on its site, or a local file to upload
        to ``site``/``bucket``; None for a local folder (a data-record without data-object)."""
        from skyplug.core.config import get_config

        uri = str(rec.get("skyplug_uri") or "")
        parts = urlsplit(uri)
        fmt = rec.get("skyplug_format")
        config = get_config()
        if parts.scheme == "s3":
            sites = [s for s in str(rec.get("skyplug_sites") or "").split(",") if s]
            site = config.site(sites[0] if sites else self.site)
            key = unquote(parts.path.lstrip("/"))
            name = key.rsplit("/", 1)[-1]
            return ObjectInfo(site, parts.netloc, key, None, name, _content_type(name, fmt))
        if parts.scheme not in ("", "file"):
            raise ConfigError(
                f"nuvla: cannot publish {uri}: only s3:// objects and local files are supported"
            )
        path = Path(unquote(parts.path) if parts.scheme == "file" else uri)
        if path.is_dir():
            log.warning("%s: a folder, published as a data-record without data-object", uri)
            return None
        if not path.is_file():
            raise NotFound(f"{uri}: no such file to upload to Nuvla")
        if not self.bucket:
            raise ConfigError(
                f"nuvla: {uri} is a local file: give a bucket to upload it to "
                "(--bucket, [publishers.NAME] bucket)"
            )
        digest = hashlib.sha256(str(rec["obs_publisher_did"]).encode()).hexdigest()[:20]
        key = f"skyplug/{digest}/{path.name}"
        return ObjectInfo(
            config.site(self.site), self.bucket, key, path, path.name, _content_type(path.name, fmt)
        )

    def _default_service(self) -> str:
        from skyplug.core.config import get_config

        return self.s3_service(get_config().site(self.site))[0]

    def s3_service(self, site: Any) -> tuple[str, str]:
        """(infrastructure-service id, credential id) of an S3 site, created once and found again
        by endpoint + tag; a credential whose keys changed is updated."""
        from skyplug.plugins.locators.s3 import client_for, s3_options

        if site.name in self._services:
            return self._services[site.name]
        opts = s3_options(site)
        endpoint = opts.endpoint or f"https://s3.{opts.region or 'us-east-1'}.amazonaws.com"
        creds = client_for(site)._get_credentials()
        if creds is None:
            raise SiteError(
                f"site {site.name!r}: no S3 credentials to give Nuvla (set them in the environment)"
            )
        access, secret = creds.access_key, creds.secret_key
        self._secrets.append(secret)
        found = self.search(
            "infrastructure-service",
            cimi_all(cimi_eq("subtype", "s3"), cimi_eq("tags", TAG), cimi_eq("endpoint", endpoint)),
            "id",
        )
        if found:
            infra = found[0]["id"]
        else:
            template = {
                "href": "infrastructure-service-template/generic",
                "subtype": "s3",
                "endpoint": endpoint,
                "parent": self.group,
                "name": f"skyplug site {site.name}",
                "description": f"S3 of skyplug site {site.name} ({opts.region or 'us-east-1'})",
                "tags": [TAG],
            }
            infra = self._add(
                "infrastructure-service", {"template": template}, f"S3 service for site {site.name}"
            )
        method = "infrastructure-service-minio"
        found = self.search(
            "credential", cimi_all(cimi_eq("parent", infra), cimi_eq("subtype", method), cimi_eq("tags", TAG))
        )
        if found:
            cred = found[0]["id"]
            if found[0].get("access-key") != access or found[0].get("secret-key", secret) != secret:
                self._call(
                    f"update credential {cred}",
                    self.api.edit,
                    cred,
                    {"access-key": access, "secret-key": secret},
                )
        else:
            template = {
                "href": f"credential-template/{method}",
                "parent": infra,
                "access-key": access,
                "secret-key": secret,
                "name": f"skyplug site {site.name}",
                "tags": [TAG],
            }
            cred = self._add("credential", {"template": template}, f"S3 credential for site {site.name}")
        self._services[site.name] = (infra, cred)
        return infra, cred

    def _data_object(
        self, rec: Mapping[str, Any], obj: ObjectInfo, counts: dict[str, int], found: list[dict[str, Any]]
    ) -> None:
        """Find (in ``found``, the data-objects tagged with its DID) or create the record's
        data-object and bring it to READY (uploading only the bytes not in the bucket yet);
        sets ``obj.id``, ``size``, ``md5``."""
        from nuvla.api.models import CimiResource

        from skyplug.plugins.locators.s3 import client_for

        did = str(rec["obs_publisher_did"])
        did_tag = f"{TAG}:did:{did}"
        doc = next((d for d in found if d.get("bucket") == obj.bucket and d.get("object") == obj.key), None)
        if doc is None and obj.local is None:
            doc = self._adopt(rec, obj)
        if doc is not None and doc.get("state") == "READY" and doc.get("md5sum"):
            # published before: the object's version is in its DID, so its bytes are the same
            obj.id, obj.size, obj.md5 = str(doc["id"]), int(doc.get("bytes") or 0), str(doc["md5sum"])
            counts["ready"] += 1
            return
        client = client_for(obj.site)
        head = self._head(client, obj)
        if obj.local is not None:
            obj.size, obj.md5 = obj.local.stat().st_size, _md5_file(obj.local)
            in_bucket = head is not None and head[1] == obj.md5
        elif head is None:
            raise NotFound(f"{rec['skyplug_uri']}: not in bucket {obj.bucket} of site {obj.site.name}")
        else:
            obj.size, obj.md5, in_bucket = head[0], head[1] or self._md5_s3(client, obj), True
        if doc is not None and doc.get("state") == "READY":  # made READY without an md5sum
            obj.id = str(doc["id"])
            counts["ready"] += 1
            return
        if doc is None:
            template = {
                "href": "data-object-template/generic",
                "subtype": "generic",
                "resource-type": "data-object-template",
                "credential": self.s3_service(obj.site)[1],
                "bucket": obj.bucket,
                "object": obj.key,
                "content-type": obj.content_type,
                "bytes": obj.size,
                "md5sum": obj.md5,
                "name": obj.name,
                "description": str(rec.get("obs_title") or obj.name),
                "tags": [TAG, did_tag, f"{TAG}:obs_id:{rec.get('obs_id')}"],
            }
            obj.id = self._add("data-object", {"template": template}, f"data-object for {obj.name}")
            doc = {"id": obj.id, "state": "NEW", "bucket": obj.bucket, "object": obj.key}
            found.append(doc)  # a record given twice finds it
        obj.id = str(doc["id"])
        res = CimiResource({"id": obj.id})
        if doc.get("state") in ("NEW", "UPLOADING"):
            uri = self._call(
                f"upload action of {obj.id}", self.api.operation, res, "upload", {"ttl": 15}
            ).data["uri"]
            if not in_bucket:
                assert obj.local is not None
                self._put(uri, obj)
                counts["uploaded"] += 1
            else:
                counts["registered"] += 1
        self._call(f"ready action of {obj.id}", self.api.operation, res, "ready")
        doc.update({"state": "READY", "md5sum": obj.md5, "bytes": obj.size})

    def _adopt(self, rec: Mapping[str, Any], obj: ObjectInfo) -> dict[str, Any] | None:
        """A data-object someone else made for the same bucket and key (an upload through Nuvla
        that a sync job catalogues): tagged as the record's and used, never duplicated."""
        flt = cimi_all(cimi_eq("bucket", obj.bucket), cimi_eq("object", obj.key))
        docs = [d for d in self.search("data-object", flt) if d.get("state") != "ERROR"]
        if not docs:
            return None
        doc = min(docs, key=lambda d: str(d.get("created", "")))
        tags = [TAG, f"{TAG}:did:{rec['obs_publisher_did']}", f"{TAG}:obs_id:{rec.get('obs_id')}"]
        held = list(doc.get("tags") or [])
        held += [t for t in tags if t not in held]
        self._call(f"tag data-object {doc['id']}", self.api.edit, str(doc["id"]), {"tags": held})
        return {**doc, "tags": held}

    @staticmethod
    def _head(client: Any, obj: ObjectInfo) -> tuple[int, str] | None:
        """(size, md5 or '') of the object in its bucket, None when it is not there. The ETag
        is the md5 of a single-part upload (a multipart one has a ``-``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = client.head_object(Bucket=obj.bucket, Key=obj.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            code = exc.response.get("Error", {}).get("Code")
            raise SiteError(f"s3://{obj.bucket}/{obj.key} on site {obj.site.name}: {code}") from None
        except BotoCoreError as exc:
            raise SiteError(
                f"s3://{obj.bucket}/{obj.key} on site {obj.site.name}: {type(exc).__name__}"
            ) from None
        etag = str(head.get("ETag", "")).strip('"')
        return int(head["ContentLength"]), etag if re.fullmatch(r"[0-9a-f]{32}", etag) else ""

    @staticmethod
    def _md5_s3(client: Any, obj: ObjectInfo) -> str:
        """The md5 of an object whose ETag is not one (multipart): read it once, streaming."""
        digest = hashlib.md5(usedforsecurity=False)
        body = client.get_object(Bucket=obj.bucket, Key=obj.key)["Body"]
        for block in iter(lambda: body.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()

    def _put(self, uri: str, obj: ObjectInfo) -> None:
        """PUT the local file to the presigned URL with the content type it was signed for."""
        import requests

        assert obj.local is not None
        try:
            with obj.local.open("rb") as f:
                resp = requests.put(
                    uri, data=f, headers={"Content-Type": obj.content_type}, timeout=max(self.timeout, 60.0)
                )
        except requests.RequestException as exc:
            raise SiteError(
                f"{obj.id}: upload of {obj.name} to its presigned URL failed ({type(exc).__name__})"
            ) from None
        if resp.status_code >= 300:
            raise SiteError(f"{obj.id}: upload of {obj.name} refused by S3 (HTTP {resp.status_code})")

    def _data_record(
        self, rec: Mapping[str, Any], infra: str, obj: ObjectInfo | None, found: list[dict[str, Any]]
    ) -> str:
        """Create or update the record's data-record (``found``: those with its publisher DID);
        duplicates are deleted. Returns created, updated or unchanged."""
        body = data_record(rec, infra, obj)
        what = f"data-record of {rec['skyplug_uri']}"
        try:
            if not found:
                found.append({"id": self._add("data-record", body, what), **body})
                return "created"
            old = found[0]
            for dup in found[1:]:
                self._call(f"delete duplicate {dup['id']}", self.api.delete, dup["id"])
            del found[1:]
            gone = [k for k in old if k.startswith(f"{PREFIX}:") and k not in body]
            if all(old.get(k) == v for k, v in body.items()) and not gone:
                return "unchanged"
            kwargs = {"select": ",".join(gone)} if gone else {}
            self._call(f"update {what}", self.api.edit, old["id"], body, **kwargs)
            found[0] = {"id": old["id"], **body}
            return "updated"
        except NuvlaRefused as exc:
            if exc.status == 406:
                raise SiteError(f"{exc} (register data-record-key-prefix {PREFIX!r})") from None
            raise

    def _data_sets(self, recs: list[dict[str, Any]]) -> dict[str, int]:
        """One data-set per observation and per product type, found again by its tag."""
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        wanted: dict[str, dict[str, Any]] = {}
        for rec in recs:
            obs, kind = rec.get("obs_id"), rec.get("dataproduct_type")
            if obs:
                tag = f"{TAG}:data-set:obs_id:{obs}"
                wanted[tag] = {
                    "name": f"observation {obs}",
                    "description": f"skyplug records of observation {obs}",
                    "data-record-filter": cimi_all(cimi_eq("tags", TAG), cimi_eq(field_key("obs_id"), obs)),
                    "data-object-filter": cimi_all(
                        cimi_eq("tags", TAG), cimi_eq("tags", f"{TAG}:obs_id:{obs}")
                    ),
                    "tags": [TAG, tag],
                }
            if kind:
                tag = f"{TAG}:data-set:dataproduct_type:{kind}"
                wanted[tag] = {
                    "name": f"{kind} products",
                    "description": f"skyplug records of data product type {kind}",
                    "data-record-filter": cimi_all(
                        cimi_eq("tags", TAG), cimi_eq(field_key("dataproduct_type"), kind)
                    ),
                    "tags": [TAG, tag],
                }
        existing = self.lookup("data-set", "tags", wanted)
        for tag, body in wanted.items():
            found = existing[tag]
            if not found:
                self._add("data-set", body, f"data-set {body['name']}")
                counts["created"] += 1
            elif all(found[0].get(k) == v for k, v in body.items()):
                counts["unchanged"] += 1
            else:
                self._call(f"update data-set {found[0]['id']}", self.api.edit, found[0]["id"], body)
                counts["updated"] += 1
        return counts

    def close(self) -> None:
        """Log out and close the client's HTTP session."""
        if self._api is not None:
            with contextlib.suppress(Exception):  # a session already gone is fine
                self._api.logout()
            self._api.session.close()
            self._api = None


# --- configuration and hooks ------------------------------------------------------------------


def configured(config: Any) -> dict[str, Mapping[str, Any]]:
    """``[publishers.NAME]`` tables of type ``nuvla`` (the default type of one named ``nuvla``)."""
    return {
        name: options
        for name, options in (config.raw.get("publishers", {}) or {}).items()
        if isinstance(options, Mapping) and options.get("type", name) == "nuvla"
    }


def publish_added(config: Any, records: list[dict[str, Any]]) -> None:
    """Publish added records to every configured Nuvla ``[publishers.NAME]``; a failure warns."""
    from skyplug.core.publisher import auto_publishes

    for name, options in configured(config).items():
        if not auto_publishes(name):
            continue
        pub = None
        try:
            pub = NuvlaPublisher.from_options(options)
            counts = pub.publish(records)
            log.info("published %d records to %s (%s)", counts["records"], name, counts["endpoint"])
        except SkyplugError as exc:
            log.warning("publisher %s: %s", name, exc)
        finally:
            if pub is not None:
                pub.close()
