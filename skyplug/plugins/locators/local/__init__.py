"""Local files and folders (plain paths, ``file://``, ``type = "local"`` sites), in ``locator.py``.

Only the registration lives here: building the plugin manager imports no locator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec, implemented_in

if TYPE_CHECKING:
    from skyplug.core.config import Config

__getattr__ = implemented_in("skyplug.plugins.locators.local.locator")


@hookimpl
def skyplug_register_locators(config: Config) -> list[Spec]:
    return [
        Spec(
            "local",
            "skyplug.plugins.locators.local:LocalLocator",
            keys=("file", "local"),
            info={"site_types": ("local",)},  # not a URI scheme
        )
    ]
