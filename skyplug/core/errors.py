"""One exception hierarchy for skyplug: every error names the object and the cause."""

from __future__ import annotations


class SkyplugError(Exception):
    """Base of every skyplug error; ``str()`` is a one-line message fit for a CLI."""


class ConfigError(SkyplugError, ValueError):
    """The configuration (skyplug.toml, a site, an option) is invalid."""


class PluginError(SkyplugError):
    """A plugin could not be loaded or is missing for a requested capability."""


class NotFound(SkyplugError, FileNotFoundError):
    """The object, member or site does not exist."""


class SiteError(SkyplugError, OSError):
    """A site could not be reached or refused the request (auth, network, server)."""


class FormatError(SkyplugError, ValueError):
    """The bytes are not what the format expects (corrupt, truncated, unsupported)."""

    def __init__(self, obj: str, cause: str, *, offset: int | None = None) -> None:
        self.obj, self.cause, self.offset = obj, cause, offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{obj}{where}: {cause}")


class StaleObjectError(SkyplugError):
    """The object changed since it was indexed: its bytes are never mixed with the old ones."""


StaleIndexError = StaleObjectError


class SkyplugWarning(UserWarning):
    """Warnings about degraded behaviour (whole-member reads, skipped plugins, ...)."""
