"""skyplug: remote, multi-site scientific data, partitioned on the fly, as if local."""

from skyplug.core.config import Config, Site, get_config, load_config, set_config
from skyplug.core.dataset import Dataset, open_target
from skyplug.core.dataset import open as open
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

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "Dataset",
    "Format",
    "FormatError",
    "NotFound",
    "Partition",
    "PluginError",
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
    "open_target",
    "set_config",
    "step",
]
