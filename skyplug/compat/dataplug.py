"""Dataplug's user-facing shapes, backed by skyplug: switch by changing one import line.

``from dataplug import CloudObject`` and ``from dataplug.formats.astronomics.ms import MS,
ms_partitioning_strategy`` become ``from skyplug.compat.dataplug import CloudObject, MS,
ms_partitioning_strategy``. The rest of the code is unchanged:

- ``CloudObject.from_s3(MS, "s3://bucket/key", s3_config=...)`` (and ``from_bucket_key``) opens
  the object with :func:`skyplug.open` on a site made from ``s3_config`` (endpoint, region;
  credentials go to the process environment for that site, never into a slice or a message);
- ``.preprocess(force=...)`` builds skyplug's index (from the small files only; cached, so
  idempotent), ``.is_preprocessed()`` asks the cache, ``.attributes`` / ``co["total_rows"]``;
- ``.partition(strategy, num_chunks=N)`` maps Dataplug's strategies onto skyplug plans and returns
  :class:`MSSlice` objects: small, picklable with the standard library, carrying no credentials;
- ``slice.get()`` returns the path of a standalone MS holding the slice's rows, as Dataplug does,
  but written by skyplug from exact byte ranges (any layout, Dysco decoded losslessly, BDA,
  channel-split tiles); ``slice.get_arrays()`` gives skyplug's arrays without writing anything.

A worker reaches the object with the credentials of its own environment: the same variables this
module sets (``SKYPLUG_SITE_<NAME>_...``, inherited by forked and spawned processes), or AWS's.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import skyplug
from skyplug.core.config import Site, get_config
from skyplug.core.dataset import Dataset
from skyplug.core.errors import ConfigError, PluginError
from skyplug.core.index import IndexCache, cache_key
from skyplug.core.partition import Partition

__all__ = [
    "MS",
    "CloudObject",
    "MSSlice",
    "PartitioningStrategy",
    "ms_partitioning_strategy",
    "ms_partitioning_strategy_chan",
    "ms_partitioning_strategy_rows",
    "ms_partitioning_strategy_spw",
    "ms_partitioning_strategy_time",
]

_S3_KEYS = {
    "credentials",
    "endpoint_url",
    "region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "role_arn",  # Dataplug's STS role: not needed, skyplug signs with the credentials themselves
    "token_duration_seconds",
    "botocore_config_kwargs",  # skyplug sets its own client (timeouts, retries, path addressing)
}


class MS:
    """Dataplug's Measurement Set format, as skyplug's ``ms`` plugin (folders, prefixes, zips)."""

    skyplug_format = "ms"
    is_folder = True  # flexecutor's chunker asks (an MS is a prefix; a .ms.zip works as well)


MSFormat = MS  # the name some users give it


def _format_name(fmt: Any) -> str:
    name = getattr(fmt, "skyplug_format", None)
    if isinstance(name, str):
        return name
    shown = getattr(fmt, "__name__", repr(fmt))
    raise PluginError(f"{shown}: not a format skyplug.compat.dataplug offers (use MS)")


def _site_from_s3_config(s3_config: dict[str, Any] | None, where: str) -> Site | None:
    """A site for Dataplug's ``s3_config``; its credentials go to the site's environment variables.

    None (no config): skyplug's default site, i.e. the AWS environment or skyplug.toml.
    """
    if not s3_config:
        return None
    if not isinstance(s3_config, dict):
        raise ConfigError(f"{where}: s3_config must be a dict, not {type(s3_config).__name__}")
    unknown = sorted(set(s3_config) - _S3_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: s3_config keys not understood: {', '.join(map(str, unknown))} "
            f"(known: {', '.join(sorted(_S3_KEYS))})"
        )
    creds = s3_config.get("credentials") or {}
    if not isinstance(creds, dict):
        raise ConfigError(f"{where}: s3_config['credentials'] must be a dict")
    if creds.get("SessionToken"):
        raise ConfigError(
            f"{where}: temporary credentials (SessionToken) are read from AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, not from s3_config"
        )
    key_id = creds.get("AccessKeyId") or s3_config.get("aws_access_key_id")
    secret = creds.get("SecretAccessKey") or s3_config.get("aws_secret_access_key")
    if bool(key_id) != bool(secret):
        raise ConfigError(f"{where}: s3_config gives an access key id or a secret key, not both")
    options: dict[str, Any] = {}
    if s3_config.get("endpoint_url"):
        options["endpoint"] = str(s3_config["endpoint_url"])
    if s3_config.get("region_name"):
        options["region"] = str(s3_config["region_name"])
    # one site per endpoint, region and key id: the name carries no secret, only its hash
    ident = "\0".join([options.get("endpoint", ""), options.get("region", ""), str(key_id or "")])
    name = "dataplug-" + hashlib.sha256(ident.encode()).hexdigest()[:10]
    if key_id and secret:
        env = f"SKYPLUG_SITE_{name.upper().replace('-', '_')}"
        os.environ[f"{env}_ACCESS_KEY_ID"] = str(key_id)
        os.environ[f"{env}_SECRET_ACCESS_KEY"] = str(secret)
    return Site(name=name, type="s3", options=options)


class CloudObject:
    """One dataset (an MS folder, S3 prefix or ``.ms.zip``) with Dataplug's methods."""

    def __init__(self, fmt: Any, uri: str, site: Site | None = None) -> None:
        self.format = fmt
        self.uri = uri
        self.dataset: Dataset = skyplug.open(uri, site=site, format=_format_name(fmt))

    @classmethod
    def from_s3(
        cls,
        fmt: Any,
        uri: str,
        fetch: bool = True,
        metadata_bucket: str | None = None,
        s3_config: dict[str, Any] | None = None,
        **_: Any,
    ) -> CloudObject:
        """An ``s3://bucket/key`` object. ``fetch`` and ``metadata_bucket`` are accepted and
        unused (skyplug keeps its index in its cache; nothing is written to the object store);
        so are Dataplug's extra keywords (e.g. ``folder=True``: skyplug finds out itself)."""
        if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= len("s3://"):
            raise ConfigError(f"{uri!r}: from_s3 takes an s3://bucket/key URI")
        return cls(fmt, uri, _site_from_s3_config(s3_config, uri))

    @classmethod
    def from_bucket_key(
        cls, fmt: Any, bucket: str, key: str, s3_config: dict[str, Any] | None = None, **kw: Any
    ) -> CloudObject:
        """The object ``key`` of ``bucket`` (see :meth:`from_s3`)."""
        return cls.from_s3(fmt, f"s3://{bucket}/{str(key).lstrip('/')}", s3_config=s3_config, **kw)

    @classmethod
    def from_uri(cls, fmt: Any, uri: str, site: str | Site | None = None) -> CloudObject:
        """Any URI skyplug opens (a path, ``file://``, ``s3://``, ``sky://``); skyplug's addition."""
        return cls(fmt, uri, site if isinstance(site, Site) else get_config().site(site) if site else None)

    def preprocess(
        self,
        parallel_config: dict[str, Any] | None = None,
        extra_args: dict[str, Any] | None = None,
        chunk_size: int | None = None,
        force: bool = False,
        **_: Any,
    ) -> None:
        """Build skyplug's index (small files only); cached by object version, so a second call
        costs nothing unless ``force``. Dataplug's joblib/chunking arguments are accepted, unused."""
        self.dataset.index(refresh=force)

    def is_preprocessed(self) -> bool:
        """Whether the index of the object's current version is cached (one HEAD or LIST)."""
        if self.dataset._index is not None:
            return True
        ds, fmt = self.dataset, self.dataset.format
        key = cache_key(ds.site, str(ds.uri), ds.target.version, fmt.name, fmt.version)
        return IndexCache(get_config().cache_dir).get(key) is not None

    @property
    def attributes(self) -> dict[str, Any]:
        """Dataplug's MS attributes (``total_rows``, ``rows_per_time``, ``ms_name``) and skyplug's
        summary of the MS; the index is built when missing."""
        index = self.dataset.index()
        summary = self.dataset.format.summary(index)
        per_time = summary.get("rows_per_timestamp") or []
        return {
            "total_rows": index["nrow"],
            "rows_per_time": per_time[0] if len(per_time) == 1 else None,
            "ms_name": self.dataset.uri.name,
            **summary,
        }

    def get_attribute(self, key: str) -> Any:
        attrs = self.attributes
        if key not in attrs:
            raise ConfigError(f"{self.uri}: no attribute {key!r} (has {', '.join(sorted(attrs))})")
        return attrs[key]

    def __getitem__(self, key: str) -> Any:
        return self.get_attribute(key)

    def partition(self, strategy: Callable[..., list[MSSlice]], *args: Any, **kwargs: Any) -> list[MSSlice]:
        """Slices from a partitioning strategy (``ms_partitioning_strategy`` ...)."""
        if not isinstance(strategy, PartitioningStrategy):
            shown = getattr(strategy, "__name__", repr(strategy))
            raise PluginError(
                f"{self.uri}: {shown} is not a partitioning strategy of skyplug.compat.dataplug"
            )
        return strategy(self, *args, **kwargs)

    def __repr__(self) -> str:
        return f"CloudObject({self.uri!r}, format={getattr(self.format, '__name__', self.format)})"


