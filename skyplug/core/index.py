"""The index cache: small JSON per object version, reused until the object changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from skyplug.core.atomic import atomic_write
from skyplug.core.config import Site

SCHEMA = 1


def cache_key(site: Site | None, uri: str, version: str, fmt: str, fmt_version: int) -> str:
    """The cache key of an index: where the object lives (the site's identity, not its name: one
    name may point at another server), object, version, format and both schemas. ``site`` is None
    for local paths and ``sky://`` (whose versions are content checksums)."""
    where = site.identity if site is not None else None
    text = json.dumps([SCHEMA, where, uri, version, fmt, fmt_version])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class IndexCache:
    """A folder of index JSON files, written atomically (never half-written)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "index"

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, index: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(index, separators=(",", ":")))
