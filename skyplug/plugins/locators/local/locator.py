"""Local files and folders: plain paths, ``file://`` URIs and ``type = "local"`` sites.

A local site's options (``[sites.NAME]``): ``path``, the folder (required; ``~`` expanded) under
which ``s3://bucket/key`` is ``path/bucket/key``. A site table that names no type is a local site.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyplug.core.config import Site
from skyplug.core.errors import ConfigError, NotFound, SiteError, StaleObjectError
from skyplug.core.locator import NO_SITE, Locator
from skyplug.core.paths import site_join
from skyplug.core.source import Source, Tree
from skyplug.core.uri import URI


def file_version(st: os.stat_result) -> str:
    """The version of a local file: modification time (ns) and size."""
    return f"{st.st_mtime_ns}-{st.st_size}"


class LocalSource(Source):
    """A local file; a read checks that the file still has the indexed version."""

    def __init__(self, path: str | Path, *, expected_version: str | None = None) -> None:
        super().__init__(str(path), expected_version=expected_version)
        self.path = Path(path)

    def _head(self) -> tuple[int, str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise NotFound(f"{self.uri}: no such file") from None
        except OSError as exc:
            raise SiteError(f"{self.uri}: {exc.strerror}") from exc
        return st.st_size, file_version(st)

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        try:
            with self.path.open("rb") as fh:
                if file_version(os.fstat(fh.fileno())) != version:
                    raise StaleObjectError(f"{self.uri}: file changed since it was indexed")
                data = os.pread(fh.fileno(), end - start, start)
                if file_version(os.fstat(fh.fileno())) != version:
                    raise StaleObjectError(f"{self.uri}: file changed while it was read")
        except FileNotFoundError:
            raise StaleObjectError(f"{self.uri}: file removed since it was indexed") from None
        except OSError as exc:
            raise SiteError(f"{self.uri}: {exc.strerror}") from exc
        return data


class LocalTree(Tree):
    """A local folder (an MS directory)."""

    def __init__(self, path: str | Path, *, expected_version: str | None = None) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self._expected = expected_version
        self._listing: dict[str, tuple[int, str]] | None = None
        self._open: dict[str, LocalSource] = {}

    def _list(self) -> dict[str, tuple[int, str]]:
        if self._listing is None:
            listing = {}
            for root, _, files in os.walk(self.path):
                for name in files:
                    full = Path(root) / name
                    st = full.stat()
                    listing[full.relative_to(self.path).as_posix()] = (st.st_size, file_version(st))
            self._listing = listing
            if self._expected is not None and self.version != self._expected:
                raise StaleObjectError(f"{self.uri}: folder changed since it was indexed")
        return self._listing

    @property
    def version(self) -> str:
        text = "\n".join(f"{k}\t{v[1]}" for k, v in sorted(self._list().items()))
        return "tree-" + hashlib.sha256(text.encode()).hexdigest()[:24]

    def members(self) -> dict[str, int]:
        return {k: v[0] for k, v in self._list().items()}

    def source(self, member: str) -> Source:
        if member not in self._open:
            listing = self._list()
            if member not in listing:
                raise NotFound(f"{self.uri}: no member {member!r}")
            self._open[member] = LocalSource(self.path / member, expected_version=listing[member][1])
        return self._open[member]

    def _sources(self) -> list[Source]:
        return list(self._open.values())


@dataclass(frozen=True)
class LocalSiteOptions:
    """A local site's settings: the folder its buckets are sub-folders of."""

    name: str
    path: str

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser()

    def identity(self) -> str:
        return f"local:{self.root.resolve()}"

    def public(self) -> dict[str, Any]:
        return {"path": self.path}

    def where(self) -> str:
        return self.path


def local_options(site: Site) -> LocalSiteOptions:
    """The settings of a local site (ConfigError when it is of another type)."""
    settings = site.settings
    if not isinstance(settings, LocalSiteOptions):
        raise ConfigError(f"site {site.name!r} is not a local site (type {site.type!r})")
    return settings


class LocalLocator(Locator):
    """Opens local paths, and ``bucket/key`` under a local site's folder."""

    name = "local"
    site_types = ("local",)
    uri_sites = {"file": NO_SITE}  # plain paths need no site

    def site_options(self, site: Site) -> LocalSiteOptions:
        """Check a local site's options (see the module's docstring)."""
        path = site.options.get("path")
        if not path:
            raise ConfigError(f"site {site.name!r}: a local site needs 'path'")
        return LocalSiteOptions(site.name, str(path))

    def path_of(self, uri: URI, site: Site | None) -> Path:
        if site is None or uri.scheme == "file":
            return Path(uri.path)
        return site_join(local_options(site).root, uri.path, site.name)

    def open(
        self, uri: URI, site: Site | None, *, version: str | None = None, hint: Any = None
    ) -> Source | Tree:
        path = self.path_of(uri, site)
        if path.is_dir():
            return LocalTree(path, expected_version=version)
        if not path.exists():
            where = f" on site {site.name!r}" if site else ""
            raise NotFound(f"{uri}{where}: no such file or folder")
        return LocalSource(path, expected_version=version)
