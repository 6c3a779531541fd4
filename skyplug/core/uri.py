"""URIs: plain paths and ``file://``, ``s3://bucket/key`` on a named site, ``sky://`` namespaces."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from skyplug.core.errors import ConfigError


@dataclass(frozen=True)
class URI:
    """A parsed URI: ``scheme`` and ``path`` (an absolute file path, or ``bucket/key``)."""

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
        """The last path component (what formats sniff)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        if self.scheme == "file":
            return self.path
        return f"{self.scheme}://{self.path}"


def parse_uri(text: str | os.PathLike[str]) -> URI:
    """Parse a URI or a plain path."""
    text = os.fspath(text)
    if "://" not in text:
        return URI("file", os.path.abspath(os.path.expanduser(text)))
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return URI("file", os.path.abspath(unquote(parts.path)))
    if not parts.netloc:
        raise ConfigError(f"{text}: a {scheme}:// URI needs a bucket")
    path = parts.netloc + unquote(parts.path)
    return URI(scheme, path.rstrip("/") if path.endswith("/") and path.count("/") == 1 else path)
