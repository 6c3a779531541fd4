"""skyplug: remote, multi-site scientific data, partitioned on the fly, as if local.

The public names are imported on first use (PEP 562), so that ``import skyplug`` (paid by every
fresh worker and every CLI call) costs little more than the interpreter itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyplug.core.config import Config, Site, get_config, load_config, set_config
    from skyplug.core.dataset import Dataset, open_target
    from skyplug.core.dataset import open as open
    from skyplug.core.engine import Engine
    from skyplug.core.errors import (
        ConfigError,
        FormatError,
        NotFound,
        PluginError,
        SiteError,
        SkyplugError,
        StaleIndexError,
        StaleObjectError,
    )
    from skyplug.core.format import Format
    from skyplug.core.hookspecs import hookimpl
    from skyplug.core.partition import Partition
    from skyplug.core.plugins import Spec
    from skyplug.core.provenance import activity, step
    from skyplug.core.publisher import Publisher
    from skyplug.quicklook import show

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Config": "skyplug.core.config",
    "ConfigError": "skyplug.core.errors",
    "Dataset": "skyplug.core.dataset",
    "Engine": "skyplug.core.engine",
    "Format": "skyplug.core.format",
    "FormatError": "skyplug.core.errors",
    "NotFound": "skyplug.core.errors",
    "Partition": "skyplug.core.partition",
    "PluginError": "skyplug.core.errors",
    "Publisher": "skyplug.core.publisher",
    "Site": "skyplug.core.config",
    "SiteError": "skyplug.core.errors",
    "SkyplugError": "skyplug.core.errors",
    "Spec": "skyplug.core.plugins",
    "StaleIndexError": "skyplug.core.errors",
    "StaleObjectError": "skyplug.core.errors",
    "activity": "skyplug.core.provenance",
    "get_config": "skyplug.core.config",
    "hookimpl": "skyplug.core.hookspecs",
    "load_config": "skyplug.core.config",
    "open": "skyplug.core.dataset",
    "open_target": "skyplug.core.dataset",
    "set_config": "skyplug.core.config",
    "show": "skyplug.quicklook",
    "step": "skyplug.core.provenance",
    "xds_from_ms": "skyplug.plugins.formats.ms.xds",
    "open_msv4": "skyplug.plugins.formats.ms.msv4",
    "open_ms": "skyplug.plugins.formats.ms.subbands",
}

__all__ = [
    "Config",
    "ConfigError",
    "Dataset",
    "Engine",
    "Format",
    "FormatError",
    "NotFound",
    "Partition",
    "PluginError",
    "Publisher",
    "Site",
    "SiteError",
    "SkyplugError",
    "Spec",
    "StaleIndexError",
    "StaleObjectError",
    "activity",
    "get_config",
    "hookimpl",
    "load_config",
    "open",
    "open_msv4",
    "open_target",
    "set_config",
    "show",
    "step",
    "xds_from_ms",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, then keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skyplug' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
