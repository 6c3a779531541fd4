"""The Lithops engine, in ``engine.py``.

Only the registration lives here: building the plugin manager imports no engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyplug.core.hookspecs import hookimpl
from skyplug.core.plugins import Spec, implemented_in

if TYPE_CHECKING:
    from skyplug.core.config import Config

__getattr__ = implemented_in("skyplug.plugins.engines.lithops.engine")


@hookimpl
def skyplug_register_engines(config: Config) -> list[Spec]:
    return [
        Spec("lithops", "skyplug.plugins.engines.lithops:LithopsEngine", err="pip install 'skyplug[lithops]'")
    ]
