"""Multi-site locator: a ``sky://`` namespace over S3 and local sites, with replicas and policies.

Only hook implementations live here; everything else is imported on first use.
"""

from __future__ import annotations

from typing import Any

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec


@hookimpl
def skyplug_register_locators(config: Any) -> list[Spec]:
    return [Spec("sky", "skyplug.plugins.locators.multisite.locator:SkyLocator", keys=("sky",))]


@hookimpl
def skyplug_register_commands(cli: Any) -> None:
    from skyplug.plugins.locators.multisite.commands import register

    register(cli)
