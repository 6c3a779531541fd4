"""URIs: plain paths and ``file://``, ``s3://bucket/key``, ``sky://`` namespaces, ``http(s)://`` and
the fsspec protocols (``memory://``, ``gs://``, ...): whichever a locator plugin serves.

``file://`` follows fsspec: ``file:///abs/path`` is absolute, ``file://rel/path`` is the path
``rel/path`` relative to the current directory (not RFC 8089's host ``rel``).
HTTP(S) URLs are kept verbatim (query included: a presigned URL's signature is in it); what is
shown of them (:func:`display_uri`) drops the query and any user info.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from skyplug.core.errors import ConfigError

# Schemes whose URIs are kept as written: the locator needs the exact URL (signatures, queries).
VERBATIM = ("http", "https")


@dataclass(frozen=True)
class URI:
    """A parsed URI: ``scheme`` and ``path`` (an absolute file path, ``bucket/key``, or for
    http(s) ``host/path?query`` as written)."""

    scheme: str
    path: str

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.path.split("/", 1)[1] if "/" in self.path else ""

    @property
    def name(self) -> str:
        """The last path component (what formats sniff), without an http(s) query."""
        if self.scheme in VERBATIM:
            return unquote(self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        if self.scheme == "file":
            return self.path
        return f"{self.scheme}://{self.path}"


def display_uri(text: str) -> str:
    """A URL as it may be shown (errors, logs): no user info, the query (signatures) as ``?...``."""
    if "://" not in text:
        return text
    parts = urlsplit(text)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "..." if parts.query else "", ""))


def known_schemes() -> list[str]:
    """The URI schemes some registered locator serves: its spec's keys, but the site types only
    (``info["site_types"]``)."""
    from skyplug.core import plugins

    out: set[str] = {"file"}
    for item in plugins.registered("locators"):
        types = getattr(item, "info", {}).get("site_types", ())
        out.update(k for k in getattr(item, "keys", ()) if k not in types)
    return sorted(out)


def parse_uri(text: str | os.PathLike[str]) -> URI:
    """Parse a URI or a plain path; a scheme no locator serves is one ConfigError listing those known."""
    text = os.fspath(text)
    if "://" not in text:
        return URI("file", os.path.abspath(os.path.expanduser(text)))
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":  # as fsspec: file://rel/x is the relative path rel/x
        return URI("file", os.path.abspath(unquote(parts.netloc + parts.path)))
    known = known_schemes()
    if scheme not in known:
        raise ConfigError(
            f"{display_uri(text)}: unknown URI scheme {scheme!r} (skyplug knows: {', '.join(known)})"
        )
    if not parts.netloc:
        raise ConfigError(f"{display_uri(text)}: a {scheme}:// URI needs a bucket or host")
    if scheme in VERBATIM:
        return URI(scheme, text.split("://", 1)[1].split("#", 1)[0])
    path = parts.netloc + unquote(parts.path)
    return URI(scheme, path.rstrip("/") if path.endswith("/") and path.count("/") == 1 else path)
