"""Shared glue of the CLI and the event listener: settings from ``[catalog]`` and records from URIs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyplug.core.config import get_config

log = logging.getLogger("skyplug.catalog")


@dataclass(frozen=True)
class Settings:
    """``[catalog]`` in skyplug.toml: url, maxrec, hard_maxrec, timeout, auto_add."""

    url: str | None
    maxrec: int
    hard_maxrec: int
    timeout: float
    auto_add: bool


def settings() -> Settings:
    """The catalogue settings of the current configuration."""
    from skyplug.catalog import db

    raw: dict[str, Any] = dict(get_config().raw.get("catalog", {}) or {})
    return Settings(
        url=raw.get("url"),
        maxrec=int(raw.get("maxrec", db.DEFAULT_MAXREC)),
        hard_maxrec=int(raw.get("hard_maxrec", db.HARD_MAXREC)),
        timeout=float(raw.get("timeout", db.DEFAULT_TIMEOUT)),
        auto_add=bool(raw.get("auto_add", "url" in raw)),
    )


def catalog_url(value: str | None) -> str | None:
    """A catalogue URL from ``--db`` or ``[catalog] url``: a plain path (``cat.db``) is a SQLite file."""
    from skyplug.sqlbackend import db_url

    return db_url(value) if value else value


def open_configured(url: str | None = None) -> Any:
    """The catalogue at ``url``, else ``[catalog] url``, else ``sqlite:///catalog.db``."""
    from skyplug.catalog.db import open_catalog

    s = settings()
    return open_catalog(catalog_url(url or s.url), timeout=s.timeout, hard_maxrec=s.hard_maxrec)


def check_servable(url: str | None = None) -> None:
    """Refuse to serve a SQLite catalogue that does not exist (serving would create an empty one)."""
    from skyplug.catalog.db import DEFAULT_URL, CatalogError
    from skyplug.sqlbackend import dialect_of, sqlite_path

    target = catalog_url(url or settings().url) or DEFAULT_URL
    if dialect_of(target) == "sqlite" and not Path(sqlite_path(target) or "").is_file():
        raise CatalogError(
            f"{target}: no catalogue there; add records first (skyplug catalog add URI --db ...)"
        )


def record_for(uri: str, site: str | None = None) -> dict[str, Any]:
    """A catalogue record for one URI: describe() from its format plugin plus skyplug's columns."""
    from skyplug.catalog.db import make_record
    from skyplug.core.dataset import Dataset

    ds = Dataset(uri, site=site)
    index = ds.index()
    fields = ds.describe() or {}
    sites: Iterable[str] = (ds.site.name,) if ds.site is not None else ()
    return make_record(
        fields,
        index.get("uri", uri),
        str(index.get("version") or ""),
        index.get("format", ""),
        checksum=index.get("checksum"),
        sites=sites,
    )
