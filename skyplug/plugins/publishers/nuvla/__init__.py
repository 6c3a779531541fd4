"""The Nuvla publisher (data-objects, data-records and data-sets over Nuvla's REST API), in
``publisher.py``.

Only the hook implementations live here: building the plugin manager imports no publisher.
"""

from __future__ import annotations

from typing import Any

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec, implemented_in

INSTALL = "pip install 'skyplug[nuvla]' (nuvla-api)"

__getattr__ = implemented_in("skyplug.plugins.publishers.nuvla.publisher")


@hookimpl
def skyplug_register_publishers(config: Any) -> list[Any]:
    return [Spec("nuvla", "skyplug.plugins.publishers.nuvla:NuvlaPublisher", err=INSTALL)]


@hookimpl
def skyplug_catalog_added(config: Any, records: list[dict[str, Any]], url: str) -> None:
    """Publish added records to every configured Nuvla ``[publishers.NAME]``; a failure warns."""
    if not (config.raw.get("publishers") or {}):
        return
    from skyplug.plugins.publishers.nuvla.publisher import publish_added

    publish_added(config, records)
