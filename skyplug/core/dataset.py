"""The data's way through the code: URI -> locator -> target -> format index -> partitions -> load."""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

from skyplug.core import plugins
from skyplug.core.config import Site, get_config
from skyplug.core.errors import FormatError, PluginError, SkyplugWarning
from skyplug.core.format import Format, check_options, fewer_note, resolve_axis
from skyplug.core.index import IndexCache, cache_key
from skyplug.core.locator import NAMED_SITE, NO_SITE, ON_SITE
from skyplug.core.partition import Plan
from skyplug.core.source import Source, Target, Tree
from skyplug.core.uri import URI, parse_uri
from skyplug.core.zip import ZipTree


def _site_use(uri: URI) -> str:
    try:
        locator = plugins.find("locators", uri.scheme)
    except PluginError:  # no locator for the scheme: the site's own may open it
        return ON_SITE
    return getattr(locator, "uri_sites", {}).get(uri.scheme, ON_SITE)


def resolve_site(uri: URI, site: str | Site | None) -> Site | None:
    """The site a URI lives on, as its scheme's locator uses sites (see ``NO_SITE``...): none, the
    one named, or the named or default one."""
    use = _site_use(uri)
    if use == NO_SITE:
        return None
    if isinstance(site, Site):
        return site
    if use == NAMED_SITE and site is None:  # the namespace spans sites: the locator chooses
        return None
    return get_config().site(site)


def open_target(
    uri: str | URI,
    site: str | Site | None = None,
    version: str | None = None,
    *,
    size: int | None = None,
    container: dict[str, Any] | None = None,
    verify: bool = False,
) -> Target:
    """Open a URI as a Source (one object) or a Tree (a folder, a prefix, a zip).

    With ``version`` every read is conditional on it; ``size`` and ``container`` (from a
    partition) spare the HEAD and the zip's central directory. ``verify`` checks the CRC-32 of
    whole zip members before ranged reads (see ``skyplug.core.zip``); a partition carries it.
    ``container["hint"]`` is the locator's own (what its tree's ``container`` put there).
    """
    u = uri if isinstance(uri, URI) else parse_uri(uri)
    where = resolve_site(u, site)
    on_site = where is not None and _site_use(u) == ON_SITE
    locator = plugins.find("locators", where.type if where is not None and on_site else u.scheme)
    target = locator.open(u, where, version=version, hint=container.get("hint") if container else None)
    if isinstance(target, Source):
        size = container.get("size", size) if container else size
        if size is not None:
            target.assume_size(size)
        if container and "zip" in container:
            target = ZipTree.from_packed(target, container["zip"], verify=bool(container.get("verify")))
        elif u.name.lower().endswith(".zip"):
            target = ZipTree(target, verify=verify)
    return target


def bytes_read(target: Target) -> int:
    """Bytes fetched so far through a target."""
    return target.bytes_read if isinstance(target, Tree) else target.stats.bytes


def sniff(target: Target, name: str) -> Format:
    """The format that claims the target with the highest score."""
    if isinstance(target, Tree):
        head, members = b"", sorted(target.members())
    else:
        head, members = target.read(0, min(target.size, 2880)), None
    best, score = None, 0.0
    for fmt in plugins.all_loaded("formats"):
        kind_ok = (fmt.kind == "tree") == isinstance(target, Tree)
        s = fmt.sniff(name, head, members) if kind_ok else 0.0
        if s > score:
            best, score = fmt, s
    if best is None:
        raise FormatError(str(getattr(target, "uri", name)), "no format plugin recognises this object")
    return best


