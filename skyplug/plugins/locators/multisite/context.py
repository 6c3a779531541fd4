"""The multi-site locator's state for one configuration: settings, location DB, trace."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from skyplug.core.config import Config, Site, get_config
from skyplug.plugins.locators.multisite import trace
from skyplug.plugins.locators.multisite.db import LocationDB, NoNamespace, move_sqlite, open_db
from skyplug.plugins.locators.multisite.settings import Settings, load_settings

log = logging.getLogger("skyplug.multisite")


@dataclass
class Context:
    """Settings and DB of the current configuration, and where this client runs."""

    settings: Settings
    db: LocationDB

    @property
    def config(self) -> Config:
        return self.settings.config

    def site(self, name: str) -> Site:
        return self.config.site(name)

    def client_site(self, at: str | None) -> str | None:
        """The client's site: ``--at``, else ``client_site`` of the configuration (checked)."""
        at = at or self.settings.client_site
        if at is not None:
            self.config.site(at)
        return at

    @staticmethod
    def owner() -> str:
        """A unique lease owner id naming the host, process and thread (for ``replicas``)."""
        return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"

    def trace(self, op: str, key: str, size: int, client: str | None, server: str | None) -> None:
        trace.append(self.settings.trace_path, op, key, size, client, server)


_cache: dict[int, Context] = {}
_lock = threading.Lock()


def get_context(config: Config | None = None, *, readonly: bool = False) -> Context:
    """The Context of ``config`` (default: the process-wide configuration), built once.

    ``readonly`` (commands that only look): the location DB is opened read-only and never created;
    a missing one raises NoNamespace.
    """
    config = config or get_config()
    with _lock:
        ctx = _cache.get(id(config))
        stale = ctx is None or ctx.settings.config is not config
        if stale or (ctx is not None and ctx.db.readonly and not readonly):
            settings = load_settings(config)
            ctx = Context(settings, _open(settings, readonly))
            _close_all()  # one live configuration at a time
            _cache[id(config)] = ctx
        assert ctx is not None
        return ctx


def _close_all() -> None:
    """Close the location DBs of the contexts built so far (a new configuration replaces them)."""
    for old in _cache.values():
        old.db.close()
    _cache.clear()


def reset() -> None:
    """Forget (and close) every context: the next ``get_context`` opens the DB again."""
    with _lock:
        _close_all()


def _open(settings: Settings, readonly: bool) -> LocationDB:
    """Open the location DB; move the one an older skyplug kept in the cache folder (once)."""
    legacy = settings.legacy_db
    path = Path(settings.db_url[len("sqlite:///") :]) if settings.db_url.startswith("sqlite:///") else None
    if legacy is not None and path is not None and legacy.is_file() and not path.exists():
        if readonly:
            raise NoNamespace(
                f"the location DB is still at its old place {legacy} (a cache folder): the next "
                f"write (skyplug cp) moves it to {path}"
            )
        move_sqlite(legacy, path)
        log.warning("moved the location DB from the cache folder %s to %s", legacy, path)
    return open_db(settings.db_url, readonly)