@dataclass(frozen=True)
class MSSlice:
    """One slice: a skyplug partition (no credentials, no client) and Dataplug's row fields.

    ``range_0``/``range_1`` are the first and last row (inclusive, as Dataplug's) when the slice's
    rows are one contiguous span, else None (e.g. a spectral window whose rows interleave with
    another's); ``index`` is the slice's number.
    """

    partition: Partition

    @property
    def index(self) -> int:
        return self.partition.index

    def _span(self) -> tuple[int, int] | None:
        sel = self.partition.selection
        span = sel.get("span")
        if not span or int(span[1]) - int(span[0]) != sel.get("nrows"):
            return None
        return int(span[0]), int(span[1])

    @property
    def range_0(self) -> int | None:
        span = self._span()
        return span[0] if span else None

    @property
    def range_1(self) -> int | None:
        span = self._span()
        return span[1] - 1 if span else None

    def get(self, out: str | Path | None = None) -> str:
        """The path of a standalone MS holding this slice (Dataplug's return), written once.

        Into ``out`` (a folder) when given, else into skyplug's cache under a name derived from
        the partition (its object version included), so two datasets never collide and a second
        call reuses the MS.
        """
        from skyplug.core.load import fetch_partition

        if out is None:
            digest = hashlib.sha256(self.partition.to_json().encode()).hexdigest()[:20]
            folder = get_config().cache_dir / "dataplug" / digest
            done = folder / f"part-{self.partition.index:04d}.ms"
            if (done / "table.dat").exists():
                return str(done)
        else:
            folder = Path(out)
        return fetch_partition(self.partition, folder, as_="ms")["outputs"][0]

    def get_arrays(self) -> dict[str, Any]:
        """skyplug's arrays of this slice (columns by name, ``ROWID``...), nothing written."""
        return self.partition.load()

    def __repr__(self) -> str:
        return f"MSSlice({self.index}: rows {self.range_0}-{self.range_1} of {self.partition.uri})"