class Dataset:
    """A remote or local dataset: index it once, plan partitions, describe it."""

    def __init__(
        self, uri: str, site: str | Site | None = None, format: str | None = None, verify: bool = False
    ) -> None:
        self.uri = parse_uri(uri)
        self.verify = verify
        self.site = resolve_site(self.uri, site)
        self._format_name = format
        self._target: Target | None = None
        self._format: Format | None = None
        self._index: dict[str, Any] | None = None
        self.index_stats: dict[str, Any] = {}

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = open_target(self.uri, self.site, verify=self.verify)
        return self._target

    @property
    def format(self) -> Format:
        if self._format is None:
            if self._format_name:
                self._format = plugins.find("formats", self._format_name)
            else:
                self._format = sniff(self.target, self.uri.name)
        return self._format

    def index(self, refresh: bool = False) -> dict[str, Any]:
        """The index, from the cache when the object's version has not changed.

        ``index_stats`` tells what building it cost, the format sniffing included.
        """
        if self._index is not None and not refresh:
            return self._index
        fmt, target = self.format, self.target
        cache = IndexCache(get_config().cache_dir)
        key = cache_key(self.site, str(self.uri), target.version, fmt.name, fmt.version)
        cached = None if refresh else cache.get(key)
        if cached is not None:
            self.index_stats = {"bytes_read": 0, "seconds": 0.0, "cached": True}
            self._index = cached
            return cached
        before, t0 = (bytes_read(target) if refresh else 0), time.perf_counter()
        index = fmt.index(target)
        index.update(
            {
                "schema": 1,
                "format": fmt.name,
                "format_version": fmt.version,
                "uri": str(self.uri),
                "version": target.version,
            }
        )
        self.index_stats = {
            "bytes_read": bytes_read(target) - before,
            "seconds": round(time.perf_counter() - t0, 6),
            "cached": False,
        }
        cache.put(key, index)
        self._index = index
        plugins.get_plugin_manager().hook.skyplug_index_built(
            config=get_config(), uri=str(self.uri), index=index, stats=self.index_stats
        )
        return index

    def plan(self, by: str, n: int, **opts: Any) -> Plan:
        """Partitions along ``by`` (a format's axis or an alias, see ``AXIS_ALIASES``) as a
        :class:`Plan` (a list); each carries the site's public description, never secrets.

        ``opts`` are the format's plan options (``Format.options``; None means unset); any other
        is an error. A plan with fewer than ``n`` partitions warns (``SkyplugWarning``) and says
        why in every partition's ``meta["note"]``.
        """
        fmt = self.format
        by = resolve_axis(fmt, by, str(self.uri))
        opts = check_options(fmt, opts, str(self.uri))
        if n < 1:
            raise PluginError(f"{self.uri}: the number of partitions must be at least 1, not {n}")
        parts = fmt.plan(self.index(), by, n, **opts)
        if 0 < len(parts) < n:
            note = parts[0].meta.get("note") or fewer_note(by, n, len(parts))
            parts = [dataclasses.replace(p, meta={**p.meta, "note": note}) for p in parts]
            warnings.warn(f"{self.uri}: {note}", SkyplugWarning, stacklevel=2)
        site = self.site.public() if self.site else None
        target = self.target
        if isinstance(target, Source):
            return Plan(dataclasses.replace(p, site=site, size=target.size) for p in parts)
        return Plan(
            dataclasses.replace(
                p,
                site=site,
                container=target.container(
                    sorted({m for m, _, _ in p.ranges if m} | set(p.meta.get("members", ())))
                ),
            )
            for p in parts
        )

    def describe(self) -> dict[str, Any]:
        """ObsCore (+ radio) fields of the dataset."""
        return self.format.describe(self.index())

    def __repr__(self) -> str:
        site = f", site={self.site.name!r}" if self.site else ""
        fmt = f", format={self._format.name!r}" if self._format else ""
        return f"Dataset({str(self.uri)!r}{site}{fmt}{'' if self._index else ', not indexed'})"

    def _repr_html_(self) -> str:
        from skyplug.core.reprs import dataset_html

        return dataset_html(self, self._index)


def open(
    uri: str, site: str | Site | None = None, format: str | None = None, verify: bool = False
) -> Dataset:
    """Open a dataset by URI (a path, ``file://``, ``s3://bucket/key``, ``sky://``).

    ``verify``: check the CRC-32 of each zip member whole before reading it by ranges.
    """
    return Dataset(uri, site=site, format=format, verify=verify)
