"""Other storage through fsspec (``memory://``, ``gs://``, ``az://``, ``ftp://``, ...), read-only.

For users who already have fsspec and the protocol's package (gcsfs, adlfs, ...): no site, the
protocol's own configuration and credentials (its environment variables, its config files).
``skyplug[fsspec]`` installs fsspec; a protocol whose package is missing is one line naming it.

An object's version is fsspec's ``ukey`` (a hash of its info: ETag, mtime, size, as the protocol
has them); each read checks it again after reading (one ``info`` call), so bytes of a changed
object are never returned. A folder (an MS uploaded as one) is a Tree of its files.
"""

from __future__ import annotations

import hashlib
from typing import Any

from skyplug.core.config import Site
from skyplug.core.errors import ConfigError, NotFound, PluginError, SiteError, StaleObjectError
from skyplug.core.locator import NO_SITE, Locator
from skyplug.core.source import Source, Tree
from skyplug.core.uri import URI
from skyplug.plugins.locators.fsspec import PROTOCOLS


def filesystem(uri: URI) -> tuple[Any, str]:
    """(fsspec filesystem, path) for a URI; fsspec or the protocol's package missing: one PluginError."""
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError:
        raise PluginError(f"{uri}: needs fsspec: pip install 'skyplug[fsspec]'") from None
    try:
        return fsspec.core.url_to_fs(str(uri))
    except ImportError as exc:
        raise PluginError(f"{uri}: fsspec's {uri.scheme!r} protocol needs a missing package: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{uri}: {exc}") from None


def _error(uri: str, exc: Exception) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{uri}: no such object")
    if isinstance(exc, PermissionError):
        return SiteError(f"{uri}: access refused")
    return SiteError(f"{uri}: {type(exc).__name__}: {exc}".splitlines()[0])


class FsspecSource(Source):
    """One file of an fsspec filesystem."""

    def __init__(self, fs: Any, path: str, uri: str, *, expected_version: str | None = None) -> None:
        super().__init__(uri, expected_version=expected_version)
        self.fs, self.path = fs, path

    def _info(self) -> tuple[int, str]:
        try:
            info = self.fs.info(self.path)
            if info.get("type") == "directory":
                raise NotFound(f"{self.uri}: a folder, not an object")
            return int(info["size"]), "fsspec-" + str(self.fs.ukey(self.path))
        except (NotFound, StaleObjectError):
            raise
        except Exception as exc:
            raise _error(self.uri, exc) from None

    def _head(self) -> tuple[int, str]:
        return self._info()

    def _fetch(self, start: int, end: int, version: str) -> bytes:
        try:
            data = self.fs.cat_file(self.path, start=start, end=end)
        except FileNotFoundError:
            raise StaleObjectError(f"{self.uri}: object removed since it was indexed") from None
        except Exception as exc:
            raise _error(self.uri, exc) from None
        try:
            now = self._info()[1]
        except NotFound:
            now = ""
        if now != version:
            raise StaleObjectError(f"{self.uri}: object changed since it was indexed")
        return bytes(data)


class FsspecTree(Tree):
    """A folder of an fsspec filesystem: its files, by relative path."""

    def __init__(self, fs: Any, path: str, uri: str, *, expected_version: str | None = None) -> None:
        super().__init__(uri)
        self.fs, self.path = fs, path.rstrip("/")
        self._expected = expected_version
        self._listing: dict[str, tuple[int, str]] | None = None
        self._open: dict[str, FsspecSource] = {}

    def _list(self) -> dict[str, tuple[int, str]]:
        if self._listing is None:
            try:
                found = self.fs.find(self.path, detail=True)
            except Exception as exc:
                raise _error(self.uri, exc) from None
            base = self.fs._strip_protocol(self.path).rstrip("/") + "/"
            self._listing = {
                name[len(base) :]: (int(info["size"]), "fsspec-" + str(self.fs.ukey(name)))
                for name, info in found.items()
                if info.get("type") != "directory" and name.startswith(base)
            }
            if self._expected is not None and self.version != self._expected:
                raise StaleObjectError(f"{self.uri}: folder changed since it was indexed")
        return self._listing

    @property
    def version(self) -> str:
        text = "\n".join(f"{k}\t{v[1]}\t{v[0]}" for k, v in sorted(self._list().items()))
        return "tree-" + hashlib.sha256(text.encode()).hexdigest()[:24]

    def members(self) -> dict[str, int]:
        return {k: v[0] for k, v in self._list().items()}

    def source(self, member: str) -> Source:
        if member not in self._open:
            listing = self._list()
            if member not in listing:
                raise NotFound(f"{self.uri}: no member {member!r}")
            self._open[member] = FsspecSource(
                self.fs, f"{self.path}/{member}", f"{self.uri}/{member}", expected_version=listing[member][1]
            )
        return self._open[member]

    def _sources(self) -> list[Source]:
        return list(self._open.values())


class FsspecLocator(Locator):
    """Opens the URLs of fsspec's storage protocols (``PROTOCOLS``), read-only, with no site."""

    name = "fsspec"
    uri_sites = dict.fromkeys(PROTOCOLS, NO_SITE)

    def open(
        self, uri: URI, site: Site | None, *, version: str | None = None, hint: Any = None
    ) -> Source | Tree:
        fs, path = filesystem(uri)
        if (version or "").startswith("tree-"):
            return FsspecTree(fs, path, str(uri), expected_version=version)
        try:
            is_dir = version is None and fs.isdir(path)
        except Exception as exc:
            raise _error(str(uri), exc) from None
        if is_dir:
            return FsspecTree(fs, path, str(uri))
        src = FsspecSource(fs, path, str(uri), expected_version=version)
        if version is None:
            src.size  # noqa: B018 - a missing object fails here
        return src
