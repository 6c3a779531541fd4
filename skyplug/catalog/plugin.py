"""Built-in plugin: the ``catalog`` command group and automatic records for written objects."""

from __future__ import annotations

import logging
from typing import Any

from skyplug.core.hookspecs import hookimpl

log = logging.getLogger("skyplug.catalog")


@hookimpl
def skyplug_register_commands(cli: Any) -> None:
    from skyplug.catalog.commands import catalog

    cli.add_command(catalog)


@hookimpl
def skyplug_object_written(config: Any, path: str, source: Any, kind: str) -> None:
    """Add a record for a written product when a catalogue is configured (``[catalog] url``/``auto_add``).

    Never fails the write: an object no format plugin can describe is only logged.
    """
    from skyplug.catalog.service import settings

    if not settings().auto_add:
        return
    from skyplug.catalog.service import open_configured, record_for
    from skyplug.core.errors import SkyplugError

    try:
        record = record_for(path)
        if source is not None:
            record.setdefault("obs_creator_did", None)
            record["obs_title"] = record.get("obs_title") or f"{kind} written from {source.uri}"
        with open_configured() as cat:
            cat.add([record])
    except (SkyplugError, OSError, ValueError) as exc:
        log.warning("catalogue: no record for %s: %s", path, exc)
