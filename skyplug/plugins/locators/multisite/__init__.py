"""Multi-site locator: a ``sky://`` namespace over S3 and local sites, with replicas and policies.

Only hook implementations live here; everything else is imported on first use. The plugin owns
two keys of every ``[sites.NAME]`` table, whatever its type: ``egress_per_gb`` ($/GB leaving the
site) and ``storage_per_gb_month`` ($/GB-month stored there); and the top-level ``client_site``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec

if TYPE_CHECKING:
    from skyplug.core.config import Config

# Keys this plugin reads from every site's table, with their defaults (public: prices are no secret).
SITE_KEYS = {"egress_per_gb": 0.0, "storage_per_gb_month": 0.0}


@hookimpl
def skyplug_register_locators(config: Config) -> list[Spec]:
    return [
        Spec(
            "sky",
            "skyplug.plugins.locators.multisite.locator:SkyLocator",
            keys=("sky",),
            info={"site_keys": SITE_KEYS},
        )
    ]


@hookimpl
def skyplug_register_commands(cli: Any) -> None:
    from skyplug.plugins.locators.multisite.commands import register

    register(cli)