class PartitioningStrategy:
    """A strategy: ``fn(cloud_object, *args) -> (axis, n)``, called by ``CloudObject.partition``."""

    def __init__(self, fn: Callable[..., tuple[str, int]]) -> None:
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def __call__(self, cloud_object: CloudObject, *args: Any, **kwargs: Any) -> list[MSSlice]:
        try:
            by, n = self.fn(cloud_object, *args, **kwargs)
        except TypeError as exc:  # a missing or unknown argument
            raise ConfigError(f"{cloud_object.uri}: {self.__name__}: {exc}") from None
        return [MSSlice(p) for p in cloud_object.dataset.plan(by, n)]


def _count(uri: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{uri}: {name} must be a whole number of at least 1, not {value!r}")
    return value


@PartitioningStrategy
def ms_partitioning_strategy(cloud_object: CloudObject, num_chunks: int) -> tuple[str, int]:
    """``num_chunks`` slices of about equal row counts (Dataplug's default strategy)."""
    return "rows", _count(cloud_object.uri, "num_chunks", num_chunks)


@PartitioningStrategy
def ms_partitioning_strategy_time(cloud_object: CloudObject, num_chunks: int) -> tuple[str, int]:
    """At most ``num_chunks`` slices of whole timestamps (whole BDA time slots), any row order."""
    return "time", _count(cloud_object.uri, "num_chunks", num_chunks)


@PartitioningStrategy
def ms_partitioning_strategy_rows(cloud_object: CloudObject, row_size: int) -> tuple[str, int]:
    """Slices of about ``row_size`` rows: ceil(rows / row_size) slices of even row counts."""
    rows = cloud_object.dataset.index()["nrow"]
    return "rows", max(1, math.ceil(rows / _count(cloud_object.uri, "row_size", row_size)))


@PartitioningStrategy
def ms_partitioning_strategy_chan(cloud_object: CloudObject, num_chunks: int) -> tuple[str, int]:
    """``num_chunks`` channel blocks, every row (skyplug's addition: Dataplug cuts by rows only)."""
    return "chan", _count(cloud_object.uri, "num_chunks", num_chunks)


@PartitioningStrategy
def ms_partitioning_strategy_spw(cloud_object: CloudObject, num_chunks: int) -> tuple[str, int]:
    """Slices by spectral window (skyplug's addition)."""
    return "spw", _count(cloud_object.uri, "num_chunks", num_chunks)
