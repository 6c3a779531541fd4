"""The multi-site locator's state for one configuration: settings, location DB, trace."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass

from skyplug.core.config import Config, Site, get_config
from skyplug.plugins.locators.multisite import trace
from skyplug.plugins.locators.multisite.db import LocationDB, open_db
from skyplug.plugins.locators.multisite.settings import Settings, load_settings


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


def get_context(config: Config | None = None) -> Context:
    """The Context of ``config`` (default: the process-wide configuration), built once."""
    config = config or get_config()
    with _lock:
        ctx = _cache.get(id(config))
        if ctx is None or ctx.settings.config is not config:
            settings = load_settings(config)
            ctx = Context(settings, open_db(settings.db_url))
            _cache.clear()  # one live configuration at a time
            _cache[id(config)] = ctx
        return ctx
